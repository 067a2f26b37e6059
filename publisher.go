package dlxretry

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// aloneAbove is the body size above which a message is published on a
// channel of its own: RabbitMQ refuses a message over its max_message_size
// (128 MiB by default on 3.x, 16 MiB on 4.x, less where operators say so) by
// closing the channel, which would fail every publish in flight on it.
const aloneAbove = 1 << 20

// sendAttempts bounds how many channels a publish tries when the one it had
// failed before its message was written whole.
const sendAttempts = 3

// The pause before a fresh channel after a run of nacks: it starts at
// nackPauseMin and doubles, up to nackPauseMax, while the fresh channels
// are nacked too, without an ack in between.
const (
	nackPauseMin = 100 * time.Millisecond
	nackPauseMax = 5 * time.Second
)

// Publisher publishes persistent messages with publisher confirms and
// mandatory routing. It is safe for concurrent use. [Publisher.Publish]
// waits for its message's confirm; [Publisher.PublishAsync] returns once
// the message is handed over, with a [Confirmation] to learn its outcome
// from, so that one goroutine keeps many messages in flight.
//
// Publishes from all goroutines go out on one channel, written in the order
// they come by one goroutine of the Publisher's, which also takes the
// broker's confirms; callers wait for their own outcome, never for each
// other's writes or confirms. A Publisher connects on the first publish
// and, once the connection is lost, connects again on a later one, with
// backoff. When the broker nacks eight publishes in a row on the channel,
// the Publisher moves to a fresh channel after a pause (see [ErrNacked]).
// Create it with [NewPublisher]; the zero value is not usable. Close it
// when done: that also ends its goroutines.
type Publisher struct {
	conn *Conn
	own  bool // conn was made for this Publisher: Close closes it
	opts publisherOptions
	life context.Context // done once Close is called; not a caller's ctx
	stop context.CancelFunc

	cur atomic.Pointer[pubChannel] // where publishes go; nil until a channel is open

	lock      chan struct{} // held while changing cur; guards the fields below; a channel so that waiting for it respects ctx
	retired   []*pubChannel // channels left after a run of nacks, closed once nothing is in flight on them
	nackPause time.Duration // the last pause after a run of nacks
	reopenAt  time.Time     // no fresh channel before this, after a run of nacks

	mu        sync.Mutex
	checkedOn *link                     // the connection the checks below hold for
	exchanges map[string]*exchangeCheck // exchanges that exist, or are being checked
}

// pubChannel is a channel that publishes go to, and its connection.
type pubChannel struct {
	l  *link
	cc *confirmChannel
}

// exchangeCheck is the passive declaration of an exchange, done once per
// connection for all who publish to it.
type exchangeCheck struct {
	done     chan struct{}
	err      error
	gaveUp   bool // the checker's ctx ended: others check again
	exchange string
}

// NewPublisher checks the options and returns a Publisher that publishes
// through broker: a URL, for a connection of its own made with the
// [ConnOption] values given (Close closes it), or a shared *[Conn]. It
// does not connect. Of [Hooks], OnPublish is called; OnConnect and
// OnDisconnect are called for a connection of its own (a shared Conn calls
// its own hooks).
func NewPublisher[B Broker](broker B, opts ...PublisherOption) (*Publisher, error) {
	o, err := newPublisherOptions(opts)
	if err != nil {
		return nil, err
	}
	conn, own, err := connFor(broker, o.connOptions)
	if err != nil {
		return nil, err
	}
	life, stop := context.WithCancel(context.Background())
	return &Publisher{conn: conn, own: own, opts: o, life: life, stop: stop, lock: make(chan struct{}, 1)}, nil
}

// Publish publishes msg to exchange with routing key key and returns nil
// once the broker has confirmed it and a queue took it. A message with
// DeliveryMode 0 is sent persistent; one without a MessageId gets a random
// one. Publish does not send a message twice on its own: the caller
// decides whether to publish again after an error (a message whose channel
// or connection had failed before the message was written is sent on a new
// channel, three times at most). Every error it returns wraps one
// of these:
//
//   - [ErrUnroutable] if no queue took the message;
//   - [ErrNacked] if the broker answered with a negative confirm: it did not
//     take the message (in a cluster, possibly for a moment only);
//   - the broker's *amqp.Error if it refused the message by closing the
//     channel: 404 for an exchange that does not exist, 406 for a message
//     larger than its max_message_size, 403 without permission. The message
//     was not routed, and other publishes are not affected: Publish checks
//     each exchange once per connection, on a channel of its own, and
//     publishes a message larger than 1 MiB or with a UserId on a channel of
//     its own;
//   - [ErrUnconfirmed] if the connection or channel failed before the
//     confirm: the message may have been routed;
//   - a *[ConfigError] for a message the broker would refuse that Publish
//     can tell (an Expiration that is not a number, a header of a type AMQP
//     has no encoding for), and a *[ConnectError] for a broker that refuses
//     the connection;
//   - [ErrClosed] after Close, or when Close interrupted it;
//   - ctx's error when ctx ended first.
//
// While the broker blocks publishing (a memory or disk alarm), Publish
// waits. ctx bounds all of it: connecting and backing off, opening a
// channel, the broker's block, writing the message and the confirm. A
// message still being written a moment after ctx ended (the broker stopped
// reading it) cannot be taken back: Publish closes the connection under it,
// for everyone on it, and the next Publish connects again.
//
// Each call waits for its own confirm, a round trip to the broker and its
// disk, so a goroutine publishes one message at a time: to keep many in
// flight, publish from many goroutines, or use [Publisher.PublishAsync].
func (p *Publisher) Publish(ctx context.Context, exchange, key string, msg amqp.Publishing) error {
	if p == nil || p.conn == nil {
		return invalid("Publisher", "not created by NewPublisher")
	}
	start := time.Now()
	err := p.publish(ctx, exchange, key, msg)
	p.report(ctx, exchange, key, err, start)
	return err
}

func (p *Publisher) publish(ctx context.Context, exchange, key string, msg amqp.Publishing) error {
	if err := prepare(&msg); err != nil {
		return p.outcome(ctx, exchange, key, err)
	}
	var err error
	for range sendAttempts {
		pd := newPending(exchange, key, msg)
		var cc *confirmChannel
		switch cc, err = p.send(ctx, pd); {
		case err == nil && cc != nil:
			err = cc.wait(ctx, pd)
		case err == nil:
			err = pd.err // settled on a channel of its own
		}
		if !p.again(ctx, cc, err) {
			break
		}
	}
	return p.outcome(ctx, exchange, key, err)
}

// again reports whether a publish that failed with err on cc (nil if it
// got none) goes to another channel: when it was not sent, and neither ctx
// nor Close ended it. A write that failed may be learnt of before the
// connection's reader learns that the connection broke: again gives the
// channel a moment to close, so that the next attempt finds a new one.
func (p *Publisher) again(ctx context.Context, cc *confirmChannel, err error) bool {
	if !errors.Is(err, errNotSent) || ctx.Err() != nil || p.life.Err() != nil {
		return false
	}
	if cc != nil {
		t := time.NewTimer(closeTimeout)
		defer t.Stop()
		select {
		case <-cc.ended:
		case <-t.C:
		case <-ctx.Done():
		case <-p.life.Done():
		}
	}
	return true
}

// PublishAsync publishes msg as [Publisher.Publish] does, with the same
// guarantees, but returns once the message is handed over to be written,
// with a Confirmation that tells its outcome once the broker has settled
// it: the errors Publish returns for a message it sent ([ErrUnroutable],
// [ErrNacked], [ErrUnconfirmed], the broker's refusal) come from
// [Confirmation.Wait]. PublishAsync itself returns an error, and no
// Confirmation, when it could not hand the message over: [ErrClosed],
// ctx's error, a *[ConfigError], a *[ConnectError], the broker's 404 for an
// exchange that does not exist, or [ErrUnconfirmed] when the connection
// failed three times before a channel was open.
//
// It waits while 1,024 of its messages are unsettled (backpressure). ctx
// bounds that wait, connecting, the broker's block and handing the message
// over; not the write or the confirm, which Wait's ctx bounds. The messages
// PublishAsync hands over go out on one channel, so those of one goroutine
// reach a queue in the order it published them, as long as that channel
// lasts (a lost connection or a run of nacks replaces it). A message whose
// channel closed before it was written is not sent, and its Confirmation
// says [ErrUnconfirmed]. A message larger than 1 MiB or with a UserId, sent
// on a channel of its own, is confirmed before PublishAsync returns.
//
// A typical loop keeps a window of Confirmations and waits for the oldest
// when the window is full. OnPublish is called once per message once its
// outcome is known: on the caller's goroutine when PublishAsync fails,
// otherwise on the Publisher's goroutine that takes the confirms, which
// waits for it; there it must be quick and must not publish or wait on the
// Publisher.
func (p *Publisher) PublishAsync(ctx context.Context, exchange, key string, msg amqp.Publishing) (*Confirmation, error) {
	if p == nil || p.conn == nil {
		return nil, invalid("Publisher", "not created by NewPublisher")
	}
	start := time.Now()
	c, err := p.sendAsync(ctx, exchange, key, msg, start)
	if err == nil {
		return c, nil
	}
	err = p.outcome(ctx, exchange, key, err)
	p.report(ctx, exchange, key, err, start)
	return nil, err
}

// sendAsync hands msg over, trying up to sendAttempts channels.
func (p *Publisher) sendAsync(ctx context.Context, exchange, key string, msg amqp.Publishing, start time.Time) (*Confirmation, error) {
	if err := prepare(&msg); err != nil {
		return nil, err
	}
	var err error
	for range sendAttempts {
		c := &Confirmation{p: newPending(exchange, key, msg)}
		c.p.start, c.p.report = start, true
		if c.cc, err = p.send(ctx, c.p); err == nil {
			if c.cc == nil { // settled on a channel of its own
				p.reportAsync(c.p)
			}
			return c, nil
		}
		if !p.again(ctx, nil, err) {
			break
		}
	}
	return nil, err
}

// Confirmation is the outcome of a message sent with
// [Publisher.PublishAsync]. Done is closed once the outcome is known; Wait
// returns it. It is safe for concurrent use; the zero value is not usable.
type Confirmation struct {
	p  *pending
	cc *confirmChannel // nil when sent on a channel of its own
}

// closed is a channel that is closed.
var closed = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// Done returns a channel that is closed once the outcome is known: the
// broker confirmed or nacked the message, or its channel closed first.
func (c *Confirmation) Done() <-chan struct{} {
	if c == nil || c.p == nil {
		return closed
	}
	return c.p.done
}

// Wait returns nil once the broker has confirmed the message and a queue
// took it, or the error [Publisher.Publish] would have returned: it wraps
// [ErrUnroutable], [ErrNacked], [ErrUnconfirmed] or the broker's
// *amqp.Error. It returns ctx's error if ctx ends first; the message stays
// in flight, and Wait can be called again. A message still being written a
// moment after ctx ended (the broker stopped reading) cannot be taken back:
// Wait closes the connection under it, as Publish does.
func (c *Confirmation) Wait(ctx context.Context) error {
	if c == nil || c.p == nil {
		return invalid("Confirmation", "not returned by PublishAsync")
	}
	select {
	case <-c.p.done:
		return asyncError(c.p)
	case <-ctx.Done():
		if c.cc != nil {
			c.cc.watchWrites()
		}
		return publishError(c.p.exchange, c.p.key, ctx.Err())
	}
}

// asyncError is the error Wait returns for pd, once settled.
func asyncError(pd *pending) error {
	switch {
	case pd.err == nil:
		return nil
	case told(pd.err):
		return publishError(pd.exchange, pd.key, pd.err)
	}
	return publishError(pd.exchange, pd.key, fmt.Errorf("%w: %w", ErrUnconfirmed, pd.err))
}

// send hands pd to the broker and returns the channel it went to, or nil
// for a message sent on a channel of its own, which send has settled.
func (p *Publisher) send(ctx context.Context, pd *pending) (*confirmChannel, error) {
	if p.life.Err() != nil {
		return nil, ErrClosed
	}
	if len(pd.msg.Body) > aloneAbove || pd.msg.UserId != "" {
		return nil, p.sendAlone(ctx, pd)
	}
	s, err := p.channel(ctx)
	if err != nil {
		return nil, err
	}
	if err := p.checkExchange(ctx, s.l, pd.exchange); err != nil {
		return nil, err
	}
	if err := p.waitUnblocked(ctx, s.l); err != nil {
		return nil, err
	}
	return s.cc, s.cc.send(ctx, pd)
}

// waitUnblocked waits while the broker blocks l (a memory or disk alarm).
func (p *Publisher) waitUnblocked(ctx context.Context, l *link) error {
	l.mu.Lock()
	unblocked := l.unblocked
	l.mu.Unlock()
	select {
	case <-unblocked:
		return nil
	default:
	}
	ctx, done := within(ctx, p.life)
	defer done()
	return l.waitUnblocked(ctx)
}

// sendAlone publishes pd on a channel of its own and settles it.
func (p *Publisher) sendAlone(ctx context.Context, pd *pending) error {
	ctx, done := within(ctx, p.life)
	defer done()
	l, err := p.conn.link(ctx)
	if err != nil {
		return err
	}
	if err := p.checkExchange(ctx, l, pd.exchange); err != nil {
		return err
	}
	if err := p.waitUnblocked(ctx, l); err != nil {
		return err
	}
	err = p.publishAlone(ctx, l, pd.exchange, pd.key, pd.msg)
	if errors.Is(err, errNotSent) {
		return err
	}
	pd.err = err
	close(pd.done)
	return nil
}

// prepare fills in what the Publisher sets, and refuses what the broker
// would refuse by closing the channel, where the client can tell.
func prepare(msg *amqp.Publishing) error {
	if msg.DeliveryMode == 0 {
		msg.DeliveryMode = amqp.Persistent
	}
	if msg.Expiration != "" {
		if _, err := strconv.ParseUint(msg.Expiration, 10, 32); err != nil {
			return invalid("Publishing.Expiration", "%q is not a number of milliseconds (0 to 4294967295)", msg.Expiration)
		}
	}
	if err := msg.Headers.Validate(); err != nil {
		return invalid("Publishing.Headers", "%v", err)
	}
	return nil
}

// outcome is the error Publish returns for err, which wraps what the
// Publish docs promise.
func (p *Publisher) outcome(ctx context.Context, exchange, key string, err error) error {
	switch {
	case err == nil:
		return nil
	case told(err):
	case p.life.Err() != nil:
		err = ErrClosed // Close interrupted it
	case ctx.Err() != nil && !errors.Is(err, ctx.Err()):
		err = fmt.Errorf("%w: %w", ctx.Err(), err)
	case ctx.Err() == nil:
		// The connection failed in a way the code above did not name.
		err = fmt.Errorf("%w: %w", ErrUnconfirmed, err)
	}
	return publishError(exchange, key, err)
}

func publishError(exchange, key string, err error) error {
	return fmt.Errorf("dlxretry: publish to %q with key %q: %w", exchange, key, err)
}

// told reports whether err wraps an error the Publish docs name, other
// than a ctx's.
func told(err error) bool {
	for _, e := range []error{ErrUnroutable, ErrNacked, ErrUnconfirmed, ErrClosed} {
		if errors.Is(err, e) {
			return true
		}
	}
	if ae, ok := asType[*amqp.Error](err); ok && ae.Server {
		return true
	}
	_, config := asType[*ConfigError](err)
	_, connect := asType[*ConnectError](err)
	return config || connect
}

// report calls the OnPublish hook, if there is one.
func (p *Publisher) report(ctx context.Context, exchange, key string, err error, start time.Time) {
	if f := p.opts.hooks.OnPublish; f != nil {
		f(ctx, PublishEvent{Exchange: exchange, RoutingKey: key, Err: err, Duration: time.Since(start)})
	}
}

// reportAsync reports the outcome of a PublishAsync.
func (p *Publisher) reportAsync(pd *pending) {
	p.report(context.Background(), pd.exchange, pd.key, asyncError(pd), pd.start)
}

// channel returns the pubChannel to publish on, opening it if needed.
func (p *Publisher) channel(ctx context.Context) (*pubChannel, error) {
	if s := p.cur.Load(); s != nil && s.usable() {
		return s, nil
	}
	ctx, done := within(ctx, p.life)
	defer done()
	select {
	case p.lock <- struct{}{}:
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
	defer func() { <-p.lock }()
	if p.life.Err() != nil {
		return nil, ErrClosed
	}
	if s := p.cur.Load(); s != nil && s.usable() {
		return s, nil // opened meanwhile
	}
	return p.renew(ctx)
}

// usable reports whether s's channel is open and not retired.
func (s *pubChannel) usable() bool {
	return !s.cc.ch.IsClosed() && !s.cc.retired.Load()
}

// renew replaces the channel that closed or retired, or opens the first.
// Call it holding p.lock.
func (p *Publisher) renew(ctx context.Context) (*pubChannel, error) {
	if old := p.cur.Swap(nil); old != nil {
		switch {
		case old.cc.retired.Load():
			p.retire(old)
		case !old.l.conn.IsClosed():
			// The broker closed the channel: perhaps for a publish to an
			// exchange that went away since it was checked.
			p.forgetExchanges()
		}
	}
	if wait := time.Until(p.reopenAt); wait > 0 {
		if err := sleep(ctx, wait); err != nil {
			return nil, context.Cause(ctx)
		}
	}
	p.closeRetired(false)
	l, err := p.conn.link(ctx)
	if err != nil {
		return nil, err
	}
	cc, err := p.openConfirm(ctx, l)
	if err != nil {
		return nil, err
	}
	s := &pubChannel{l: l, cc: cc}
	p.cur.Store(s)
	return s, nil
}

// retire leaves s, whose channel the broker nacked nackRun times in a row,
// and sets the pause before a fresh channel. Call it holding p.lock.
func (p *Publisher) retire(s *pubChannel) {
	if s.cc.acked.Load() || p.nackPause == 0 {
		p.nackPause = nackPauseMin
	} else {
		p.nackPause = min(2*p.nackPause, nackPauseMax)
	}
	p.reopenAt = time.Now().Add(p.nackPause)
	p.retired = append(p.retired, s)
	p.opts.logger.Warn("the broker nacked publishes in a row on one channel; publishing on a fresh channel after a pause",
		"nacks", nackRun, "pause", p.nackPause, "broker", redact(s.l.url))
}

// closeRetired closes the retired channels with nothing in flight, or all.
// Call it holding p.lock.
func (p *Publisher) closeRetired(all bool) {
	kept := p.retired[:0]
	for _, s := range p.retired {
		if all || s.cc.load() == 0 {
			s.close()
			continue
		}
		kept = append(kept, s)
	}
	clear(p.retired[len(kept):])
	p.retired = kept
}

// close closes s's channel and waits, a moment at most, for its loop to
// settle what was left on it.
func (s *pubChannel) close() {
	s.l.closeChannel(s.cc.ch)
	t := time.NewTimer(closeTimeout)
	defer t.Stop()
	select {
	case <-s.cc.ended:
	case <-t.C:
	}
}

// openConfirm opens a channel in confirm mode on l.
func (p *Publisher) openConfirm(ctx context.Context, l *link) (*confirmChannel, error) {
	ch, err := l.channel(ctx)
	if err == nil {
		done := l.guard(ctx)
		var cc *confirmChannel
		cc, err = newConfirmChannel(ch)
		done()
		if err == nil {
			cc.abort, cc.settled = l.abort, p.reportAsync
			return cc, nil
		}
	}
	switch {
	case ctx.Err() != nil:
		return nil, context.Cause(ctx)
	case l.conn.IsClosed():
		return nil, fmt.Errorf("%w: %w", errNotSent, err) // lost meanwhile: try the next connection
	}
	return nil, err
}

// publishAlone publishes msg on a channel of its own, so that whatever the
// broker refuses it for fails only this publish.
func (p *Publisher) publishAlone(ctx context.Context, l *link, exchange, key string, msg amqp.Publishing) error {
	cc, err := p.openConfirm(ctx, l)
	if err != nil {
		return err
	}
	defer (&pubChannel{l: l, cc: cc}).close()
	cc.alone = true
	err = cc.publish(ctx, exchange, key, msg)
	if ae, ok := asType[*amqp.Error](err); ok && ae.Code == amqp.NotFound {
		p.forgetExchanges()
	}
	return err
}

// checkExchange returns nil if exchange exists, checking it with a passive
// declaration once per connection: a publish to an exchange that does not
// exist would close the channel that every publish shares.
func (p *Publisher) checkExchange(ctx context.Context, l *link, exchange string) error {
	if exchange == "" {
		return nil // the default exchange
	}
	for {
		chk, first := p.exchangeCheck(l, exchange)
		if first {
			p.runCheck(ctx, l, chk)
		}
		select {
		case <-chk.done:
		case <-ctx.Done():
			return ctx.Err()
		case <-p.life.Done():
			return ErrClosed
		}
		if !chk.gaveUp || ctx.Err() != nil {
			return chk.err
		}
	}
}

// exchangeCheck returns the check of exchange on l, and whether the caller
// must run it.
func (p *Publisher) exchangeCheck(l *link, exchange string) (*exchangeCheck, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.checkedOn != l || p.exchanges == nil {
		p.checkedOn, p.exchanges = l, make(map[string]*exchangeCheck)
	}
	if chk := p.exchanges[exchange]; chk != nil {
		return chk, false
	}
	chk := &exchangeCheck{done: make(chan struct{}), exchange: exchange}
	p.exchanges[exchange] = chk
	return chk, true
}

func (p *Publisher) runCheck(ctx context.Context, l *link, chk *exchangeCheck) {
	ctx, done := within(ctx, p.life)
	defer done()
	chk.err = declarePassive(ctx, l, chk.exchange)
	chk.gaveUp = chk.err != nil && ctx.Err() != nil
	if chk.err != nil {
		p.mu.Lock()
		if p.exchanges[chk.exchange] == chk {
			delete(p.exchanges, chk.exchange) // checked again next time: it may be declared meanwhile
		}
		p.mu.Unlock()
	}
	close(chk.done)
}

func (p *Publisher) forgetExchanges() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.exchanges = nil
}

// declarePassive checks that exchange exists, on a channel of its own,
// which the broker closes if it does not.
func declarePassive(ctx context.Context, l *link, exchange string) error {
	ch, err := l.channel(ctx)
	if err != nil {
		if ctx.Err() == nil {
			err = fmt.Errorf("%w: %w", errNotSent, err)
		}
		return err
	}
	defer l.closeChannel(ch)
	done := l.guard(ctx)
	err = ch.ExchangeDeclarePassive(exchange, "", true, false, false, false, nil)
	done()
	ae, _ := asType[*amqp.Error](err)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return context.Cause(ctx)
	case ae != nil && ae.Server && ae.Code == amqp.NotFound:
		return fmt.Errorf("dlxretry: exchange %q does not exist: %w", exchange, err)
	case ae != nil && ae.Server:
		return fmt.Errorf("dlxretry: check exchange %q: %w", exchange, err)
	}
	// The connection failed: the publish goes to the next one.
	return fmt.Errorf("%w: check exchange %q: %w", errNotSent, exchange, err)
}

// Close closes the Publisher's channel, and its connection when it has one
// of its own (made from a URL). It interrupts what Publish and PublishAsync
// wait for, connecting and backing off included: publishes in flight return
// errors wrapping [ErrClosed] or [ErrUnconfirmed], and later ones return
// ErrClosed. A shared Conn stays open. The outcomes of PublishAsync's
// messages are known (and reported to OnPublish) when Close returns.
func (p *Publisher) Close() error {
	if p == nil || p.conn == nil {
		return invalid("Publisher", "not created by NewPublisher")
	}
	p.stop()
	p.abortStuckWrite()
	var err error
	if p.own {
		err = p.conn.Close()
	}
	p.lock <- struct{}{} // its holder returns promptly now that p.life is done
	defer func() { <-p.lock }()
	if s := p.cur.Swap(nil); s != nil {
		p.retired = append(p.retired, s)
	}
	p.closeRetired(true)
	return err
}

// abortStuckWrite closes the connection under a write that is still
// running a moment after Close (the broker stopped reading it), which
// would hold up closing the channel.
func (p *Publisher) abortStuckWrite() {
	s := p.cur.Load()
	if s == nil || s.cc.writing.Load() == nil {
		return
	}
	seen := s.cc.written.Load()
	time.Sleep(writeGrace)
	if s.cc.writing.Load() != nil && s.cc.written.Load() == seen {
		s.l.abort()
	}
}
