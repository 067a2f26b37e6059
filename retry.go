package dlxretry

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dlxretry/dlxretry/internal/wire"
)

type action int

const (
	actionAck action = iota
	actionRetry
	actionPark
)

func (a action) String() string {
	return [...]string{"ack", "retry", "park"}[a]
}

// decide is the whole retry policy: what to do with a delivery whose handler
// returned err on the given attempt.
func decide(err error, attempt, maxAttempts int) action {
	switch {
	case err == nil:
		return actionAck
	case isPermanent(err), attempt >= maxAttempts:
		return actionPark
	default:
		return actionRetry
	}
}

// processor runs a handler on deliveries and settles them; Wrap and Consumer share it.
type processor struct {
	topo  Topology
	h     Handler
	park  *parker
	opts  options
	fence *fence // nil when the channel cannot be recovered under us
	// resetByDeadLettering: the broker's x-delivery-count counts one
	// attempt's returns only (see crashLooping).
	resetByDeadLettering bool
}

// Wrap returns a function that runs h on a delivery from your own consume
// loop on t.Queue and settles it: ack on success, nack into the retry tiers
// on failure, publish to the parking queue and ack once parked. Pass the
// channel the deliveries come from as ch; Wrap puts it in confirm mode to
// publish parked messages. The returned function is safe for concurrent use;
// ctx reaches the handler and bounds a parking publish.
//
// Two cases leave a delivery unsettled, for the broker to requeue: ctx was
// cancelled and the handler failed (a shutdown), and ch was recovered by
// amqp091-go's Config.Recovery. A recovered channel numbers its deliveries
// anew, and a delivery buffered before the recovery cannot be told from one
// after it: its delivery tag may name another message. So once Wrap sees ch
// recover (any state change), it settles nothing more on it, logs an error
// and asks amqp091-go to close it. End your consume loop on the channel's
// first state change (Channel.NotifyStateChange), open a new channel and
// call Wrap again: the broker redelivers every message left unsettled.
func Wrap(ch *amqp.Channel, t Topology, h Handler, opts ...Option) (func(context.Context, amqp.Delivery), error) {
	p, err := newProcessor(t, h, opts)
	if err != nil {
		return nil, err
	}
	if p.park, err = newParker(ch, t, p.opts.errorTextLimit, defaultFrameSize); err != nil {
		return nil, err
	}
	p.fence = watchRecoveries(ch, p.opts)
	return p.process, nil
}

// defaultFrameSize is RabbitMQ's default frame_max, which amqp091-go
// negotiates unless told otherwise; Wrap cannot see its connection's.
const defaultFrameSize = 131072

// fence notices when amqp091-go recovers a channel (any state change) and
// from then on refuses every settlement on it.
type fence struct {
	ch      *amqp.Channel
	changes chan *amqp.StateChanged
	log     func(string, ...any)

	mu     sync.Mutex
	broken bool
}

func watchRecoveries(ch *amqp.Channel, o options) *fence {
	f := &fence{ch: ch, changes: make(chan *amqp.StateChanged, 16), log: o.logger.Error}
	ch.NotifyStateChange(f.changes)
	return f
}

// intact reports whether the channel is still the one its deliveries came
// from. The first time it finds otherwise, it closes the channel.
func (f *fence) intact() bool {
	if f == nil {
		return true
	}
	f.mu.Lock()
	first := false
	if !f.broken {
		select {
		case <-f.changes:
			f.broken, first = true, true
		default:
		}
	}
	broken := f.broken
	f.mu.Unlock()
	if first {
		f.log("channel recovered under Wrap: settling nothing more on it and closing it; the broker redelivers its messages")
		// Not on this goroutine: amqp091-go's Close can wait on a
		// recovery, and this one may be the one reading deliveries.
		go func() { _ = f.ch.Close() }()
	}
	return !broken
}

func newProcessor(t Topology, h Handler, opts []Option) (*processor, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	if h == nil {
		return nil, invalid("handler", "must not be nil")
	}
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	return &processor{topo: t, h: h, opts: o}, nil
}

func (p *processor) process(ctx context.Context, msg amqp.Delivery) {
	d := newDelivery(msg, p.topo.Queue)
	unreadable := p.read(d)
	ctx = p.delivered(ctx, d)
	if unreadable != nil {
		p.parkUnreadable(ctx, d, unreadable)
		return
	}
	start := time.Now()
	err := p.run(ctx, d)
	if err != nil && ctx.Err() != nil {
		// Shutting down, or the channel died: a failure now says nothing
		// about the message. Leave it unsettled; the broker requeues it.
		p.release(ctx, d, fmt.Errorf("dlxretry: handler failed after its context ended: %w", err), time.Since(start))
		return
	}
	p.settle(ctx, d, err, time.Since(start))
}

// delivered calls OnDelivery and returns the context the handler runs with.
func (p *processor) delivered(ctx context.Context, d *Delivery) context.Context {
	f := p.opts.hooks.OnDelivery
	if f == nil {
		return ctx
	}
	if hctx := f(ctx, DeliveryEvent{Delivery: d, Queue: p.topo.Queue, Attempt: d.Attempt}); hctx != nil {
		return hctx
	}
	return ctx
}

// read fills in the death history and the attempt, or says why the history
// cannot be trusted.
func (p *processor) read(d *Delivery) error {
	if err := checkDeaths(d.Headers, p.topo.Queue, p.topo.MaxAttempts); err != nil {
		d.Attempt = 1
		return err
	}
	d.Deaths, _ = ParseDeaths(d.Headers) // checked above: every entry reads
	d.Attempt = p.attempt(d)
	return nil
}

// attempt is 1 for a message that has not come back through the retry
// path: whatever x-death it carries was written by its publisher, not by
// this topology. After that it is one more than the broker's count of
// rejections from the work queue, plus a failure the library itself sent
// to tier 1 (see retryByPublish).
func (p *processor) attempt(d *Delivery) int {
	if d.Exchange != p.topo.RequeueExchange() {
		return 1
	}
	n := int(d.Deaths.Rejections(p.topo.Queue)) + 1
	if v, ok := wire.ExactInt(d.Headers[HeaderUncountedFailure]); ok && v == 1 {
		n++
	}
	return n
}

// run calls the handler unless the delivery has crashed its consumer too often.
func (p *processor) run(ctx context.Context, d *Delivery) (err error) {
	if p.crashLooping(d) {
		return ErrRedeliveryLimit
	}
	if p.opts.handlerTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.opts.handlerTimeout)
		defer cancel()
		defer p.warnIfOverran(time.Now())
	}
	defer func() {
		if v := recover(); v != nil {
			pe := &PanicError{Value: v, Stack: debug.Stack()}
			p.opts.logger.Error("handler panicked", "queue", p.topo.Queue, "message_id", d.MessageId,
				"attempt", d.Attempt, "panic", v, "stack", string(pe.Stack))
			err = pe
		}
	}()
	return p.h(ctx, d)
}

// warnIfOverran reports a handler that ran far past its timeout: it ignores
// its context.
func (p *processor) warnIfOverran(start time.Time) {
	if took := time.Since(start); took > 2*p.opts.handlerTimeout+time.Second {
		p.opts.logger.Warn("handler ran far past WithHandlerTimeout; does it ignore its context?",
			"queue", p.topo.Queue, "took", took, "timeout", p.opts.handlerTimeout)
	}
}

// crashLooping reads the quorum queue's x-delivery-count, which counts
// returns without a settle, and tells a message whose handler keeps crashing
// the consumer. Classic queues keep no such count (a header of that name is
// the publisher's), and a delivery not marked redelivered has not come back.
//
// What the header holds differs by version (measured on RabbitMQ 3.10.8,
// 4.0.5 and 4.3.6). On 3.x it counts this attempt's returns: dead-lettering
// drops it. On 4.3 it counts returns over the message's life. On 4.0 it
// counts this attempt's returns, but an attempt's first delivery carries the
// previous attempt's last count plus one (the nack raised it, dead-lettering
// kept it). Where it may be kept, WithRedeliveryLimit+1 deliveries are
// allowed per attempt so far: a crashing message still moves on through the
// schedule, after at most (limit+1) × attempt returns in an attempt.
func (p *processor) crashLooping(d *Delivery) bool {
	if p.topo.Type != Quorum || !d.Redelivered {
		return false
	}
	n, ok := wire.ExactInt(d.Headers["x-delivery-count"])
	if !ok {
		return false
	}
	limit := int64(p.opts.redeliveryLimit)
	if p.resetByDeadLettering {
		return n > limit
	}
	return n > (limit+1)*int64(d.Attempt)-1
}

// resetByDeadLettering tells from the broker's version property whether
// dead-lettering drops x-delivery-count (RabbitMQ 3.x). An unknown version
// (Wrap cannot read it) is taken not to.
func resetByDeadLettering(version string) bool {
	var major int
	_, err := fmt.Sscanf(version, "%d.", &major)
	return err == nil && major <= 3
}

func (p *processor) settle(ctx context.Context, d *Delivery, err error, took time.Duration) {
	switch decide(err, d.Attempt, p.topo.MaxAttempts) {
	case actionAck:
		p.ack(ctx, d, took)
	case actionRetry:
		p.retry(ctx, d, err, took)
	case actionPark:
		p.parkAndAck(ctx, d, err, took)
	}
}

// errStale is why a settlement was skipped on a recovered channel.
var errStale = errors.New("dlxretry: the channel was recovered since the delivery arrived")

func (p *processor) ackOnce(d *Delivery) error {
	if !p.fence.intact() {
		return errStale
	}
	return d.settleAck()
}

func (p *processor) nackOnce(d *Delivery, requeue bool) error {
	if !p.fence.intact() {
		return errStale
	}
	return d.settleNack(requeue)
}

func (p *processor) ack(ctx context.Context, d *Delivery, took time.Duration) {
	if err := p.ackOnce(d); err != nil {
		p.opts.logger.Warn("ack failed; the broker will redeliver", "queue", p.topo.Queue, "error", err)
		p.release(ctx, d, err, took)
		return
	}
	if f := p.opts.hooks.OnAck; f != nil {
		f(ctx, AckEvent{Delivery: d, Queue: p.topo.Queue, Attempt: d.Attempt, Duration: took})
	}
}

func (p *processor) retry(ctx context.Context, d *Delivery, cause error, took time.Duration) {
	if !p.collides(d) || !p.retryByPublish(ctx, d) {
		if !p.nack(ctx, d, took) {
			return
		}
	}
	p.reportRetry(ctx, d, cause, nil, took)
}

// nack dead-letters d into the retry path; on false it was released.
func (p *processor) nack(ctx context.Context, d *Delivery, took time.Duration) bool {
	if err := p.nackOnce(d, false); err != nil {
		p.opts.logger.Warn("nack failed; the broker will redeliver", "queue", p.topo.Queue, "error", err)
		p.release(ctx, d, err, took)
		return false
	}
	return true
}

func (p *processor) reportRetry(ctx context.Context, d *Delivery, cause, perr error, took time.Duration) {
	if f := p.opts.hooks.OnRetry; f != nil {
		tier := p.topo.tierFor(d.Attempt)
		f(ctx, RetryEvent{Delivery: d, Queue: p.topo.Queue, Attempt: d.Attempt, Tier: tier,
			Delay: p.topo.Delays[tier-1], Err: cause, ParkErr: perr, Duration: took})
	}
}

// release reports a delivery left for the broker to deliver again.
func (p *processor) release(ctx context.Context, d *Delivery, why error, took time.Duration) {
	if f := p.opts.hooks.OnRelease; f != nil {
		f(ctx, ReleaseEvent{Delivery: d, Queue: p.topo.Queue, Attempt: d.Attempt, Err: why, Duration: took})
	}
}

// collides reports a first delivery that the broker's dead-lettering would
// not send to tier 1 as a first failure: one published with a routing key in
// the tier keys' namespace (the retry exchange would route it to a later
// tier), or one whose publisher wrote an x-death entry for the work queue
// (RabbitMQ 3.x would go on counting from it).
func (p *processor) collides(d *Delivery) bool {
	if d.Exchange == p.topo.RequeueExchange() {
		return false
	}
	if strings.HasPrefix(d.RoutingKey, p.topo.Queue+".tier.") {
		return true
	}
	_, forged := d.Deaths.Find(p.topo.Queue, ReasonRejected)
	return forged
}

// retryByPublish sends a colliding first failure to tier 1 itself, without
// the x-death its publisher wrote and marked with HeaderUncountedFailure
// since the broker records no rejection for it, and acks it once confirmed.
// On false the caller nacks instead: the message may then skip tiers, but is
// not lost.
func (p *processor) retryByPublish(ctx context.Context, d *Delivery) bool {
	h := wire.Clone(d.Headers, 3)
	delete(h, headerXDeath)
	h[HeaderUncountedFailure] = int64(1)
	h[HeaderOriginalExchange] = d.OriginalExchange()
	h[HeaderOriginalRoutingKey] = d.OriginalRoutingKey()
	if !p.fence.intact() {
		return false
	}
	err := p.park.cc.publish(ctx, p.topo.FirstRetryExchange(), d.RoutingKey, wire.Publishing(d.Delivery, h))
	if err == nil {
		err = p.ackOnce(d)
	}
	if err != nil {
		p.opts.logger.Warn("sending a first failure to tier 1 failed; nacking it instead", "queue", p.topo.Queue, "error", err)
		return false
	}
	return true
}

// parkAndAck acks only after the broker confirmed the parked copy. If parking
// fails the message goes round the retry path once more and parking is tried
// again on its next delivery: a duplicate in parking is possible, a loss is not.
func (p *processor) parkAndAck(ctx context.Context, d *Delivery, cause error, took time.Duration) {
	if perr := p.parkOnce(ctx, d, cause); perr != nil {
		p.opts.logger.Warn("parking failed; retrying instead", "queue", p.topo.Queue, "error", perr)
		if p.nack(ctx, d, took) {
			p.reportRetry(ctx, d, cause, perr, took)
		}
		return
	}
	p.ackParked(ctx, d, parkReason(cause), cause, took)
}

// ackParked acks a delivery whose parked copy the broker confirmed. If the
// ack fails, the broker delivers it again and it is parked twice.
func (p *processor) ackParked(ctx context.Context, d *Delivery, why ParkReason, cause error, took time.Duration) {
	if err := p.ackOnce(d); err != nil {
		p.opts.logger.Warn("ack after parking failed; a duplicate will be parked", "queue", p.topo.Queue, "error", err)
		p.release(ctx, d, err, took)
		return
	}
	if f := p.opts.hooks.OnPark; f != nil {
		f(ctx, ParkEvent{Delivery: d, Queue: p.topo.Queue, Attempt: d.Attempt, Reason: why, Err: cause, Duration: took})
	}
}

func parkReason(cause error) ParkReason {
	if isPermanent(cause) {
		return ParkPermanent
	}
	return ParkExhausted
}

func (p *processor) parkOnce(ctx context.Context, d *Delivery, cause error) error {
	if !p.fence.intact() {
		return errStale
	}
	return p.park.park(ctx, d, cause)
}

// parkUnreadable parks a message whose death history cannot be trusted. It
// never nacks it into the broker's dead-lettering, which such a history can
// crash: if parking fails it requeues the message after a pause.
func (p *processor) parkUnreadable(ctx context.Context, d *Delivery, cause error) {
	p.opts.logger.Warn("parking a message with an unreadable x-death header", "queue", p.topo.Queue,
		"message_id", d.MessageId, "error", cause)
	perr := p.parkOnce(ctx, d, cause)
	if perr == nil {
		p.ackParked(ctx, d, ParkUnreadable, cause, 0)
		return
	}
	p.opts.logger.Warn("parking failed; requeueing after a pause", "queue", p.topo.Queue, "error", perr)
	_ = sleep(ctx, p.opts.reconnectMax)
	if err := p.nackOnce(d, true); err != nil {
		p.opts.logger.Warn("requeue failed; the broker will redeliver", "queue", p.topo.Queue, "error", err)
	}
	p.release(ctx, d, fmt.Errorf("dlxretry: parking a message with an unreadable x-death failed: %w", perr), 0)
}
