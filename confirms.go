package dlxretry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// maxInFlight bounds the unsettled publishes on one channel. It is also the
// size of the returns buffer, so that the connection's reader never blocks
// on a return: a publish keeps its place until its confirm, and with it its
// return, has been taken.
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
// routing, and tells each publish its own outcome. One goroutine per
// channel, its loop, writes the messages in the order they are handed to
// it and takes the broker's confirms, in order, with the returns that come
// before them: callers hand over a message and wait for its outcome, so
// none of them holds a lock across a network write, and many publishes are
// in flight at once. The loop ends when the channel closes.
//
// Returns are matched by message id: a message id has at most one
// unsettled publish on a channel, and a second publish with the same id is
// written once the broker has settled the first (even when the first one's
// caller gave up), so that a return is never taken for another message's.
type confirmChannel struct {
	ch      *amqp.Channel
	reqs    chan *pending // to the loop; room for every place
	returns chan amqp.Return
	closes  chan *amqp.Error
	ended   chan struct{} // closed once the loop has ended
	alone   bool          // the channel carries one publish: whatever closes it is that publish's fault
	abort   func()        // closes the connection under a stuck write; nil: writes are not guarded
	settled func(*pending)

	held    atomic.Int32            // places taken, at most maxInFlight
	writing atomic.Pointer[pending] // the publish being written
	written atomic.Uint64           // publishes written, or that failed to be
	retired atomic.Bool             // nackRun nacks in a row: publish elsewhere
	acked   atomic.Bool             // the broker has acked a publish on this channel

	mu   sync.Mutex
	room chan struct{} // closed once a place frees, for those who wait for one; nil: nobody waits

	closeErr *amqp.Error // why the channel closed, if known; set before ended is closed
}

// The states of a pending publish.
const (
	queued  int32 = iota // handed to the loop, not written yet
	writing              // being written
	sent                 // written: the broker settles it
	dropped              // never to be written: its caller gave up, or the channel closed first
)

// pending is one publish, from the moment it is handed to the loop until
// its outcome is known.
type pending struct {
	exchange, key string
	msg           amqp.Publishing
	start         time.Time
	report        bool          // nobody waits for it: tell confirmChannel.settled its outcome
	state         atomic.Int32  // queued, writing, sent or dropped
	done          chan struct{} // closed once err is set
	err           error         // its outcome

	// the loop's own
	dc         *amqp.DeferredConfirmation
	orphaned   bool // the channel broke while it was unsettled
	returned   bool
	returnText string
}

func newPending(exchange, key string, msg amqp.Publishing) *pending {
	if msg.MessageId == "" {
		msg.MessageId = newMessageID()
	}
	return &pending{exchange: exchange, key: key, msg: msg, done: make(chan struct{})}
}

// newConfirmChannel puts ch in confirm mode and starts its loop, which ends
// when ch closes.
func newConfirmChannel(ch *amqp.Channel) (*confirmChannel, error) {
	if err := ch.Confirm(false); err != nil {
		return nil, fmt.Errorf("dlxretry: confirm mode: %w", err)
	}
	c := &confirmChannel{
		ch:      ch,
		reqs:    make(chan *pending, maxInFlight),
		returns: ch.NotifyReturn(make(chan amqp.Return, maxInFlight)),
		closes:  ch.NotifyClose(make(chan *amqp.Error, 1)),
		ended:   make(chan struct{}),
	}
	go c.loop()
	return c, nil
}

// publish returns nil once the broker has confirmed msg and not returned it.
// A message without a MessageId gets a random one.
func (c *confirmChannel) publish(ctx context.Context, exchange, key string, msg amqp.Publishing) error {
	p := newPending(exchange, key, msg)
	if err := c.send(ctx, p); err != nil {
		return err
	}
	return c.wait(ctx, p)
}

// send hands p to the loop, once a place is free. If the loop has ended
// (the channel closed), p's outcome is that it was not sent.
func (c *confirmChannel) send(ctx context.Context, p *pending) error {
	if err := c.take(ctx); err != nil {
		return err
	}
	select {
	case c.reqs <- p:
	case <-c.ended:
	case <-ctx.Done():
		c.give()
		return ctx.Err()
	}
	select {
	case <-c.ended: // perhaps before the loop took p
		if p.state.CompareAndSwap(queued, dropped) {
			c.finish(p, errChannelClosed)
		}
	default:
	}
	return nil
}

// errChannelClosed is the outcome of a publish handed to a channel that
// closed before writing it.
var errChannelClosed = fmt.Errorf("%w: the channel closed", errNotSent)

// take takes a place, waiting while all are taken.
func (c *confirmChannel) take(ctx context.Context) error {
	for {
		n := c.held.Load()
		if n < maxInFlight {
			if c.held.CompareAndSwap(n, n+1) {
				return nil
			}
			continue
		}
		c.mu.Lock()
		if c.held.Load() < maxInFlight {
			c.mu.Unlock()
			continue
		}
		if c.room == nil {
			c.room = make(chan struct{})
		}
		room := c.room
		c.mu.Unlock()
		select {
		case <-room:
		case <-ctx.Done():
			return ctx.Err()
		case <-c.ended:
			return errChannelClosed
		}
	}
}

// give gives back a place.
func (c *confirmChannel) give() {
	if c.held.Add(-1) != maxInFlight-1 {
		return // nobody can be waiting: all were not taken
	}
	c.mu.Lock()
	if c.room != nil {
		close(c.room)
		c.room = nil
	}
	c.mu.Unlock()
}

// wait returns p's outcome, or ctx's error if ctx ends first: then p is
// not written if it was not yet, and its outcome is dropped if it was.
func (c *confirmChannel) wait(ctx context.Context, p *pending) error {
	if ctx.Done() == nil {
		<-p.done
		return p.err
	}
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		if p.state.CompareAndSwap(queued, dropped) {
			c.give()
		}
		c.watchWrites()
		return ctx.Err()
	}
}

// watchWrites is called when a caller's ctx ended while it waited: a write
// that is running and still running writeGrace later, with none done
// meanwhile (the broker stopped reading), cannot be interrupted but by
// closing the connection under it, which c.abort does.
func (c *confirmChannel) watchWrites() {
	if c.abort == nil || c.writing.Load() == nil {
		return
	}
	seen := c.written.Load()
	time.AfterFunc(writeGrace, func() {
		if c.writing.Load() != nil && c.written.Load() == seen {
			c.abort()
		}
	})
}

// loop writes what it is handed and settles what the broker has, in
// order, until the channel closes.
func (c *confirmChannel) loop() {
	l := &loopState{byID: make(map[string]*pending)}
	defer c.end(l)
	for !l.over {
		var head <-chan struct{} // nil, which never fires, when nothing is in flight
		if len(l.fifo) > 0 {
			head = l.fifo[0].dc.Done()
		}
		select {
		case p := <-c.reqs:
			c.start(l, p)
		case <-head:
			c.settleDone(l)
		case e, ok := <-c.closes:
			l.closed(e, ok)
		}
	}
}

// closed notes a notification of the channel's close: why it closed, and
// that what was in flight is lost with it (when amqp091-go recovers a
// channel, it goes on under the same notifications); once the
// notifications end, the loop does.
func (l *loopState) closed(e *amqp.Error, ok bool) {
	if !ok {
		l.over = true
		return
	}
	l.closeErr = e
	for _, p := range l.fifo {
		p.orphaned = true
	}
}

// loopState is what the loop keeps.
type loopState struct {
	fifo     []*pending            // written, unsettled, in the order written
	byID     map[string]*pending   // the unsettled publish of each message id
	later    map[string][]*pending // publishes that wait for an unsettled one with their id
	nacks    int                   // nacks in a row
	closeErr *amqp.Error           // why the channel broke, if it did
	over     bool                  // the channel's notifications have ended
}

// start writes p, unless its caller gave up on it, or holds it back while
// a publish with its message id is unsettled.
func (c *confirmChannel) start(l *loopState, p *pending) {
	if prev := l.byID[p.msg.MessageId]; prev != nil {
		if l.later == nil {
			l.later = make(map[string][]*pending)
		}
		l.later[p.msg.MessageId] = append(l.later[p.msg.MessageId], p)
		return
	}
	if !p.state.CompareAndSwap(queued, writing) {
		return // dropped by its caller, who gave back its place
	}
	c.writing.Store(p)
	dc, err := c.ch.PublishWithDeferredConfirm(p.exchange, p.key, true, false, p.msg)
	c.writing.Store(nil)
	c.written.Add(1)
	if err != nil {
		// Closed before or while it was written: the broker drops a
		// message it did not receive whole.
		p.state.Store(dropped)
		c.finish(p, fmt.Errorf("%w: %w", errNotSent, err))
		return
	}
	p.dc = dc
	p.state.Store(sent)
	l.fifo = append(l.fifo, p)
	l.byID[p.msg.MessageId] = p
}

// settleDone settles, in order, the publishes the broker has settled.
func (c *confirmChannel) settleDone(l *loopState) {
	for len(l.fifo) > 0 {
		p := l.fifo[0]
		select {
		case <-p.dc.Done():
		default:
			return
		}
		// Its return, if any, came before its confirm: it is buffered now.
		c.drainReturns(l)
		l.fifo[0] = nil
		l.fifo = l.fifo[1:]
		c.settle(l, p, c.outcome(l, p))
	}
	l.fifo = nil // let the backing array go
}

// outcome is the outcome of p, which the broker has settled or whose
// channel has closed.
func (c *confirmChannel) outcome(l *loopState, p *pending) error {
	acked := p.dc.Acked()
	if !acked && l.closeErr == nil && c.ch.IsClosed() {
		// amqp091-go sends why before it closes the confirmations.
		select {
		case e, ok := <-c.closes:
			l.closed(e, ok)
		default:
		}
	}
	switch {
	case !acked && (p.orphaned || c.ch.IsClosed()):
		return c.closedError(l.closeErr, p.exchange)
	case !acked:
		if l.nacks++; l.nacks >= nackRun {
			c.retired.Store(true)
		}
		return ErrNacked
	}
	l.nacks = 0
	c.acked.Store(true)
	if p.returned {
		return fmt.Errorf("%w: %s", ErrUnroutable, p.returnText)
	}
	return nil
}

// settle ends p with err, and writes the next publish with its message id.
func (c *confirmChannel) settle(l *loopState, p *pending, err error) {
	id := p.msg.MessageId
	if l.byID[id] == p {
		delete(l.byID, id)
	}
	c.finish(p, err)
	if next := l.later[id]; len(next) > 0 {
		if len(next) == 1 {
			delete(l.later, id)
		} else {
			l.later[id] = next[1:]
		}
		c.start(l, next[0])
	}
}

// finish sets p's outcome and gives back its place.
func (c *confirmChannel) finish(p *pending, err error) {
	p.err = err
	close(p.done)
	c.give()
	if p.report && c.settled != nil {
		c.settled(p)
	}
}

// drainReturns records the buffered returns on the unsettled publishes of
// their message ids.
func (c *confirmChannel) drainReturns(l *loopState) {
	for {
		select {
		case r, ok := <-c.returns:
			if !ok {
				return
			}
			if p := l.byID[r.MessageId]; p != nil {
				p.returned, p.returnText = true, r.ReplyText
			}
		default:
			return
		}
	}
}

// end settles what is left once the channel has closed: what was written
// is unconfirmed (its confirmation closes with the channel), what was not
// is not sent.
func (c *confirmChannel) end(l *loopState) {
	for _, p := range l.fifo {
		<-p.dc.Done() // amqp091-go closes them right after the channel's notifications
		c.drainReturns(l)
		p.orphaned = true
		c.finish(p, c.outcome(l, p))
	}
	l.fifo = nil
	drop := func(p *pending) {
		if p.state.CompareAndSwap(queued, dropped) {
			c.finish(p, errChannelClosed)
		}
	}
	for _, ps := range l.later {
		for _, p := range ps {
			drop(p)
		}
	}
	c.closeErr = l.closeErr
	close(c.ended) // from now on, what is handed over is dropped by its caller
	for {
		select {
		case p := <-c.reqs:
			drop(p)
		default:
			return
		}
	}
}

// closedError says why a publish was not confirmed on a channel that
// closed (with e, if known). The broker closes a channel for a publish it
// refuses (an exchange that is not there, a message too large, no
// permission); that publish gets the broker's error, the others
// [ErrUnconfirmed].
func (c *confirmChannel) closedError(e *amqp.Error, exchange string) error {
	switch {
	case e == nil:
		return ErrUnconfirmed
	case c.alone || blames(e, exchange):
		return fmt.Errorf("dlxretry: the broker refused the message: %w", e)
	}
	return fmt.Errorf("%w (the channel closed: %v)", ErrUnconfirmed, e)
}

// load is how many publishes hold a place.
func (c *confirmChannel) load() int { return int(c.held.Load()) }

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
