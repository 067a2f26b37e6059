package dlxretry

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// aloneAbove is the body size above which a message is published on a
// channel of its own: RabbitMQ refuses a message over its max_message_size
// (128 MiB by default on 3.x, 16 MiB on 4.x, less where operators say so) by
// closing the channel, which would fail every publish in flight on it.
const aloneAbove = 1 << 20

// sendAttempts bounds how many channels a Publish tries when the one it had
// closed before its message was written.
const sendAttempts = 3

// Publisher publishes persistent messages with publisher confirms and
// mandatory routing. It is safe for concurrent use: publishes from many
// goroutines are pipelined on one channel, each waiting for its own confirm.
// It connects on the first Publish and, once the connection is lost,
// connects again on a later one, with backoff. Create it with
// [NewPublisher]; the zero value is not usable. Close it when done.
type Publisher struct {
	conn *Conn
	own  bool // conn was made for this Publisher: Close closes it
	opts publisherOptions
	life context.Context // done once Close is called; not a caller's ctx
	stop context.CancelFunc

	lock chan struct{} // guards on and cc; a channel so that waiting for it respects ctx
	on   *link
	cc   *confirmChannel

	mu        sync.Mutex
	checkedOn *link                     // the connection the checks below hold for
	exchanges map[string]*exchangeCheck // exchanges that exist, or are being checked
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
// closed before the broker had it whole, which the broker drops, is sent
// on a new channel, three times at most). Its errors wrap
//
//   - [ErrUnroutable] if no queue took the message;
//   - [ErrNacked] if the broker refused it with a negative confirm;
//   - the broker's *amqp.Error if it refused the message by closing the
//     channel: 404 for an exchange that does not exist, 406 for a message
//     larger than its max_message_size, 403 without permission. The message
//     was not routed, and other publishes are not affected: Publish checks
//     each exchange once per connection, on a channel of its own, and
//     publishes a message larger than 1 MiB or with a UserId on a channel of
//     its own;
//   - [ErrUnconfirmed] if the connection or channel was lost before the
//     confirm: the message may have been routed;
//   - [ErrClosed] after Close, or when Close interrupted it;
//   - ctx's error when ctx ended first.
//
// While the broker blocks publishing (a memory or disk alarm), Publish
// waits. ctx bounds all of it: connecting and backing off, opening a
// channel, the broker's block, writing the message and the confirm. A
// message still being written a moment after ctx ended (the broker stopped
// reading it) cannot be taken back: Publish closes the connection under it,
// for everyone on it, and the next Publish connects again.
func (p *Publisher) Publish(ctx context.Context, exchange, key string, msg amqp.Publishing) error {
	if p == nil || p.conn == nil {
		return invalid("Publisher", "not created by NewPublisher")
	}
	start := time.Now()
	err := p.publish(ctx, exchange, key, msg)
	if f := p.opts.hooks.OnPublish; f != nil {
		f(ctx, PublishEvent{Exchange: exchange, RoutingKey: key, Err: err, Duration: time.Since(start)})
	}
	return err
}

func (p *Publisher) publish(ctx context.Context, exchange, key string, msg amqp.Publishing) error {
	if p.life.Err() != nil {
		return ErrClosed
	}
	if msg.DeliveryMode == 0 {
		msg.DeliveryMode = amqp.Persistent
	}
	if err := checkPublishing(msg); err != nil {
		return err
	}
	ctx, done := within(ctx, p.life)
	defer done()
	var err error
	for range sendAttempts {
		if err = p.publishOnce(ctx, exchange, key, msg); !errors.Is(err, errNotSent) || ctx.Err() != nil {
			break
		}
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(context.Cause(ctx), ErrClosed):
		err = ErrClosed
	}
	return fmt.Errorf("dlxretry: publish to %q with key %q: %w", exchange, key, err)
}

// checkPublishing refuses what the broker would refuse by closing the
// channel, where the client can tell.
func checkPublishing(msg amqp.Publishing) error {
	if msg.Expiration != "" {
		if _, err := strconv.ParseUint(msg.Expiration, 10, 32); err != nil {
			return fmt.Errorf("dlxretry: Expiration %q is not a number of milliseconds (0 to 4294967295)", msg.Expiration)
		}
	}
	return nil
}

func (p *Publisher) publishOnce(ctx context.Context, exchange, key string, msg amqp.Publishing) error {
	l, cc, err := p.channel(ctx)
	if err != nil {
		return err
	}
	if err := p.checkExchange(ctx, l, exchange); err != nil {
		return err
	}
	if err := l.waitUnblocked(ctx); err != nil {
		return err
	}
	if len(msg.Body) > aloneAbove || msg.UserId != "" {
		return p.publishAlone(ctx, l, exchange, key, msg)
	}
	return cc.publish(ctx, exchange, key, msg)
}

// channel returns the shared confirm channel and its connection, opening
// them if needed.
func (p *Publisher) channel(ctx context.Context) (*link, *confirmChannel, error) {
	select {
	case p.lock <- struct{}{}:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	defer func() { <-p.lock }()
	if p.cc != nil && !p.cc.ch.IsClosed() {
		return p.on, p.cc, nil
	}
	if p.cc != nil {
		if e := p.cc.closeError(); e != nil && e.Code == amqp.NotFound {
			p.forgetExchanges() // an exchange went away since it was checked
		}
		p.cc = nil
	}
	l, err := p.conn.link(ctx)
	if err != nil {
		return nil, nil, err
	}
	cc, err := p.openConfirm(ctx, l)
	if err != nil {
		return nil, nil, err
	}
	p.on, p.cc = l, cc
	return l, cc, nil
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
			cc.guard = l.guardWrite
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
	defer l.closeChannel(cc.ch)
	cc.alone = true
	err = cc.publish(ctx, exchange, key, msg)
	if ae, ok := errors.AsType[*amqp.Error](err); ok && ae.Code == amqp.NotFound {
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
		return err
	}
	defer l.closeChannel(ch)
	done := l.guard(ctx)
	err = ch.ExchangeDeclarePassive(exchange, "", true, false, false, false, nil)
	done()
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return context.Cause(ctx)
	}
	if ae, ok := errors.AsType[*amqp.Error](err); ok && ae.Code == amqp.NotFound {
		return fmt.Errorf("dlxretry: exchange %q does not exist: %w", exchange, err)
	}
	return fmt.Errorf("dlxretry: check exchange %q: %w", exchange, err)
}

// Close closes the Publisher's channels, and its connection when it has one
// of its own (made from a URL). It interrupts what Publish waits for,
// connecting and backing off included: publishes in flight return errors
// wrapping [ErrClosed], [ErrUnconfirmed] or the connection's error, and
// later ones return ErrClosed. A shared Conn stays open.
func (p *Publisher) Close() error {
	if p == nil || p.conn == nil {
		return invalid("Publisher", "not created by NewPublisher")
	}
	p.stop()
	if p.own {
		return p.conn.Close()
	}
	p.lock <- struct{}{} // its holder returns promptly now that p.life is done
	defer func() { <-p.lock }()
	if p.cc != nil {
		p.on.closeChannel(p.cc.ch)
		p.cc = nil
	}
	return nil
}
