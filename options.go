package dlxretry

import (
	"context"
	"log/slog"
	"net"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Option configures a [Consumer], given to [NewConsumer]. Every [ConnOption]
// is an Option too. [Wrap] takes Options as well; of them, WithLogger,
// WithHooks, WithHandlerTimeout, WithRedeliveryLimit and WithErrorTextLimit
// apply to it.
type Option interface {
	applyConsumer(*options)
}

// PublisherOption configures a [Publisher], given to [NewPublisher]. Every
// [ConnOption] is a PublisherOption too.
type PublisherOption interface {
	applyPublisher(*publisherOptions)
}

// ConnOption configures a connection: given to [NewConn] or [Dial], or to
// [NewConsumer] or [NewPublisher] with a URL, for the
// connection each of them makes for itself. Given with a shared *[Conn]
// instead, the options that configure the connection (all but WithLogger
// and WithHooks) are an error: the Conn has its own.
type ConnOption interface {
	Option
	PublisherOption
	applyConn(*connOptions)
}

// connOptions configure a connection, and say what a Consumer or Publisher
// reports.
type connOptions struct {
	logger         *slog.Logger
	hooks          Hooks
	urls           []string
	connName       string
	reconnectMin   time.Duration
	reconnectMax   time.Duration
	connectTimeout time.Duration
	config         amqp.Config
	dialer         func(ctx context.Context, network, addr string) (net.Conn, error)
	given          []string // the options given that configure the connection itself
}

// options configure a Consumer and the processor Wrap returns.
type options struct {
	connOptions
	concurrency     int
	prefetch        int
	redeliveryLimit int
	errorTextLimit  int
	handlerTimeout  time.Duration
	shutdownTimeout time.Duration
}

type publisherOptions struct {
	connOptions
}

func defaultConnOptions() connOptions {
	return connOptions{
		logger:         slog.New(slog.DiscardHandler),
		connName:       "dlxretry",
		reconnectMin:   100 * time.Millisecond,
		reconnectMax:   10 * time.Second,
		connectTimeout: time.Minute,
	}
}

func defaultOptions() options {
	return options{
		connOptions:     defaultConnOptions(),
		concurrency:     1,
		redeliveryLimit: 5,
		errorTextLimit:  1024,
		shutdownTimeout: 30 * time.Second,
	}
}

func newOptions(opts []Option) (options, error) {
	o := defaultOptions()
	for _, opt := range opts {
		if opt != nil {
			opt.applyConsumer(&o)
		}
	}
	return o, o.validate()
}

func newPublisherOptions(opts []PublisherOption) (publisherOptions, error) {
	o := publisherOptions{connOptions: defaultConnOptions()}
	for _, opt := range opts {
		if opt != nil {
			opt.applyPublisher(&o)
		}
	}
	return o, o.connOptions.validate()
}

func newConnOptions(opts []ConnOption) (connOptions, error) {
	o := defaultConnOptions()
	for _, opt := range opts {
		if opt != nil {
			opt.applyConn(&o)
		}
	}
	return o, o.validate()
}

func (o *connOptions) validate() error {
	switch {
	case o.logger == nil:
		return invalid("WithLogger", "logger must not be nil")
	case o.reconnectMin <= 0 || o.reconnectMax < o.reconnectMin:
		return invalid("WithReconnectDelay", "want 0 < min <= max, got %v and %v", o.reconnectMin, o.reconnectMax)
	case o.connectTimeout < 0:
		return invalid("WithConnectTimeout", "must not be negative, got %v", o.connectTimeout)
	case o.config.Recovery != nil:
		return invalid("WithAMQPConfig", "Config.Recovery must be nil: the library reconnects, declares and consumes again itself")
	case o.config.Dial != nil:
		return invalid("WithAMQPConfig", "Config.Dial cannot be interrupted when a ctx ends: use WithDialer")
	}
	return nil
}

func (o *options) validate() error {
	if err := o.connOptions.validate(); err != nil {
		return err
	}
	switch {
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
	}
	if o.prefetch == 0 {
		o.prefetch = 2 * o.concurrency
	}
	return nil
}

// consumerOption is an [Option] that means something to a Consumer only.
type consumerOption func(*options)

func (f consumerOption) applyConsumer(o *options) { f(o) }

// connOption is a [ConnOption]. name, when set, says it configures the
// connection itself, which a shared Conn does not take.
type connOption struct {
	name string
	set  func(*connOptions)
}

func (c connOption) applyConn(o *connOptions) {
	c.set(o)
	if c.name != "" {
		o.given = append(o.given, c.name)
	}
}

func (c connOption) applyConsumer(o *options)           { c.applyConn(&o.connOptions) }
func (c connOption) applyPublisher(o *publisherOptions) { c.applyConn(&o.connOptions) }

// WithLogger sets where the library logs: connection trouble, unreadable
// x-death headers, failed acks. The default discards everything. Passwords
// never appear in what it logs.
func WithLogger(l *slog.Logger) ConnOption {
	return connOption{set: func(o *connOptions) { o.logger = l }}
}

// WithHooks sets the functions called on each outcome, for metrics. The
// default has none. See [Hooks] for which fire where.
func WithHooks(h Hooks) ConnOption {
	return connOption{set: func(o *connOptions) { o.hooks = h }}
}

// WithURLs adds broker URLs (other nodes of a cluster). Connection attempts
// go through the URL given to the constructor and these in turn. The default
// is none.
func WithURLs(urls ...string) ConnOption {
	return connOption{name: "WithURLs", set: func(o *connOptions) { o.urls = append(o.urls, urls...) }}
}

// WithConnectionName sets the connection_name client property, shown in the
// management UI and by rabbitmqctl list_connections. The default is the
// connection_name of [WithAMQPConfig]'s Properties, or else "dlxretry".
func WithConnectionName(name string) ConnOption {
	return connOption{name: "WithConnectionName", set: func(o *connOptions) { o.connName = name }}
}

// WithReconnectDelay sets the backoff between connection attempts: it starts
// at first, grows exponentially with jitter, and is capped at longest. A
// [Consumer] waits the same way before it consumes again after a session
// ended. The default is 100ms to 10s.
func WithReconnectDelay(first, longest time.Duration) ConnOption {
	return connOption{name: "WithReconnectDelay", set: func(o *connOptions) { o.reconnectMin, o.reconnectMax = first, longest }}
}

// WithConnectTimeout bounds how long the first connection may take to come
// up, retries included: if no broker has answered d after the first attempt
// began, the attempt fails with a *[ConnectError] wrapping
// [ErrConnectTimeout] ([Consumer.Run] returns it; so do [Publisher.Publish]
// and [Dial] when their ctx does not end sooner). Once a connection has
// been up, losing it is retried for as long as the caller's ctx allows. 0
// means no bound. The default is one minute.
func WithConnectTimeout(d time.Duration) ConnOption {
	return connOption{name: "WithConnectTimeout", set: func(o *connOptions) { o.connectTimeout = d }}
}

// WithAMQPConfig sets amqp091-go's connection settings: TLSClientConfig
// (for amqps:// URLs: certificates held in memory, a private CA, a minimum
// version), SASL (for example amqp.ExternalAuth, to log in with the client
// certificate), Heartbeat, FrameSize, ChannelMax, Vhost (it then overrides
// the URLs' vhost), Locale and Properties. They hold for every URL in
// turn; the TLS ServerName, when empty, is each URL's host. Properties'
// connection_name gives way to [WithConnectionName]. Dial and Recovery must
// be nil: dial through [WithDialer], and the library reconnects itself.
// The default is amqp091-go's zero Config with a 10s heartbeat.
func WithAMQPConfig(c amqp.Config) ConnOption {
	return connOption{name: "WithAMQPConfig", set: func(o *connOptions) { o.config = c }}
}

// WithDialer sets how the TCP connection is made, for example through a
// proxy: dial is called with a ctx that ends when the connection attempt
// must stop. TLS and the AMQP handshake run over what it returns. The
// default is a net.Dialer.
func WithDialer(dial func(ctx context.Context, network, addr string) (net.Conn, error)) ConnOption {
	return connOption{name: "WithDialer", set: func(o *connOptions) { o.dialer = dial }}
}

// WithConcurrency sets how many handlers a [Consumer] runs at once. The
// default is 1.
func WithConcurrency(n int) Option { return consumerOption(func(o *options) { o.concurrency = n }) }

// WithPrefetch sets the channel's prefetch count (basic.qos). The default is
// twice the concurrency; it may not be below the concurrency.
func WithPrefetch(n int) Option { return consumerOption(func(o *options) { o.prefetch = n }) }

// WithRedeliveryLimit sets how many times a delivery may come back unacked
// (the quorum queue's x-delivery-count: its consumer crashed or lost its
// connection) before it is counted as a failed attempt without running the
// handler again. The default is 5. Classic queues do not count redeliveries.
func WithRedeliveryLimit(n int) Option {
	return consumerOption(func(o *options) { o.redeliveryLimit = n })
}

// WithErrorTextLimit bounds the error text written into a parked message's
// headers, in bytes. The default is 1024.
func WithErrorTextLimit(n int) Option {
	return consumerOption(func(o *options) { o.errorTextLimit = n })
}

// WithHandlerTimeout sets a deadline on each handler's context; what the
// handler returns still decides the outcome, so a handler should return
// ctx.Err() when it gives up. Keep it below the broker's
// consumer_timeout (30 minutes by default), or the broker closes the channel.
// The default is no timeout.
func WithHandlerTimeout(d time.Duration) Option {
	return consumerOption(func(o *options) { o.handlerTimeout = d })
}

// WithShutdownTimeout bounds how long [Consumer.Run] waits, once its context
// is cancelled, for handlers in flight. When it passes, their contexts are
// cancelled, the channel is closed (their messages return to the queue)
// and Run returns [ErrShutdownTimeout]. The default is 30 seconds.
func WithShutdownTimeout(d time.Duration) Option {
	return consumerOption(func(o *options) { o.shutdownTimeout = d })
}
