package dlxotel

import (
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.41.0"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of the spans this package starts.
const ScopeName = "github.com/dlxretry/dlxretry/otel"

// Option configures [NewPublisher], [Inject] and [Hooks].
type Option func(*config)

type config struct {
	provider   trace.TracerProvider
	propagator propagation.TextMapPropagator
	linkOnly   bool
}

func newConfig(opts []Option) config {
	c := config{provider: otel.GetTracerProvider(), propagator: propagation.TraceContext{}}
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	return c
}

func (c config) tracer() trace.Tracer {
	return c.provider.Tracer(ScopeName, trace.WithSchemaURL(semconv.SchemaURL))
}

// WithTracerProvider sets where spans are started. The default is the
// global provider, otel.GetTracerProvider, read when the option set is
// built. A nil provider keeps the default.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) {
		if tp != nil {
			c.provider = tp
		}
	}
}

// WithPropagator sets how the trace context is written to and read from
// message headers. The default is W3C Trace Context alone
// (propagation.TraceContext: the traceparent and tracestate headers), not
// the global propagator, which does nothing until the application sets it.
// Give otel.GetTextMapPropagator() to use the application's, with baggage
// for example. A nil propagator keeps the default.
func WithPropagator(p propagation.TextMapPropagator) Option {
	return func(c *config) {
		if p != nil {
			c.propagator = p
		}
	}
}

// WithLinkOnly makes each process span the root of a trace of its own,
// linked to the message's creation context, instead of its child. Then a
// message's publish span and each of its attempts appear as separate
// traces, joined by links. The default, without this option, puts them all
// in the publisher's trace. [Hooks] only.
func WithLinkOnly() Option {
	return func(c *config) { c.linkOnly = true }
}
