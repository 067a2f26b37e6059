package dlxotel_test

import (
	"context"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/dlxretry/dlxretry"
	dlxotel "github.com/dlxretry/dlxretry/otel"
)

const (
	traceID     = "4bf92f3577b34da6a3ce929d0e0e4736"
	parentSpan  = "00f067aa0ba902b7"
	traceparent = "00-" + traceID + "-" + parentSpan + "-01"
)

func newProvider(t *testing.T) (*sdktrace.TracerProvider, *tracetest.InMemoryExporter) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp, exp
}

// handle runs the hooks as the library does for one delivery with headers,
// acked, and returns its span.
func handle(t *testing.T, ctx context.Context, h dlxretry.Hooks, exp *tracetest.InMemoryExporter, headers amqp.Table) tracetest.SpanStub {
	t.Helper()
	exp.Reset()
	d := &dlxretry.Delivery{Delivery: amqp.Delivery{Headers: headers, MessageId: "m1"}, Attempt: 1}
	hctx := h.OnDelivery(ctx, dlxretry.DeliveryEvent{Delivery: d, Queue: "orders", Attempt: 1})
	if !trace.SpanContextFromContext(hctx).IsValid() {
		t.Fatal("the handler's context has no span")
	}
	h.OnAck(hctx, dlxretry.AckEvent{Delivery: d, Queue: "orders", Attempt: 1})
	spans := exp.GetSpans()
	if len(spans) != 1 {
		t.Fatalf("%d spans ended, want 1", len(spans))
	}
	return spans[0]
}

// TestHooksParent checks which context a process span descends from: the
// publisher's, read from well-formed headers only, never the consumer's own.
func TestHooksParent(t *testing.T) {
	tp, exp := newProvider(t)
	h := dlxotel.Hooks(dlxotel.WithTracerProvider(tp))
	ambient, span := tp.Tracer("test").Start(context.Background(), "consumer start-up")
	span.End()

	s := handle(t, ambient, h, exp, amqp.Table{"traceparent": traceparent})
	if s.Parent.TraceID().String() != traceID || s.Parent.SpanID().String() != parentSpan || !s.Parent.IsRemote() {
		t.Errorf("parent %v, want the remote %s", s.Parent, traceparent)
	}
	if len(s.Links) != 1 || s.Links[0].SpanContext.SpanID().String() != parentSpan {
		t.Errorf("links %v, want one to %s", s.Links, parentSpan)
	}

	for name, headers := range map[string]amqp.Table{
		"no headers":            nil,
		"traceparent not text":  {"traceparent": []byte(traceparent)},
		"traceparent malformed": {"traceparent": "00-" + traceID + "-zz-01"},
		"traceparent too long":  {"traceparent": traceparent + "-" + string(make([]byte, 1<<16))},
	} {
		s := handle(t, ambient, h, exp, headers)
		if s.Parent.IsValid() || len(s.Links) != 0 {
			t.Errorf("%s: parent %v, links %v; want a new root", name, s.Parent, s.Links)
		}
	}
}

func TestHooksLinkOnly(t *testing.T) {
	tp, exp := newProvider(t)
	h := dlxotel.Hooks(dlxotel.WithTracerProvider(tp), dlxotel.WithLinkOnly())
	s := handle(t, context.Background(), h, exp, amqp.Table{"traceparent": traceparent})
	if s.Parent.IsValid() || s.SpanContext.TraceID().String() == traceID {
		t.Errorf("parent %v in trace %s, want a new trace", s.Parent, s.SpanContext.TraceID())
	}
	if len(s.Links) != 1 || s.Links[0].SpanContext.SpanID().String() != parentSpan {
		t.Errorf("links %v, want one to %s", s.Links, parentSpan)
	}
}

// TestHooksOutcomeWithoutDelivery: an outcome hook whose OnDelivery was not
// this package's ends nothing and does not panic.
func TestHooksOutcomeWithoutDelivery(t *testing.T) {
	tp, exp := newProvider(t)
	h := dlxotel.Hooks(dlxotel.WithTracerProvider(tp))
	h.OnRelease(context.Background(), dlxretry.ReleaseEvent{Delivery: &dlxretry.Delivery{}})
	if n := len(exp.GetSpans()); n != 0 {
		t.Errorf("%d spans ended, want 0", n)
	}
}

func TestMerge(t *testing.T) {
	type key struct{}
	var calls []string
	first := dlxretry.Hooks{
		OnDelivery: func(ctx context.Context, _ dlxretry.DeliveryEvent) context.Context {
			calls = append(calls, "first delivery")
			return context.WithValue(ctx, key{}, "first")
		},
		OnAck: func(ctx context.Context, _ dlxretry.AckEvent) {
			calls = append(calls, "first ack "+ctx.Value(key{}).(string))
		},
	}
	second := dlxretry.Hooks{
		OnDelivery: func(ctx context.Context, _ dlxretry.DeliveryEvent) context.Context {
			calls = append(calls, "second delivery sees "+ctx.Value(key{}).(string))
			return nil // keeps the context it got
		},
		OnAck: func(ctx context.Context, _ dlxretry.AckEvent) {
			calls = append(calls, "second ack "+ctx.Value(key{}).(string))
		},
		OnConnect: func(dlxretry.ConnectEvent) { calls = append(calls, "second connect") },
	}
	m := dlxotel.Merge(first, dlxretry.Hooks{}, second)
	ctx := m.OnDelivery(context.Background(), dlxretry.DeliveryEvent{})
	m.OnAck(ctx, dlxretry.AckEvent{})
	m.OnConnect(dlxretry.ConnectEvent{})
	want := []string{"first delivery", "second delivery sees first", "first ack first", "second ack first", "second connect"}
	if len(calls) != len(want) {
		t.Fatalf("calls %q, want %q", calls, want)
	}
	for i := range want {
		if calls[i] != want[i] {
			t.Fatalf("calls %q, want %q", calls, want)
		}
	}
	if m.OnRetry != nil || m.OnPark != nil || m.OnRelease != nil || m.OnPublish != nil || m.OnDisconnect != nil {
		t.Error("a hook none of the merged set is not nil")
	}
}

func TestInject(t *testing.T) {
	tp, _ := newProvider(t)
	ctx, span := tp.Tracer("test").Start(context.Background(), "request")
	defer span.End()
	mine := amqp.Table{"tenant": "a"}
	msg := amqp.Publishing{Headers: mine}
	dlxotel.Inject(ctx, &msg)
	if len(mine) != 1 {
		t.Errorf("the caller's table changed: %v", mine)
	}
	got := propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{"traceparent": msg.Headers["traceparent"].(string)})
	if sc := trace.SpanContextFromContext(got); sc.SpanID() != span.SpanContext().SpanID() || msg.Headers["tenant"] != "a" {
		t.Errorf("headers %v do not carry span %s", msg.Headers, span.SpanContext().SpanID())
	}
}
