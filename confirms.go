package dlxretry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// maxInFlight bounds the unsettled publishes on one channel. It is also the
// size of the returns buffer, so that the connection's reader never blocks
// on a return: a publish holds its slot until its outcome, return included,
// has been taken.
const maxInFlight = 1024

// nackRun is how many nacks in a row retire a channel: in a cluster, a
// channel opened while a queue's leader was moving can nack every publish
// until that node is back, while a fresh channel works.
const nackRun = 8

// errNotSent is wrapped by the errors of a publish that never reached the
// broker whole: the channel or connection failed before or while it was
// written, and the broker drops a message it did not receive whole.
var errNotSent = errors.New("dlxretry: not sent")

// confirmChannel publishes on a channel in confirm mode, with mandatory
// routing, and tells each publish its own outcome: many publishes are in
// flight at once, each settled by whoever takes its outcome (its caller,
// or a later publish for one nobody waits for), returns matched by message
// id. The broker sends a message's return before its confirm, so once a
// confirm has arrived its return, if any, is already buffered.
//
// A message id has at most one unsettled publish on a channel: a second
// publish with the same id waits until the broker has settled the first,
// even when the first one's caller gave up, so that a return is never taken
// for another message's.
//
// Nothing is held across the network write but amqp091-go's own channel
// lock; c.mu guards only the bookkeeping.
type confirmChannel struct {
	ch      *amqp.Channel
	returns chan amqp.Return
	closes  chan *amqp.Error
	alone   bool            // the channel carries one publish: whatever closes it is that publish's fault
	abort   func()          // closes the connection under a stuck write; nil: writes are not guarded
	settled func(*pending)  // told, outside c.mu, the outcome of a publish its caller does not wait for; nil: none
	closing <-chan struct{} // closed when its owner closes: waits end with ErrClosed; nil: never

	check   func()        // c.checkWrites, made once
	writers atomic.Int32  // publishes being written on it
	written atomic.Uint64 // publishes written on it
	held    atomic.Int32  // unsettled publishes, at most maxInFlight; changed under mu
	retired atomic.Bool   // nackRun nacks in a row: publish elsewhere

	mu       sync.Mutex
	room     chan struct{}       // closed once a place frees, for those waiting for one; nil: nobody waits
	inflight map[string]*pending // message id -> its unsettled publish
	unowned  []*pending          // publishes nobody waits for, to settle once the broker has
	nacks    int                 // nacks in a row
	acked    bool                // the broker acked a publish on this channel
	closeErr *amqp.Error
}

// pending is one publish: in flight until its outcome is taken.
type pending struct {
	id, exchange, key string
	start             time.Time
	dc                atomic.Pointer[amqp.DeferredConfirmation] // set once written
	report            bool                                      // tell c.settled its outcome: nobody else reports it

	// guarded by the channel's mu
	returned   bool
	returnText string
	done       bool  // the outcome was taken
	err        error // the outcome, once done
}

func newConfirmChannel(ch *amqp.Channel) (*confirmChannel, error) {
	if err := ch.Confirm(false); err != nil {
		return nil, fmt.Errorf("dlxretry: confirm mode: %w", err)
	}
	c := &confirmChannel{
		ch:       ch,
		returns:  ch.NotifyReturn(make(chan amqp.Return, maxInFlight)),
		closes:   ch.NotifyClose(make(chan *amqp.Error, 1)),
		inflight: make(map[string]*pending),
	}
	c.check = c.checkWrites
	return c, nil
}

// publish returns nil once the broker has confirmed msg and not returned it.
// A message without a MessageId gets a random one.
func (c *confirmChannel) publish(ctx context.Context, exchange, key string, msg amqp.Publishing) error {
	p := &pending{exchange: exchange, key: key}
	if err := c.send(ctx, p, msg); err != nil {
		return err
	}
	return c.wait(ctx, p)
}

// send writes msg as the publish p, once a place is free and no other
// publish of the same message id is unsettled. A message without a
// MessageId gets a random one. With p.report set, nobody will wait for p:
// a later publish settles it once the broker has.
func (c *confirmChannel) send(ctx context.Context, p *pending, msg amqp.Publishing) error {
	if msg.MessageId == "" {
		msg.MessageId = newMessageID()
	}
	p.id = msg.MessageId
	if err := c.reserve(ctx, p); err != nil {
		return err
	}
	dc, err := c.write(ctx, p.exchange, p.key, msg)
	if err != nil {
		c.unreserve(p)
		return err
	}
	p.dc.Store(dc)
	return nil
}

// reserve takes a place for p and records it as the unsettled publish of
// its message id, once a place is free and no other is; meanwhile it
// settles, in order, the publishes nobody waits for that the broker has
// settled.
func (c *confirmChannel) reserve(ctx context.Context, p *pending) error {
	var buf [16]*pending
	for {
		c.mu.Lock()
		report, next := c.sweepLocked(buf[:0])
		prev := c.inflight[p.id]
		full := c.held.Load() >= maxInFlight
		if prev == nil && !full {
			c.inflight[p.id] = p
			c.held.Add(1)
			if p.report {
				c.unowned = append(c.unowned, p)
			}
			c.mu.Unlock()
			c.tell(report)
			return nil
		}
		var room <-chan struct{}
		if full {
			if c.room == nil {
				c.room = make(chan struct{})
			}
			room = c.room
		}
		c.mu.Unlock()
		c.tell(report)
		var err error
		if prev != nil {
			err = c.awaitSettled(ctx, prev)
		} else {
			err = c.awaitRoom(ctx, room, next)
		}
		if err != nil {
			return err
		}
	}
}

// awaitRoom waits until a place frees or next (the first publish nobody
// waits for) is settled by the broker.
func (c *confirmChannel) awaitRoom(ctx context.Context, room, next <-chan struct{}) error {
	var poll <-chan time.Time
	if next == nil {
		// The first of those is being written: look again in a moment.
		t := time.NewTimer(time.Millisecond)
		defer t.Stop()
		poll = t.C
	}
	select {
	case <-room:
	case <-next:
	case <-poll:
	case <-ctx.Done():
		return ctx.Err()
	case <-c.closing:
		return ErrClosed
	}
	return nil
}

// awaitSettled waits until the broker has settled prev, and settles it.
func (c *confirmChannel) awaitSettled(ctx context.Context, prev *pending) error {
	dc := prev.dc.Load()
	if dc == nil {
		// Being written right now (dc is set after the write), or just
		// failed to be: rare, and over within a write.
		select {
		case <-time.After(time.Millisecond):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-c.closing:
			return ErrClosed
		}
	}
	select {
	case <-dc.Done():
		c.settle(prev)
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.closing:
		return ErrClosed
	}
}

// unreserve gives back the place of p, which was not sent.
func (c *confirmChannel) unreserve(p *pending) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inflight[p.id] == p {
		delete(c.inflight, p.id)
	}
	if p.report {
		if i := slices.Index(c.unowned, p); i >= 0 {
			c.unowned = slices.Delete(c.unowned, i, i+1)
		}
	}
	c.free()
}

// free gives back a place. Call it with c.mu held.
func (c *confirmChannel) free() {
	c.held.Add(-1)
	if c.room != nil {
		close(c.room)
		c.room = nil
	}
}

// write publishes msg. An error that is not ctx's means the message was not
// received whole: it wraps errNotSent, once the channel has closed (the
// connection's reader may learn of a broken connection after the writer).
func (c *confirmChannel) write(ctx context.Context, exchange, key string, msg amqp.Publishing) (*amqp.DeferredConfirmation, error) {
	if c.abort != nil && ctx.Done() != nil { // a ctx that never ends needs no guard
		defer context.AfterFunc(ctx, c.check)()
	}
	c.writers.Add(1)
	dc, err := c.ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, true, false, msg)
	c.writers.Add(-1)
	c.written.Add(1)
	switch {
	case err == nil:
		return dc, nil
	case ctx.Err() != nil:
		return nil, ctx.Err()
	}
	c.awaitClosed(ctx)
	return nil, fmt.Errorf("%w: %w", errNotSent, err)
}

// checkWrites runs when the ctx of a write ends: it aborts the connection
// if a write is running then and none is done within writeGrace (the broker
// stopped reading), since a write cannot be interrupted otherwise.
func (c *confirmChannel) checkWrites() {
	if c.writers.Load() == 0 {
		return
	}
	seen := c.written.Load()
	time.AfterFunc(writeGrace, func() {
		if c.writers.Load() > 0 && c.written.Load() == seen {
			c.abort()
		}
	})
}

// awaitClosed waits a moment for the channel to close, and keeps why.
func (c *confirmChannel) awaitClosed(ctx context.Context) {
	t := time.NewTimer(closeTimeout)
	defer t.Stop()
	select {
	case e, ok := <-c.closes:
		c.mu.Lock()
		if ok && c.closeErr == nil {
			c.closeErr = e
		}
		c.mu.Unlock()
	case <-t.C:
	case <-ctx.Done():
	}
}

// wait returns p's outcome once the broker has settled it, or ctx's error
// (or ErrClosed) first; then p is left to be settled by a later publish.
func (c *confirmChannel) wait(ctx context.Context, p *pending) error {
	select {
	case <-p.dc.Load().Done():
		return c.settle(p)
	case <-ctx.Done():
		c.leave(p)
		return ctx.Err()
	case <-c.closing:
		c.leave(p)
		return ErrClosed
	}
}

// settle takes the outcome of p, which the broker has settled (or whose
// channel has closed), frees its slot, and returns the outcome; it returns
// the same outcome when called again.
func (c *confirmChannel) settle(p *pending) error {
	c.mu.Lock()
	first := c.settleLocked(p)
	c.mu.Unlock()
	if first && p.report && c.settled != nil {
		c.settled(p)
	}
	return p.err
}

// settleLocked is settle with c.mu held; it reports whether it took the
// outcome (rather than finding it taken).
func (c *confirmChannel) settleLocked(p *pending) bool {
	if p.done {
		return false
	}
	c.drainReturns()
	acked := p.dc.Load().Acked()
	switch {
	case !acked && c.ch.IsClosed():
		p.err = c.closedErrorLocked(p.exchange)
	case !acked:
		p.err = ErrNacked
		if c.nacks++; c.nacks >= nackRun {
			c.retired.Store(true)
		}
	case p.returned:
		p.err = fmt.Errorf("%w: %s", ErrUnroutable, p.returnText)
	}
	if acked {
		c.nacks, c.acked = 0, true
	}
	p.done = true
	if c.inflight[p.id] == p {
		delete(c.inflight, p.id)
	}
	c.free()
	return true
}

// sweep settles, in order, the publishes nobody waits for that the broker
// has settled, and returns the Done channel of the first it has not (nil
// when there is none).
func (c *confirmChannel) sweep() <-chan struct{} {
	var buf [16]*pending
	c.mu.Lock()
	report, next := c.sweepLocked(buf[:0])
	c.mu.Unlock()
	c.tell(report)
	return next
}

// sweepLocked is sweep with c.mu held: it appends to report the publishes
// whose outcome it took that are to be reported, for the caller to tell
// once it has released c.mu.
func (c *confirmChannel) sweepLocked(report []*pending) ([]*pending, <-chan struct{}) {
	var next <-chan struct{}
	for len(c.unowned) > 0 {
		p := c.unowned[0]
		if !p.done {
			dc := p.dc.Load()
			if dc == nil {
				break // being written
			}
			select {
			case <-dc.Done():
			default:
				next = dc.Done()
			}
			if next != nil {
				break
			}
			if c.settleLocked(p) && p.report {
				report = append(report, p)
			}
		}
		c.unowned[0] = nil
		c.unowned = c.unowned[1:]
	}
	if len(c.unowned) == 0 {
		c.unowned = nil // let the backing array go
	}
	return report, next
}

// leave adds p to the publishes nobody waits for, settling those before it
// that the broker has settled.
func (c *confirmChannel) leave(p *pending) {
	var buf [16]*pending
	c.mu.Lock()
	report, _ := c.sweepLocked(buf[:0])
	if !p.done {
		c.unowned = append(c.unowned, p)
	}
	c.mu.Unlock()
	c.tell(report)
}

// tell reports outcomes that sweepLocked took.
func (c *confirmChannel) tell(report []*pending) {
	if c.settled == nil {
		return
	}
	for _, p := range report {
		c.settled(p)
	}
}

// drainReturns records buffered returns on the unsettled publishes of their
// message ids. Call it with c.mu held.
func (c *confirmChannel) drainReturns() {
	for {
		select {
		case r, ok := <-c.returns:
			if !ok {
				return
			}
			if p := c.inflight[r.MessageId]; p != nil {
				p.returned, p.returnText = true, r.ReplyText
			}
		default:
			return
		}
	}
}

// load is how many publishes are unsettled.
func (c *confirmChannel) load() int { return int(c.held.Load()) }

// everAcked reports whether the broker has acked a publish on the channel.
func (c *confirmChannel) everAcked() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.acked
}

// closedErrorLocked says why a publish was not confirmed on a channel that
// closed. The broker closes a channel for a publish it refuses (an exchange
// that is not there, a message too large, no permission); that publish gets
// the broker's error, the others [ErrUnconfirmed]. Call it with c.mu held.
func (c *confirmChannel) closedErrorLocked(exchange string) error {
	e := c.closeErrorLocked()
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
	return c.closeErrorLocked()
}

func (c *confirmChannel) closeErrorLocked() *amqp.Error {
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
