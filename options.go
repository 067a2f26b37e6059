package dlxretry

import (
	"io"
	"log/slog"
	"time"
)

// Option configures a [Consumer] or the handler returned by [Wrap].
type Option func(*options)

type options struct {
	logger          *slog.Logger
	hooks           Hooks
	concurrency     int
	prefetch        int
	redeliveryLimit int
	errorTextLimit  int
	connName        string
	handlerTimeout  time.Duration
	shutdownTimeout time.Duration
	urls            []string
	reconnectMin    time.Duration
	reconnectMax    time.Duration
}

func defaultOptions() options {
	return options{
		logger:          slog.New(slog.NewTextHandler(io.Discard, nil)),
		concurrency:     1,
		redeliveryLimit: 5,
		errorTextLimit:  1024,
		connName:        "dlxretry",
		shutdownTimeout: 30 * time.Second,
		reconnectMin:    100 * time.Millisecond,
		reconnectMax:    10 * time.Second,
	}
}

func newOptions(opts []Option) (options, error) {
	o := defaultOptions()
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	return o, o.validate()
}

func (o *options) validate() error {
	switch {
	case o.logger == nil:
		return invalid("WithLogger", "logger must not be nil")
	case o.concurrency < 1:
		return invalid("WithConcurrency", "must be at least 1, got %d", o.concurrency)
	case o.prefetch < 0:
		return invalid("WithPrefetch", "must not be negative, got %d", o.prefetch)
	case o.prefetch != 0 && o.prefetch < o.concurrency:
		return invalid("WithPrefetch", "%d is below WithConcurrency %d: workers would sit idle", o.prefetch, o.concurrency)
	case o.redeliveryLimit < 1:
		return invalid("WithRedeliveryLimit", "must be at least 1, got %d", o.redeliveryLimit)
	case o.errorTextLimit < 16 || o.errorTextLimit > 64<<10:
		return invalid("WithErrorTextLimit", "must be between 16 and 65536 bytes, got %d", o.errorTextLimit)
	case o.handlerTimeout < 0:
		return invalid("WithHandlerTimeout", "must not be negative, got %v", o.handlerTimeout)
	case o.shutdownTimeout <= 0:
		return invalid("WithShutdownTimeout", "must be positive, got %v", o.shutdownTimeout)
	case o.reconnectMin <= 0 || o.reconnectMax < o.reconnectMin:
		return invalid("WithReconnectDelay", "want 0 < min <= max, got %v and %v", o.reconnectMin, o.reconnectMax)
	}
	if o.prefetch == 0 {
		o.prefetch = 2 * o.concurrency
	}
	return nil
}

// WithLogger sets where the library logs: connection trouble, unreadable
// x-death headers, failed acks. The default discards everything.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithHooks sets the functions called on each outcome, for metrics. The
// default has none. Hooks run on the handler's goroutine and should be quick.
func WithHooks(h Hooks) Option { return func(o *options) { o.hooks = h } }

// WithConcurrency sets how many handlers a [Consumer] runs at once. The
// default is 1.
func WithConcurrency(n int) Option { return func(o *options) { o.concurrency = n } }

// WithPrefetch sets the channel's prefetch count (basic.qos). The default is
// twice the concurrency; it may not be below the concurrency.
func WithPrefetch(n int) Option { return func(o *options) { o.prefetch = n } }

// WithRedeliveryLimit sets how many times a delivery may come back unacked
// (the quorum queue's x-delivery-count: its consumer crashed or lost its
// connection) before it is counted as a failed attempt without running the
// handler again. The default is 5. Classic queues do not count redeliveries.
func WithRedeliveryLimit(n int) Option { return func(o *options) { o.redeliveryLimit = n } }

// WithErrorTextLimit bounds the error text written into a parked message's
// headers, in bytes. The default is 1024.
func WithErrorTextLimit(n int) Option { return func(o *options) { o.errorTextLimit = n } }

// WithConnectionName sets the connection_name client property, shown in the
// management UI and by rabbitmqctl list_connections. The default is "dlxretry".
func WithConnectionName(name string) Option { return func(o *options) { o.connName = name } }

// WithHandlerTimeout sets a deadline on each handler's context; what the
// handler returns still decides the outcome, so a handler should return
// ctx.Err() when it gives up. Keep it below the broker's
// consumer_timeout (30 minutes by default), or the broker closes the channel.
// The default is no timeout.
func WithHandlerTimeout(d time.Duration) Option { return func(o *options) { o.handlerTimeout = d } }

// WithShutdownTimeout bounds how long [Consumer.Run] waits, once its context
// is cancelled, for handlers in flight. When it passes, their contexts are
// cancelled, the connection is closed (their messages return to the queue)
// and Run returns [ErrShutdownTimeout]. The default is 30 seconds.
func WithShutdownTimeout(d time.Duration) Option { return func(o *options) { o.shutdownTimeout = d } }

// WithURLs adds broker URLs (other nodes of a cluster). Connection attempts
// go through the URL given to the constructor and these in turn. The default
// is none.
func WithURLs(urls ...string) Option { return func(o *options) { o.urls = append(o.urls, urls...) } }

// WithReconnectDelay sets the backoff between connection attempts: it starts
// at min, grows exponentially with jitter, and is capped at max. The default
// is 100ms to 10s.
func WithReconnectDelay(min, max time.Duration) Option {
	return func(o *options) { o.reconnectMin, o.reconnectMax = min, max }
}
