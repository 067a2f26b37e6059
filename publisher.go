package dlxretry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// ErrUnconfirmed is wrapped by publish errors when the channel closed before
// the broker confirmed the message: it may or may not have been routed.
// Publishing it again is safe for consumers that tolerate duplicates.
var ErrUnconfirmed = errors.New("dlxretry: channel closed before the broker confirmed the message")

// maxInFlight bounds the unconfirmed publishes on one channel. It is also
// the size of the returns buffer, so that the connection's reader never
// blocks on a return while publishers wait for confirms behind it.
const maxInFlight = 1024

// confirmChannel publishes on a channel in confirm mode, with mandatory
// routing, and tells each publisher about its own message: pipelined (many
// goroutines wait for their own confirms at once), returns matched by message
// id. The broker sends a message's return before its confirm, so a publisher
// whose confirm has arrived finds its return, if any, already buffered.
type confirmChannel struct {
	ch      *amqp.Channel
	returns chan amqp.Return
	slots   chan struct{}

	mu       sync.Mutex
	inflight map[string]chan struct{} // message id -> closed when settled
	returned map[string]string        // message id -> the broker's reply text
}

func newConfirmChannel(ch *amqp.Channel) (*confirmChannel, error) {
	if err := ch.Confirm(false); err != nil {
		return nil, fmt.Errorf("dlxretry: confirm mode: %w", err)
	}
	c := &confirmChannel{
		ch:       ch,
		returns:  ch.NotifyReturn(make(chan amqp.Return, maxInFlight)),
		slots:    make(chan struct{}, maxInFlight),
		inflight: make(map[string]chan struct{}),
		returned: make(map[string]string),
	}
	return c, nil
}

// publish returns nil once the broker has confirmed msg and not returned it.
// A message without a MessageId gets a random one. Two publishes with the
// same MessageId are never in flight at once: the second waits.
func (c *confirmChannel) publish(ctx context.Context, exchange, key string, msg amqp.Publishing) error {
	if msg.MessageId == "" {
		msg.MessageId = newMessageID()
	}
	select {
	case c.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-c.slots }()
	dc, settled, err := c.send(ctx, exchange, key, msg)
	if err != nil {
		return err
	}
	defer c.settle(msg.MessageId, settled)
	acked, err := dc.WaitContext(ctx)
	switch {
	case err != nil:
		return err
	case !acked && c.ch.IsClosed():
		return ErrUnconfirmed
	case !acked:
		return ErrNacked
	}
	if text, ok := c.claimReturn(msg.MessageId); ok {
		return fmt.Errorf("%w: %s", ErrUnroutable, text)
	}
	return nil
}

// send publishes once no other publish of the same message id is in flight.
func (c *confirmChannel) send(ctx context.Context, exchange, key string, msg amqp.Publishing) (*amqp.DeferredConfirmation, chan struct{}, error) {
	for {
		c.mu.Lock()
		prev, busy := c.inflight[msg.MessageId]
		if !busy {
			break
		}
		c.mu.Unlock()
		select {
		case <-prev:
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
	defer c.mu.Unlock()
	dc, err := c.ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, true, false, msg)
	if err != nil {
		return nil, nil, err
	}
	settled := make(chan struct{})
	c.inflight[msg.MessageId] = settled
	return dc, settled, nil
}

func (c *confirmChannel) settle(id string, settled chan struct{}) {
	c.mu.Lock()
	delete(c.inflight, id)
	c.mu.Unlock()
	close(settled)
}

// claimReturn moves buffered returns into the map and takes the one for id.
func (c *confirmChannel) claimReturn(id string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.drainReturns()
	text, ok := c.returned[id]
	delete(c.returned, id)
	return text, ok
}

func (c *confirmChannel) drainReturns() {
	for {
		select {
		case r, ok := <-c.returns:
			if !ok {
				return
			}
			c.returned[r.MessageId] = r.ReplyText
		default:
			return
		}
	}
}

func newMessageID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Publisher publishes persistent messages with publisher confirms and
// mandatory routing. It is safe for concurrent use: publishes from many
// goroutines are pipelined on one channel, each waiting for its own confirm.
// It connects on the first Publish and reconnects, with backoff, on a later
// one after the connection is lost. Close it when done.
type Publisher struct {
	urls []string
	opts options

	// lock guards the fields below; a channel so that waiting for it
	// respects ctx.
	lock      chan struct{}
	conn      *amqp.Connection
	cc        *confirmChannel
	blockings chan amqp.Blocking
	blocked   bool
	closed    bool
}

// NewPublisher checks the URL and options and returns a Publisher; it does
// not connect. Of the options, WithURLs, WithLogger, WithHooks (OnPublish,
// OnConnect, OnDisconnect), WithConnectionName and WithReconnectDelay apply.
func NewPublisher(url string, opts ...Option) (*Publisher, error) {
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	urls, err := brokerURLs(url, o.urls)
	if err != nil {
		return nil, err
	}
	return &Publisher{urls: urls, opts: o, lock: make(chan struct{}, 1)}, nil
}

// Publish publishes msg to exchange with routing key key and returns nil
// once the broker has confirmed it. A message with DeliveryMode 0 is sent
// persistent; one without a MessageId gets a random one. It returns an error
// wrapping [ErrUnroutable] if no queue took the message, [ErrNacked] if the
// broker refused it, and [ErrUnconfirmed] if the connection was lost before
// the confirm: Publish does not send a message twice on its own, so the
// caller decides whether to publish again. While the broker has blocked
// publishing (a memory or disk alarm), Publish waits. ctx bounds all of it,
// including reconnecting.
func (p *Publisher) Publish(ctx context.Context, exchange, key string, msg amqp.Publishing) error {
	start := time.Now()
	err := p.publish(ctx, exchange, key, msg)
	if f := p.opts.hooks.OnPublish; f != nil {
		f(PublishEvent{Exchange: exchange, RoutingKey: key, Err: err, Duration: time.Since(start)})
	}
	return err
}

func (p *Publisher) publish(ctx context.Context, exchange, key string, msg amqp.Publishing) error {
	if msg.DeliveryMode == 0 {
		msg.DeliveryMode = amqp.Persistent
	}
	cc, err := p.channel(ctx)
	if err != nil {
		return err
	}
	if err := cc.publish(ctx, exchange, key, msg); err != nil {
		return fmt.Errorf("dlxretry: publish to %q with key %q: %w", exchange, key, err)
	}
	return nil
}

// channel returns a live confirm channel, connecting if needed, once the
// broker is not blocking publishes.
func (p *Publisher) channel(ctx context.Context) (*confirmChannel, error) {
	select {
	case p.lock <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-p.lock }()
	if p.closed {
		return nil, ErrClosed
	}
	if p.cc == nil || p.cc.ch.IsClosed() {
		if err := p.connect(ctx); err != nil {
			return nil, err
		}
	}
	if err := p.waitUnblocked(ctx); err != nil {
		return nil, err
	}
	return p.cc, nil
}

func (p *Publisher) connect(ctx context.Context) error {
	if p.conn != nil {
		_ = p.conn.Close()
		p.conn, p.cc = nil, nil
	}
	conn, err := redial(ctx, p.urls, &p.opts)
	if err != nil {
		return err
	}
	ch, err := conn.Channel()
	if err == nil {
		p.cc, err = newConfirmChannel(ch)
	}
	if err != nil {
		_ = conn.Close()
		return err
	}
	p.conn = conn
	p.blockings = conn.NotifyBlocked(make(chan amqp.Blocking, 16))
	p.blocked = false
	return nil
}

// waitUnblocked waits while the broker blocks the connection (a memory or
// disk alarm): a blocked connection stops reading, so a publish would hang
// past its ctx.
func (p *Publisher) waitUnblocked(ctx context.Context) error {
	for {
		select {
		case b := <-p.blockings:
			p.blocked = b.Active
			continue
		default:
		}
		if !p.blocked {
			return nil
		}
		select {
		case b := <-p.blockings:
			p.blocked = b.Active
		case <-ctx.Done():
			return fmt.Errorf("dlxretry: the broker blocks publishing: %w", ctx.Err())
		}
	}
}

// Close closes the connection. Publishes in flight return errors; later
// ones return [ErrClosed].
func (p *Publisher) Close() error {
	p.lock <- struct{}{}
	defer func() { <-p.lock }()
	p.closed = true
	if p.conn == nil {
		return nil
	}
	err := p.conn.Close()
	p.conn, p.cc = nil, nil
	return err
}
