package dlxretry

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Broker says where a [Consumer] or [Publisher] connects: a
// URL (amqp:// or amqps://) for a connection of its own, made with the
// [ConnOption] values it is given, or a *[Conn] to share with others.
type Broker interface {
	string | *Conn
}

// Conn is one connection to RabbitMQ that Consumers, Publishers and the
// parking lot's tools share: give it to [NewConsumer] and [NewPublisher] in
// place of a URL. Each of them works on channels of its
// own, so that the broker closing one (for a publish it refuses, a consumer
// it cancels) touches no other.
//
// The connection is made when first needed and, once lost, made again when
// next needed, with backoff ([WithReconnectDelay]), trying the brokers of
// [WithURLs] in turn, starting with the one after the broker whose
// connection was lost (in a cluster, that node may be down). A Consumer's
// session ends with the connection and resumes on the next one; a Publisher
// publishes on the next one. A lost connection is logged and reported to
// [Hooks].OnDisconnect with an error wrapping [ErrConnectionLost] as soon as
// it is lost.
//
// One connection carries everyone's frames: while the broker blocks it for
// a resource alarm, a Consumer's acks on it wait too, which is why RabbitMQ
// advises separate connections for publishing and consuming where alarms
// are likely. A call the library cannot interrupt (opening a channel,
// writing a message) that is still stuck on the connection a moment after
// its ctx ended closes the connection, for everyone on it.
//
// Create a Conn with [NewConn] or [Dial]; the zero value is not usable. A
// Conn is safe for concurrent use. Besides amqp091-go's own goroutines, a
// connection has one that follows the broker's connection.blocked
// notifications; it ends with the connection. Close the Conn when what runs
// on it is done.
type Conn struct {
	urls []string
	opts connOptions
	life context.Context // done once Close is called; not a caller's ctx
	stop context.CancelFunc

	lock chan struct{} // held while connecting; guards the fields below
	cur  *link
	next int  // the URL to try first
	up   bool // a connection has been up: WithConnectTimeout no longer applies

	// sessions marks a Consumer's own connection: the Consumer reports a
	// lost connection to OnDisconnect as the end of its session, so the
	// Conn only logs it. Set before first use.
	sessions bool
}

// NewConn checks url and the options and returns a Conn that connects to url,
// or to the URLs of [WithURLs] in turn, when first needed. It does not
// connect.
func NewConn(url string, opts ...ConnOption) (*Conn, error) {
	o, err := newConnOptions(opts)
	if err != nil {
		return nil, err
	}
	return newConn(url, o)
}

// Dial is [NewConn] followed by a first connection, within ctx and
// [WithConnectTimeout]. It returns a *[ConnectError] when the broker
// refuses the connection or none answers in time.
func Dial(ctx context.Context, url string, opts ...ConnOption) (*Conn, error) {
	c, err := NewConn(url, opts...)
	if err != nil {
		return nil, err
	}
	if _, err := c.link(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func newConn(url string, o connOptions) (*Conn, error) {
	urls, err := brokerURLs(url, o.urls)
	if err != nil {
		return nil, err
	}
	life, stop := context.WithCancel(context.Background())
	return &Conn{urls: urls, opts: o, life: life, stop: stop, lock: make(chan struct{}, 1)}, nil
}

// connFor returns the Conn for broker: a new one, for a URL, or the shared
// one, which takes none of the options that configure a connection.
func connFor[B Broker](broker B, o connOptions) (conn *Conn, own bool, err error) {
	shared, ok := any(broker).(*Conn)
	if !ok {
		conn, err = newConn(any(broker).(string), o)
		return conn, true, err
	}
	if !shared.usable() {
		return nil, false, invalid("Conn", "nil or not created by NewConn or Dial")
	}
	if len(o.given) > 0 {
		return nil, false, invalid(o.given[0], "configures the connection: give it to NewConn or Dial, not with a shared *Conn")
	}
	return shared, false, nil
}

func (c *Conn) usable() bool { return c != nil && c.lock != nil }

// Channel opens a channel on the connection, connecting first if needed,
// for work of your own beside the library's: declaring a [Topology], or
// running your own consume loop with [Wrap]. ctx bounds connecting and
// opening the channel. The channel ends with the connection; nothing opens
// it again.
func (c *Conn) Channel(ctx context.Context) (*amqp.Channel, error) {
	l, err := c.link(ctx)
	if err != nil {
		return nil, err
	}
	ctx, done := within(ctx, c.life)
	defer done()
	return l.channel(ctx)
}

// Close closes the connection and interrupts every wait on it, connecting
// and backing off included: what runs on the Conn then fails with
// [ErrClosed]. It does not wait for a Consumer's Run to return.
func (c *Conn) Close() error {
	if !c.usable() {
		return invalid("Conn", "not created by NewConn or Dial")
	}
	c.stop()
	return c.hangUp()
}

// hangUp closes the connection if there is one; the Conn stays usable.
func (c *Conn) hangUp() error {
	c.lock <- struct{}{} // whoever holds it returns promptly once c.life or its own ctx ends
	defer func() { <-c.lock }()
	if c.cur == nil {
		return nil
	}
	err := c.cur.close()
	c.cur = nil
	return err
}

// link returns the live connection, connecting first if there is none.
func (c *Conn) link(ctx context.Context) (*link, error) {
	if !c.usable() {
		return nil, invalid("Conn", "not created by NewConn or Dial")
	}
	ctx, done := within(ctx, c.life)
	defer done()
	select {
	case c.lock <- struct{}{}:
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
	defer func() { <-c.lock }()
	if c.life.Err() != nil {
		return nil, ErrClosed
	}
	if c.cur != nil && !c.cur.conn.IsClosed() {
		return c.cur, nil
	}
	if c.cur != nil {
		// Lost: start with the next broker, the lost one's node may be down.
		c.next = c.cur.index + 1
		c.cur = nil
	}
	l, err := c.redial(ctx)
	if err != nil {
		return nil, err
	}
	c.cur, c.up = l, true
	return l, nil
}

// redial connects to the brokers in turn, waiting with backoff between
// failed attempts, until one answers, ctx ends, the first connection's
// bound passes, or the broker refuses the connection: at once when it says
// so; when a connection closes during the login or vhost step (see
// unstated), only if the next attempt, made at once, ends the same way.
func (c *Conn) redial(ctx context.Context) (*link, error) {
	if !c.up && c.opts.connectTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, c.opts.connectTimeout, ErrConnectTimeout)
		defer cancel()
	}
	b := newBackoff(c.opts.reconnectMin, c.opts.reconnectMax)
	var last failure // the last attempt that failed by itself, not cut short by ctx
	var unsure bool  // the last attempt's connection closed during the login or vhost step
	for n := 1; ; n++ {
		index := c.next % len(c.urls)
		url := c.urls[index]
		conn, tcp, err := dial(ctx, url, &c.opts)
		if err == nil {
			c.next = index
			c.opts.connected(url)
			l := newLink(conn, tcp.sock, url, index, c.opts.logger, c.lost)
			l.writes = tcp.writes
			return l, nil
		}
		c.next++
		if refused(err) && (unsure || !unstated(err)) {
			return nil, &ConnectError{Broker: redact(url), Attempts: n, Err: err}
		}
		unsure = unstated(err)
		if ctx.Err() == nil {
			last = failure{url, err}
			wait := b.NextBackOff()
			if unsure {
				wait = 0 // the next attempt tells a refusal from a cut: at once
			}
			c.opts.disconnected(url, err, wait)
			_ = sleep(ctx, wait)
		}
		if ctx.Err() != nil {
			return nil, c.gaveUp(ctx, n, cmp.Or(last, failure{url, err}))
		}
	}
}

// lost reports l's connection, lost with err.
func (c *Conn) lost(l *link, err error) {
	c.opts.logger.Warn("connection lost", "broker", redact(l.url), "error", err)
	if f := c.opts.hooks.OnDisconnect; f != nil && !c.sessions {
		f(DisconnectEvent{Broker: redact(l.url), Err: err})
	}
}

// failure is a failed connection attempt.
type failure struct {
	url string
	err error
}

// gaveUp says why redial stopped when ctx ended, with the most telling
// failure.
func (c *Conn) gaveUp(ctx context.Context, attempts int, last failure) error {
	cause := context.Cause(ctx)
	if errors.Is(cause, ErrConnectTimeout) {
		return &ConnectError{Broker: redact(last.url), Attempts: attempts,
			Err: fmt.Errorf("%w (%v): %w", ErrConnectTimeout, c.opts.connectTimeout, last.err)}
	}
	return fmt.Errorf("dlxretry: connect to %s: %w (last error: %v)", redact(last.url), cause, last.err)
}

// within returns a ctx that also ends, with the cause ErrClosed, when life
// does; call done when finished with it.
func within(ctx, life context.Context) (_ context.Context, done func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(life, func() { cancel(ErrClosed) })
	return ctx, func() { stop(); cancel(context.Canceled) }
}

// link is one AMQP connection of a Conn.
type link struct {
	conn   *amqp.Connection
	sock   net.Conn        // the TCP connection under TLS and AMQP
	writes *coalescingConn // what amqp091-go writes to, over sock
	url    string
	index  int // url's place among the Conn's URLs
	log    *slog.Logger

	mu        sync.Mutex
	unblocked chan struct{} // closed while the broker lets the connection publish
	quit      bool          // the library closed the connection: not lost
	gone      chan struct{} // closed once the connection is closed
	cause     error         // why, once gone: wraps ErrConnectionLost
}

// newLink follows conn, calling lost once if conn is lost, rather than
// closed by close.
func newLink(conn *amqp.Connection, sock net.Conn, url string, index int, log *slog.Logger, lost func(*link, error)) *link {
	l := &link{conn: conn, sock: sock, url: url, index: index, log: log,
		unblocked: make(chan struct{}), gone: make(chan struct{})}
	close(l.unblocked)
	go l.follow(conn.NotifyBlocked(make(chan amqp.Blocking, 1)), conn.NotifyClose(make(chan *amqp.Error, 1)), lost)
	return l
}

// follow keeps track of connection.blocked and connection.unblocked until
// the connection closes, then says why it closed. It is the goroutine that
// a connection has besides amqp091-go's own.
func (l *link) follow(blockings <-chan amqp.Blocking, closes <-chan *amqp.Error, lost func(*link, error)) {
	for {
		select {
		case b, ok := <-blockings:
			if !ok {
				blockings = nil // closed with the connection: closes says why
				continue
			}
			l.setBlocked(b.Active)
		case e := <-closes:
			l.setBlocked(false) // closed: nothing to wait for
			if l.closed(e) && lost != nil {
				lost(l, l.cause)
			}
			return
		}
	}
}

// closed records why the connection closed and reports whether it was lost
// rather than closed by the library.
func (l *link) closed(e *amqp.Error) (lost bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var cause error = amqp.ErrClosed // closed without an error: by this side
	if e != nil {
		cause = e
	}
	l.cause = fmt.Errorf("%w: %w", ErrConnectionLost, cause)
	close(l.gone)
	return !l.quit
}

// explain returns err, the error of a call on the connection, or, if the
// connection is closed, why it closed: the connection's loss explains the
// call's failure better than the call's own error, which names the channel.
func (l *link) explain(err error) error {
	if err != nil && l.conn.IsClosed() {
		return l.lost()
	}
	return err
}

// lost returns why the closed connection closed, wrapping ErrConnectionLost,
// waiting for it a moment at most: amqp091-go tells it before it closes
// the channels.
func (l *link) lost() error {
	select {
	case <-l.gone:
	case <-time.After(closeTimeout):
		return fmt.Errorf("%w: %w", ErrConnectionLost, amqp.ErrClosed)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cause
}

func (l *link) setBlocked(blocked bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-l.unblocked:
		if blocked {
			l.unblocked = make(chan struct{})
		}
	default:
		if !blocked {
			close(l.unblocked)
		}
	}
}

// waitUnblocked waits while the broker blocks the connection (a memory or
// disk alarm): a blocked connection stops reading, so a publish would hang.
func (l *link) waitUnblocked(ctx context.Context) error {
	l.mu.Lock()
	unblocked := l.unblocked
	l.mu.Unlock()
	select {
	case <-unblocked:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("dlxretry: the broker blocks publishing: %w", context.Cause(ctx))
	}
}

// channel opens a channel within ctx.
func (l *link) channel(ctx context.Context) (*amqp.Channel, error) {
	done := l.guard(ctx)
	ch, err := l.conn.Channel()
	done()
	switch {
	case err != nil && ctx.Err() != nil:
		return nil, fmt.Errorf("dlxretry: open channel: %w", context.Cause(ctx))
	case err != nil:
		return nil, fmt.Errorf("dlxretry: open channel: %w", err)
	}
	return ch, nil
}

// closeChannel closes ch, within closeTimeout.
func (l *link) closeChannel(ch *amqp.Channel) {
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	defer l.guard(ctx)()
	_ = ch.Close()
}

// How long a call into amqp091-go that takes no ctx may run on after its
// ctx ended before guard closes the connection under it: a write is stuck
// when the broker stops reading (an alarm); a call the broker answers (a
// declaration) may take a while on a busy broker.
const (
	writeGrace = 100 * time.Millisecond
	callGrace  = time.Second
)

// closeTimeout bounds the closing handshake of a connection or channel.
const closeTimeout = time.Second

// guard bounds a call into amqp091-go that takes no ctx and waits for the
// broker's answer (opening a channel, declaring): if ctx ends and the call
// is still running callGrace later, guard closes the TCP connection, which
// ends the call, and the connection with it. Call done when the call
// returns.
func (l *link) guard(ctx context.Context) (done func()) { return l.guardFor(ctx, callGrace) }

// guardWrite is guard for writing a message, which only a broker that stopped
// reading holds up.
func (l *link) guardWrite(ctx context.Context) (done func()) { return l.guardFor(ctx, writeGrace) }

func (l *link) guardFor(ctx context.Context, grace time.Duration) (done func()) {
	var mu sync.Mutex
	finished := false
	var timer *time.Timer
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if finished {
			return
		}
		timer = time.AfterFunc(grace, func() {
			mu.Lock()
			defer mu.Unlock()
			if !finished {
				l.abort()
			}
		})
	})
	return func() {
		stop()
		mu.Lock()
		defer mu.Unlock()
		finished = true
		if timer != nil {
			timer.Stop()
		}
	}
}

// abort closes the TCP connection under a call stuck past its ctx.
func (l *link) abort() {
	l.log.Warn("closing the connection: a call on it is stuck past its context (the broker reads nothing)", "broker", redact(l.url))
	_ = l.sock.Close()
}

// close closes the connection within closeTimeout.
func (l *link) close() error {
	l.mu.Lock()
	l.quit = true
	l.mu.Unlock()
	err := l.conn.CloseDeadline(time.Now().Add(closeTimeout))
	if errors.Is(err, amqp.ErrClosed) {
		return nil
	}
	return err
}
