package dlxretry

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Handler processes one delivery. It returns nil when the message is done
// (the delivery is acked), an error to retry it after the next delay of the
// schedule, or an error wrapped with [Permanent] to park it at once. Once a
// message has failed Topology.MaxAttempts times it is parked whatever the
// error. A panic counts as a failure.
type Handler func(ctx context.Context, d *Delivery) error

// Delivery is a message as a [Handler] sees it. Do not ack, nack or reject
// it: the library settles it from the handler's return value.
type Delivery struct {
	amqp.Delivery
	// Attempt is 1 on the first delivery, 2 after one failure, and so on.
	Attempt int
	// Deaths is the parsed x-death header.
	Deaths Deaths
	queue  string
}

// OriginalRoutingKey is the routing key the message was published with; on
// a retry, the RoutingKey field holds the tier key instead. A message
// replayed from parking ([ParkingLot.Replay]) is published to the work queue
// by name, so its RoutingKey, and the key its later deaths record, is the
// queue's name: for it the [HeaderOriginalRoutingKey] header it carries, which
// only this library writes, takes precedence.
func (d *Delivery) OriginalRoutingKey() string {
	if k, ok := d.Headers[HeaderOriginalRoutingKey].(string); ok && k != "" {
		return k
	}
	if k, ok := d.Deaths.OriginalRoutingKey(d.queue); ok {
		return k
	}
	return d.RoutingKey
}

// OriginalExchange is the exchange the message was published to; for a
// replayed message, the [HeaderOriginalExchange] header it carries.
func (d *Delivery) OriginalExchange() string {
	if x, ok := d.Headers[HeaderOriginalExchange].(string); ok && x != "" {
		return x
	}
	if death, ok := d.Deaths.Find(d.queue, ReasonRejected); ok {
		return death.Exchange
	}
	return d.Exchange
}

// PermanentError marks an error that retrying will not fix. Create it with [Permanent].
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string {
	if e.Err == nil {
		return "permanent error"
	}
	return e.Err.Error()
}

func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err so that the message is parked at once instead of
// retried. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// PanicError is the failure recorded when a handler panics.
type PanicError struct {
	Value interface{}
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("dlxretry: handler panicked: %v", e.Value) }

// ErrRedeliveryLimit is the failure recorded, without running the handler,
// for a delivery that came back unacked more times than WithRedeliveryLimit
// allows: its handler keeps crashing the consumer.
var ErrRedeliveryLimit = errors.New("dlxretry: delivery came back unacked too often")

// ErrShutdownTimeout is returned by [Consumer.Run] when handlers were still
// running when the shutdown timeout passed.
var ErrShutdownTimeout = errors.New("dlxretry: handlers still running at the shutdown timeout")

type action int

const (
	actionAck action = iota
	actionRetry
	actionPark
)

func (a action) String() string {
	return [...]string{"ack", "retry", "park"}[a]
}

func isPermanent(err error) bool {
	_, ok := errors.AsType[*PermanentError](err)
	return ok
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
	topo       Topology
	h          Handler
	park       *parker
	opts       options
	recoveries *recoveries // nil when the channel cannot be recovered under us
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
// amqp091-go's Config.Recovery while the handler ran. After a recovery the
// broker has already requeued the delivery, and its old delivery tag names
// another message on the new channel: settling it would ack the wrong one.
func Wrap(ch *amqp.Channel, t Topology, h Handler, opts ...Option) (func(context.Context, amqp.Delivery), error) {
	p, err := newProcessor(t, h, opts)
	if err != nil {
		return nil, err
	}
	if p.park, err = newParker(ch, t, p.opts.errorTextLimit); err != nil {
		return nil, err
	}
	p.recoveries = watchRecoveries(ch)
	return p.process, nil
}

// recoveries counts the state changes amqp091-go reports for a channel of a
// connection with Config.Recovery; other channels never report any.
type recoveries struct {
	mu      sync.Mutex
	changes chan *amqp.StateChanged
	n       uint64
}

func watchRecoveries(ch *amqp.Channel) *recoveries {
	r := &recoveries{changes: make(chan *amqp.StateChanged, 16)}
	ch.NotifyStateChange(r.changes)
	return r
}

// generation is the number of state changes so far; it differs before and
// after a handler when the channel was recovered meanwhile.
func (r *recoveries) generation() uint64 {
	if r == nil {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		select {
		case _, ok := <-r.changes:
			if !ok {
				return r.n
			}
			r.n++
		default:
			return r.n
		}
	}
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
	d := &Delivery{Delivery: msg, queue: p.topo.Queue}
	deaths, err := ParseDeaths(msg.Headers)
	if err != nil {
		p.opts.logger.Warn("unreadable x-death header", "queue", p.topo.Queue, "error", err)
	}
	d.Deaths = deaths
	d.Attempt = int(deaths.Rejections(p.topo.Queue)) + 1
	gen := p.recoveries.generation()
	start := time.Now()
	err = p.run(ctx, d)
	switch {
	case err != nil && ctx.Err() != nil:
		// Shutting down: a failure now says nothing about the message. Leave
		// it unsettled; the broker requeues it when the channel closes.
		return
	case p.recoveries.generation() != gen:
		p.opts.logger.Warn("channel recovered while the handler ran; the broker redelivers the message", "queue", p.topo.Queue)
		return
	}
	p.settle(ctx, d, err, time.Since(start))
}

// run calls the handler unless the delivery has crashed its consumer too often.
func (p *processor) run(ctx context.Context, d *Delivery) (err error) {
	if n, ok := asInt64(d.Headers["x-delivery-count"]); ok && n > int64(p.opts.redeliveryLimit) {
		return ErrRedeliveryLimit
	}
	if p.opts.handlerTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.opts.handlerTimeout)
		defer cancel()
	}
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return p.h(ctx, d)
}

func (p *processor) settle(ctx context.Context, d *Delivery, err error, took time.Duration) {
	switch decide(err, d.Attempt, p.topo.MaxAttempts) {
	case actionAck:
		p.ack(d, took)
	case actionRetry:
		p.retry(d, err, took)
	case actionPark:
		p.parkAndAck(ctx, d, err, took)
	}
}

func (p *processor) ack(d *Delivery, took time.Duration) {
	if err := d.Ack(false); err != nil {
		p.opts.logger.Warn("ack failed; the broker will redeliver", "queue", p.topo.Queue, "error", err)
		return
	}
	if f := p.opts.hooks.OnAck; f != nil {
		f(AckEvent{Delivery: d, Queue: p.topo.Queue, Attempt: d.Attempt, Duration: took})
	}
}

func (p *processor) retry(d *Delivery, cause error, took time.Duration) {
	if err := d.Nack(false, false); err != nil {
		p.opts.logger.Warn("nack failed; the broker will redeliver", "queue", p.topo.Queue, "error", err)
		return
	}
	if f := p.opts.hooks.OnRetry; f != nil {
		tier := p.topo.tierFor(d.Attempt)
		f(RetryEvent{Delivery: d, Queue: p.topo.Queue, Attempt: d.Attempt, Tier: tier,
			Delay: p.topo.Delays[tier-1], Err: cause, Duration: took})
	}
}

// parkAndAck acks only after the broker confirmed the parked copy. If parking
// fails the message goes round the retry path once more and parking is tried
// again on its next delivery: a duplicate in parking is possible, a loss is not.
func (p *processor) parkAndAck(ctx context.Context, d *Delivery, cause error, took time.Duration) {
	perr := p.park.park(ctx, d, cause)
	if perr != nil {
		p.opts.logger.Warn("parking failed; retrying instead", "queue", p.topo.Queue, "error", perr)
		if err := d.Nack(false, false); err != nil {
			p.opts.logger.Warn("nack failed; the broker will redeliver", "queue", p.topo.Queue, "error", err)
		}
	} else if err := d.Ack(false); err != nil {
		p.opts.logger.Warn("ack after parking failed; a duplicate will be parked", "queue", p.topo.Queue, "error", err)
	}
	if f := p.opts.hooks.OnPark; f != nil {
		f(ParkEvent{Delivery: d, Queue: p.topo.Queue, Attempt: d.Attempt, Err: cause, ParkErr: perr, Duration: took})
	}
}
