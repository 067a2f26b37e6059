package dlxretry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"

	amqp "github.com/rabbitmq/amqp091-go"
)

// maxInFlight bounds the unconfirmed publishes on one channel. It is also
// the size of the returns buffer, so that the connection's reader never
// blocks on a return while publishers wait for confirms behind it.
const maxInFlight = 1024

// errNotSent is wrapped by the errors of a publish that never reached the
// broker: the channel was closed before it was written.
var errNotSent = errors.New("dlxretry: not sent")

// confirmChannel publishes on a channel in confirm mode, with mandatory
// routing, and tells each publisher about its own message: pipelined (many
// goroutines wait for their own confirms at once), returns matched by message
// id. The broker sends a message's return before its confirm, so a publisher
// whose confirm has arrived finds its return, if any, already buffered.
//
// A message id has at most one publish the broker has not settled: a second
// publish with the same id waits until the first is confirmed, even when
// the first one's caller gave up, so that a return is never taken for
// another message's.
type confirmChannel struct {
	ch      *amqp.Channel
	returns chan amqp.Return
	closes  chan *amqp.Error
	slots   chan struct{}
	alone   bool                         // the channel carries one publish: whatever closes it is that publish's fault
	guard   func(context.Context) func() // bounds a write that cannot be interrupted; nil: none

	mu        sync.Mutex
	inflight  map[string]*pending // message id -> its unsettled publish
	returned  map[string]string   // message id -> the broker's reply text
	abandoned []*pending          // publishes whose callers left before the confirm
	closeErr  *amqp.Error
}

// pending is one publish in flight.
type pending struct {
	id      string
	dc      *amqp.DeferredConfirmation
	settled chan struct{} // closed once its outcome was taken, by its caller or a sweep
	left    chan struct{} // closed when its caller gave up waiting
}

func newConfirmChannel(ch *amqp.Channel) (*confirmChannel, error) {
	if err := ch.Confirm(false); err != nil {
		return nil, fmt.Errorf("dlxretry: confirm mode: %w", err)
	}
	c := &confirmChannel{
		ch:       ch,
		returns:  ch.NotifyReturn(make(chan amqp.Return, maxInFlight)),
		closes:   ch.NotifyClose(make(chan *amqp.Error, 1)),
		slots:    make(chan struct{}, maxInFlight),
		inflight: make(map[string]*pending),
		returned: make(map[string]string),
	}
	return c, nil
}

// publish returns nil once the broker has confirmed msg and not returned it.
// A message without a MessageId gets a random one.
func (c *confirmChannel) publish(ctx context.Context, exchange, key string, msg amqp.Publishing) error {
	if msg.MessageId == "" {
		msg.MessageId = newMessageID()
	}
	if err := c.acquire(ctx); err != nil {
		return err
	}
	p, err := c.send(ctx, exchange, key, msg)
	if err != nil {
		<-c.slots
		return err
	}
	acked, err := p.dc.WaitContext(ctx)
	if err != nil {
		c.abandon(p) // its slot is freed once the broker settles it
		return err
	}
	defer c.finish(p)
	switch {
	case !acked && c.ch.IsClosed():
		return c.closedError(exchange)
	case !acked:
		return ErrNacked
	}
	if text, ok := c.claimReturn(p.id); ok {
		return fmt.Errorf("%w: %s", ErrUnroutable, text)
	}
	return nil
}

// acquire takes a slot, sweeping abandoned publishes the broker settled.
func (c *confirmChannel) acquire(ctx context.Context) error {
	for {
		select {
		case c.slots <- struct{}{}:
			return nil
		default:
		}
		c.mu.Lock()
		c.sweep()
		var next <-chan struct{} // nil, which never fires, when none is abandoned
		if len(c.abandoned) > 0 {
			next = c.abandoned[0].dc.Done()
		}
		c.mu.Unlock()
		select {
		case c.slots <- struct{}{}:
			return nil
		case <-next:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// send publishes once no other publish of the same message id is unsettled.
func (c *confirmChannel) send(ctx context.Context, exchange, key string, msg amqp.Publishing) (*pending, error) {
	if c.guard != nil {
		// Armed while waiting for c.mu too: its holder may be stuck writing.
		defer c.guard(ctx)()
	}
	if err := c.awaitTurn(ctx, msg.MessageId); err != nil {
		return nil, err
	}
	defer c.mu.Unlock()
	dc, err := c.ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, true, false, msg)
	switch {
	case err != nil && ctx.Err() == nil && c.ch.IsClosed():
		// Closed before or while it was written: the broker drops a
		// message it did not receive whole.
		return nil, fmt.Errorf("%w: %w", errNotSent, err)
	case err != nil && ctx.Err() != nil:
		return nil, ctx.Err()
	case err != nil:
		return nil, err
	}
	p := &pending{id: msg.MessageId, dc: dc, settled: make(chan struct{}), left: make(chan struct{})}
	c.inflight[p.id] = p
	return p, nil
}

// awaitTurn returns, holding c.mu, once id has no unsettled publish.
func (c *confirmChannel) awaitTurn(ctx context.Context, id string) error {
	for {
		c.mu.Lock()
		c.sweep()
		prev := c.inflight[id]
		if prev == nil {
			return nil
		}
		c.mu.Unlock()
		select {
		case <-prev.settled:
		case <-prev.left:
			// Its caller gave up: wait for the broker to settle it.
			select {
			case <-prev.dc.Done():
			case <-ctx.Done():
				return ctx.Err()
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// abandon leaves p to be swept once the broker has settled it.
func (c *confirmChannel) abandon(p *pending) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.abandoned = append(c.abandoned, p)
	close(p.left)
}

// sweep forgets the abandoned publishes that the broker has settled, and
// their returns. Call it with c.mu held.
func (c *confirmChannel) sweep() {
	if len(c.abandoned) == 0 {
		return
	}
	c.drainReturns()
	kept := c.abandoned[:0]
	for _, p := range c.abandoned {
		select {
		case <-p.dc.Done():
			delete(c.returned, p.id)
			c.forget(p)
			<-c.slots
		default:
			kept = append(kept, p)
		}
	}
	clear(c.abandoned[len(kept):])
	c.abandoned = kept
}

// finish ends a publish whose caller took its outcome.
func (c *confirmChannel) finish(p *pending) {
	c.mu.Lock()
	c.forget(p)
	c.mu.Unlock()
	<-c.slots
}

func (c *confirmChannel) forget(p *pending) {
	if c.inflight[p.id] == p {
		delete(c.inflight, p.id)
	}
	close(p.settled)
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

// drainReturns moves buffered returns into the map; a return belongs to the
// unsettled publish of its message id. Call it with c.mu held.
func (c *confirmChannel) drainReturns() {
	for {
		select {
		case r, ok := <-c.returns:
			if !ok {
				return
			}
			if c.inflight[r.MessageId] != nil {
				c.returned[r.MessageId] = r.ReplyText
			}
		default:
			return
		}
	}
}

// closedError says why a publish was not confirmed on a channel that closed.
// The broker closes a channel for a publish it refuses (an exchange that is
// not there, a message too large, no permission); that publish gets the
// broker's error, the others [ErrUnconfirmed].
func (c *confirmChannel) closedError(exchange string) error {
	e := c.closeError()
	switch {
	case e == nil:
		return ErrUnconfirmed
	case c.alone || blames(e, exchange):
		return fmt.Errorf("dlxretry: the broker refused the message: %w", e)
	}
	return fmt.Errorf("%w (the channel closed: %v)", ErrUnconfirmed, e)
}

// closeError is the error the channel was closed with, nil if none (yet).
func (c *confirmChannel) closeError() *amqp.Error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closeErr == nil {
		select {
		case e, ok := <-c.closes:
			if ok {
				c.closeErr = e
			}
		default:
		}
	}
	return c.closeErr
}

// blames reports whether the broker closed the channel for a publish to
// exchange: its reason names the exchange, as in "NOT_FOUND - no exchange
// 'x' in vhost '/'" or "ACCESS_REFUSED - write access to exchange 'x' ...".
func blames(e *amqp.Error, exchange string) bool {
	if e.Server && (e.Code == amqp.NotFound || e.Code == amqp.AccessRefused) {
		return strings.Contains(e.Reason, "exchange '"+exchange+"'")
	}
	return false
}

func newMessageID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
