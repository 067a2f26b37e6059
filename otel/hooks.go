package dlxotel

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/dlxretry/dlxretry"
)

// spanKey holds the process span in the handler's context, so that the
// outcome hook ends this package's span even when other hooks (see [Merge])
// put spans of their own in the context after it.
type spanKey struct{}

// Hooks returns [dlxretry.Hooks] that run each delivery in a process span:
// OnDelivery reads the trace context from the message's headers and starts
// the span, the handler gets it in its ctx, and the outcome hook (OnAck,
// OnRetry, OnPark or OnRelease) records the outcome and ends it. Give them
// to [dlxretry.NewConsumer] or [dlxretry.Wrap] with [dlxretry.WithHooks];
// combine them with hooks of your own with [Merge]. They are safe for
// concurrent use and may serve several consumers.
//
// The process span is a child of the message's creation context (the
// publish span of [Publisher], or whatever context the publisher injected)
// and links to it, so that every attempt and the parking of a message
// appear in the publisher's trace; with [WithLinkOnly] it is the root of a
// trace of its own and only links. A message without a trace context starts
// a new trace: the consumer's own context (the ctx given to Run) is not
// taken as the parent.
//
// The span, named "process {exchange}", has kind consumer and the messaging
// conventions' attributes (messaging.system=rabbitmq, operation process,
// destination name = the exchange the message was first published to,
// subscription name = the work queue, routing key = the original key,
// message id, delivery tag, body size) and this package's: [AttemptKey],
// [FromTierKey] and [FromDelayKey] on a retry, [ReplaysKey] after a replay
// from the parking lot. At the end it gets [OutcomeKey]; a retry also
// [RetryTierKey] and [RetryDelayKey], a park [ParkReasonKey]. A failed
// handler's error is recorded with error.type and status Error.
func Hooks(opts ...Option) dlxretry.Hooks {
	c := newConfig(opts)
	t := &tracing{config: c, tracer: c.tracer()}
	return dlxretry.Hooks{
		OnDelivery: t.delivered,
		OnAck:      t.acked,
		OnRetry:    t.retried,
		OnPark:     t.parked,
		OnRelease:  t.released,
	}
}

type tracing struct {
	config
	tracer trace.Tracer
}

func (t *tracing) delivered(ctx context.Context, e dlxretry.DeliveryEvent) context.Context {
	carrier := headerCarrier(e.Delivery.Headers)
	creation := trace.SpanContextFromContext(t.propagator.Extract(context.Background(), carrier))
	opts := []trace.SpanStartOption{
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(processAttributes(e)...),
	}
	if creation.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: creation}))
	}
	if creation.IsValid() && !t.linkOnly {
		ctx = t.propagator.Extract(ctx, carrier)
	} else {
		opts = append(opts, trace.WithNewRoot())
	}
	ctx, span := t.tracer.Start(ctx, spanName("process", e.Delivery.OriginalExchange()), opts...)
	return context.WithValue(ctx, spanKey{}, span)
}

// end sets the outcome's attributes on the delivery's span, records err and
// ends it.
func end(ctx context.Context, outcome string, err error, attrs ...attribute.KeyValue) {
	span, ok := ctx.Value(spanKey{}).(trace.Span)
	if !ok {
		return // OnDelivery was not this package's
	}
	span.SetAttributes(append(attrs, OutcomeKey.String(outcome))...)
	fail(span, err)
	span.End()
}

func (t *tracing) acked(ctx context.Context, _ dlxretry.AckEvent) { end(ctx, OutcomeAck, nil) }

func (t *tracing) retried(ctx context.Context, e dlxretry.RetryEvent) {
	attrs := []attribute.KeyValue{RetryTierKey.Int(e.Tier), RetryDelayKey.String(e.Delay.String())}
	if e.ParkErr != nil {
		attrs = append(attrs, ParkFailedKey.Bool(true))
		if span, ok := ctx.Value(spanKey{}).(trace.Span); ok {
			span.AddEvent("park failed", trace.WithAttributes(attribute.String("exception.message", e.ParkErr.Error())))
		}
	}
	end(ctx, OutcomeRetry, e.Err, attrs...)
}

func (t *tracing) parked(ctx context.Context, e dlxretry.ParkEvent) {
	end(ctx, OutcomePark, e.Err, ParkReasonKey.String(string(e.Reason)))
}

func (t *tracing) released(ctx context.Context, e dlxretry.ReleaseEvent) {
	end(ctx, OutcomeRelease, e.Err)
}
