package dlxotel

import (
	"context"
	"crypto/rand"
	"encoding/hex"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/trace"

	"github.com/dlxretry/dlxretry"
)

// Publisher publishes through a [dlxretry.Publisher] in a publish span and
// writes the trace context into each message's headers, for [Hooks] on the
// consuming side. Create it with [NewPublisher]; the zero value is not
// usable. It is safe for concurrent use, as the Publisher it wraps is.
type Publisher struct {
	pub *dlxretry.Publisher
	config
	tracer trace.Tracer
}

// NewPublisher returns a Publisher that publishes through pub. Closing pub
// is still the caller's job.
func NewPublisher(pub *dlxretry.Publisher, opts ...Option) *Publisher {
	c := newConfig(opts)
	return &Publisher{pub: pub, config: c, tracer: c.tracer()}
}

// Publish is [dlxretry.Publisher.Publish] in a span named "publish
// {exchange}" ("publish" for the default exchange), of kind producer, child
// of the span in ctx, with the messaging conventions' attributes
// (messaging.system=rabbitmq, operation send named publish, destination name
// = exchange, routing key, message id, body size). The span's context goes
// into the message's headers (traceparent and tracestate by default; see
// [WithPropagator]) and is the message's creation context. A message whose
// headers carry a trace context already keeps it, and the span links to it.
// A message without a MessageId gets a random one here, as
// [dlxretry.Publisher] would give it, so that the span can name it.
//
// msg.Headers is copied, never changed. An error is recorded on the span,
// with error.type: unroutable, nacked, unconfirmed, closed, timeout,
// canceled, amqp:<code> for a broker refusal, or _OTHER.
func (p *Publisher) Publish(ctx context.Context, exchange, key string, msg amqp.Publishing) error {
	if msg.MessageId == "" {
		msg.MessageId = newMessageID()
	}
	msg.Headers = cloneHeaders(msg.Headers)
	custom := p.creationContext(msg.Headers)
	opts := []trace.SpanStartOption{
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(publishAttributes(exchange, key, msg)...),
	}
	if custom.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: custom}))
	}
	ctx, span := p.tracer.Start(ctx, spanName("publish", exchange), opts...)
	defer span.End()
	if !custom.IsValid() {
		p.propagator.Inject(ctx, headerCarrier(msg.Headers))
	}
	err := p.pub.Publish(ctx, exchange, key, msg)
	fail(span, err)
	return err
}

// creationContext is the trace context headers already carry, if any.
func (c config) creationContext(headers amqp.Table) trace.SpanContext {
	return trace.SpanContextFromContext(c.propagator.Extract(context.Background(), headerCarrier(headers)))
}

// Inject writes the trace context of ctx into msg's headers (a copy of
// them: the table msg had is not changed), for messages published some
// other way than [Publisher]: [Hooks] then reads it on the consuming side.
// It starts no span. The propagator is W3C Trace Context unless
// [WithPropagator] says otherwise; the other options do not apply.
func Inject(ctx context.Context, msg *amqp.Publishing, opts ...Option) {
	msg.Headers = cloneHeaders(msg.Headers)
	newConfig(opts).propagator.Inject(ctx, headerCarrier(msg.Headers))
}

// newMessageID is a random id, as dlxretry.Publisher makes one.
func newMessageID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
