package dlxretry

import (
	"context"
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Handler processes one delivery. It returns nil when the message is done
// (the delivery is acked), an error to retry it after the next delay of the
// schedule, or an error wrapped with [Permanent] to park it at once. Once a
// message has failed Topology.MaxAttempts times it is parked whatever the
// error. A panic counts as a failure.
type Handler func(ctx context.Context, d *Delivery) error

// Delivery is a message as a [Handler] and the [Hooks] see it. The library
// settles it from the handler's return value: its Ack, Nack and Reject
// methods do nothing and return [ErrSettledByLibrary].
type Delivery struct {
	amqp.Delivery
	// Attempt is 1 on the first delivery, 2 after one failure, and so on.
	Attempt int
	// Deaths is the parsed x-death header.
	Deaths Deaths
	queue  string
	ack    amqp.Acknowledger // the channel the delivery came from
}

// refuse is the Acknowledger a handler's Delivery carries.
type refuse struct{}

func (refuse) Ack(uint64, bool) error        { return ErrSettledByLibrary }
func (refuse) Nack(uint64, bool, bool) error { return ErrSettledByLibrary }
func (refuse) Reject(uint64, bool) error     { return ErrSettledByLibrary }
func (d *Delivery) settleAck() error         { return d.ack.Ack(d.DeliveryTag, false) }
func (d *Delivery) settleNack(requeue bool) error {
	return d.ack.Nack(d.DeliveryTag, false, requeue)
}

// newDelivery takes msg's Acknowledger for the library and gives the
// Delivery one that refuses.
func newDelivery(msg amqp.Delivery, queue string) *Delivery {
	d := &Delivery{Delivery: msg, queue: queue, ack: msg.Acknowledger}
	if d.ack == nil {
		d.ack = refuse{}
	}
	d.Acknowledger = refuse{}
	return d
}

// OriginalRoutingKey is the routing key the message was published with; on
// a retry, the RoutingKey field holds the tier key instead. A message
// replayed from parking is published to the work queue by name, so its
// RoutingKey, and the key its later deaths record, is the queue's name: for
// it the [HeaderOriginalRoutingKey] header it carries takes precedence.
func (d *Delivery) OriginalRoutingKey() string {
	if k, ok := d.Headers[HeaderOriginalRoutingKey].(string); ok && k != "" {
		return k
	}
	if d.retried() {
		if k, ok := d.Deaths.OriginalRoutingKey(d.queue); ok {
			return k
		}
	}
	return d.RoutingKey
}

// OriginalExchange is the exchange the message was published to; for a
// replayed message, the [HeaderOriginalExchange] header it carries.
func (d *Delivery) OriginalExchange() string {
	if x, ok := d.Headers[HeaderOriginalExchange].(string); ok && x != "" {
		return x
	}
	if death, ok := d.Deaths.Find(d.queue, ReasonRejected); ok && d.retried() {
		return death.Exchange
	}
	return d.Exchange
}

// retried reports a delivery that came back through the retry path; on any
// other the x-death header is its publisher's, not this topology's.
func (d *Delivery) retried() bool { return d.Exchange == d.queue+".requeue" }

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

// PanicError is the failure recorded when a handler panics. The parked copy
// of the message carries the start of Stack in [HeaderStack].
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("dlxretry: handler panicked: %v", e.Value) }

func isPermanent(err error) bool {
	_, ok := asType[*PermanentError](err)
	return ok
}
