package dlxretry

import (
	"context"
	"fmt"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// consumerTag names the consumer on its channel.
const consumerTag = "dlxretry"

// Consumer consumes a [Topology]'s work queue and runs a [Handler] on each
// delivery, settling it as [Wrap] does. Create it with [NewConsumer] and
// start it with [Consumer.Run]; the zero value is not usable. A Consumer
// holds no connection or channel outside Run; call Run once at a time.
type Consumer struct {
	conn *Conn
	own  bool // conn was made for this Consumer: Run hangs up when it returns
	topo Topology
	proc *processor
	opts options
}

// NewConsumer checks the topology and options and returns a Consumer that
// will consume through broker when run: a URL (amqp:// or amqps://), for a
// connection of its own made with the [ConnOption] values given, or a
// shared *[Conn], whose reconnect delay it then uses too. It does not
// connect.
func NewConsumer[B Broker](broker B, t Topology, h Handler, opts ...Option) (*Consumer, error) {
	p, err := newProcessor(t, h, opts)
	if err != nil {
		return nil, err
	}
	own := p.opts.connOptions
	own.hooks.OnConnect = nil // the Consumer reports its session instead, once the topology is declared
	conn, isOwn, err := connFor(broker, own)
	if err != nil {
		return nil, err
	}
	if isOwn {
		conn.sessions = true // a lost connection is reported as the session's end
	} else {
		p.opts.reconnectMin, p.opts.reconnectMax = conn.opts.reconnectMin, conn.opts.reconnectMax
	}
	return &Consumer{conn: conn, own: isOwn, topo: t, proc: p, opts: p.opts}, nil
}

// Run connects, declares the topology, sets the prefetch and handles
// deliveries with the configured concurrency until ctx is cancelled. When
// the connection or a channel fails, or the broker cancels the consumer (its
// queue was deleted), the session ends; Run waits with capped exponential
// backoff and jitter, connects again if the connection was lost (trying the
// brokers in turn), opens new channels and declares again. The backoff
// starts over only after a session has stayed up for the longest delay of
// [WithReconnectDelay], so a message that breaks every connection does not
// make Run reconnect in a tight loop.
//
// A delivery received on a channel that has died is never settled on
// another one: the broker redelivers it. Handlers still running on a dead
// connection have their contexts cancelled, and the next connection does
// not wait for them.
//
// ctx also bounds connecting, opening channels and declaring. When ctx is
// cancelled Run stops consuming and waits for every handler it started
// (their contexts stay alive) up to the shutdown timeout; prefetched
// messages not yet started return to the queue when it closes its channel.
// It then returns nil once no handler of this Run is running. If some still
// are at the timeout, their contexts are cancelled, the channel is closed
// (their messages return to the queue) and Run returns a *[ShutdownError]
// naming them; what they return later settles nothing, and OnRelease
// reports each of them (see [Hooks]).
//
// Run returns early only for what reconnecting cannot fix: a *[ConnectError]
// (the broker refused the credentials, vhost or permissions, or the first
// connection did not come up within [WithConnectTimeout]), [ErrClosed] for
// a shared [Conn] closed under it, or a topology that clashes with what the
// broker has (a *[DeclareError]).
func (c *Consumer) Run(ctx context.Context) error {
	if c == nil || c.proc == nil {
		return invalid("Consumer", "not created by NewConsumer")
	}
	if c.own {
		defer c.conn.hangUp()
	}
	run := newRunning(ctx, c.opts.shutdownTimeout)
	err := c.loop(ctx, run)
	if derr := run.drain(); derr != nil {
		c.opts.logger.Warn("handlers still running at the shutdown timeout", "queue", c.topo.Queue, "error", derr)
		return derr
	}
	return err
}

// loop connects again and again until ctx ends (nil) or an error is fatal.
func (c *Consumer) loop(ctx context.Context, run *running) error {
	b := newBackoff(c.opts.reconnectMin, c.opts.reconnectMax)
	for {
		url, up, err := c.serve(ctx, run)
		if ctx.Err() != nil {
			return nil
		}
		if fatal(err) {
			return err
		}
		if up >= c.opts.reconnectMax {
			b.Reset()
		}
		wait := b.NextBackOff()
		c.opts.disconnected(url, err, wait)
		if sleep(ctx, wait) != nil {
			return nil
		}
	}
}

// session is one connection's consuming state.
type session struct {
	link       *link
	conn       *amqp.Connection
	ch         *amqp.Channel
	pch        *amqp.Channel // the parking channel
	proc       processor
	deliveries <-chan amqp.Delivery
	chClosed   chan *amqp.Error
	parkClosed chan *amqp.Error
	cancelled  chan string
	stopping   context.Context // done once the session stops taking deliveries
	stop       context.CancelFunc
}

// serve is one session's life: it returns the broker it ran on, how long it
// was up and why it ended. When ctx is cancelled it drains the handlers
// before closing its channels, so that they can still settle.
func (c *Consumer) serve(ctx context.Context, run *running) (string, time.Duration, error) {
	l, err := c.conn.link(ctx)
	if err != nil {
		return "", 0, err
	}
	url := l.url
	c.warnOnBrokerVersion(l.conn)
	done := l.guard(ctx)
	s, err := c.open(ctx, l)
	done()
	if s != nil {
		defer s.close()
	}
	if err != nil {
		return url, 0, l.explain(err)
	}
	defer s.stop()
	start := time.Now()
	c.consuming(url)
	hctx, cancelHandlers := context.WithCancel(run.base)
	defer cancelHandlers() // the channel is gone: their messages come back anyway
	c.startWorkers(hctx, s, run)
	err = c.supervise(ctx, s, run)
	return url, time.Since(start), err
}

// open declares the topology and starts consuming. It returns the session
// even with an error, for its channels to be closed.
func (c *Consumer) open(ctx context.Context, l *link) (*session, error) {
	conn := l.conn
	s := &session{link: l, conn: conn, proc: *c.proc}
	version, _ := conn.Properties["version"].(string)
	s.proc.resetByDeadLettering = resetByDeadLettering(version)
	s.stopping, s.stop = context.WithCancel(context.Background())
	var err error
	if s.ch, err = conn.Channel(); err != nil {
		return s, err
	}
	if err := c.topo.Declare(ctx, s.ch); err != nil {
		return s, err
	}
	if s.pch, err = conn.Channel(); err != nil {
		return s, err
	}
	if s.proc.park, err = newParker(s.pch, c.topo, c.opts.errorTextLimit, conn.Config.FrameSize); err != nil {
		return s, err
	}
	s.parkClosed = s.pch.NotifyClose(make(chan *amqp.Error, 1))
	if err := s.ch.Qos(c.opts.prefetch, 0, false); err != nil {
		return s, fmt.Errorf("dlxretry: set prefetch: %w", err)
	}
	s.chClosed = s.ch.NotifyClose(make(chan *amqp.Error, 1))
	s.cancelled = s.ch.NotifyCancel(make(chan string, 1))
	if s.deliveries, err = s.ch.Consume(c.topo.Queue, consumerTag, false, false, false, false, nil); err != nil {
		return s, fmt.Errorf("dlxretry: consume %s: %w", c.topo.Queue, err)
	}
	return s, nil
}

// close closes the session's channels: the broker requeues what they hold
// unacked. The connection may be shared; it stays.
func (s *session) close() {
	for _, ch := range []*amqp.Channel{s.ch, s.pch} {
		if ch != nil {
			s.link.closeChannel(ch)
		}
	}
}

// startWorkers runs the handlers until the delivery stream ends; run counts
// them, so that they may outlive the session but not Run.
func (c *Consumer) startWorkers(hctx context.Context, s *session, run *running) {
	var acks amqp.Acknowledger // s.ch, whose settlements wait for the socket
	if s.link.writes != nil {
		acks = flushedAcks{ack: s.ch, writes: s.link.writes}
	}
	for range c.opts.concurrency {
		run.wg.Add(1)
		go func() {
			defer run.wg.Done()
			for d := range s.deliveries {
				if s.stopping.Err() != nil {
					continue // left unacked: the broker requeues it when the channel closes
				}
				done := run.started(d)
				if acks != nil {
					d.Acknowledger = acks
				}
				s.proc.process(hctx, d)
				done()
			}
		}()
	}
}

// supervise waits for the session to end and says why.
func (c *Consumer) supervise(ctx context.Context, s *session, run *running) error {
	var err error
	select {
	case e := <-s.chClosed:
		err = fmt.Errorf("dlxretry: channel closed: %w", closeErr(e))
	case e := <-s.parkClosed:
		err = fmt.Errorf("dlxretry: parking channel closed: %w", closeErr(e))
	case <-s.cancelled:
		err = ErrConsumerCancelled
	case <-ctx.Done():
		s.stop()
		s.cancelConsumer() // the channel stays open for the acks of handlers in flight
		return run.drain()
	}
	return s.link.explain(err)
}

// cancelConsumer stops deliveries, within closeTimeout.
func (s *session) cancelConsumer() {
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	defer s.link.guard(ctx)()
	_ = s.ch.Cancel(consumerTag, false)
}

func closeErr(err *amqp.Error) error {
	if err == nil {
		return amqp.ErrClosed
	}
	return err
}

// consuming reports a session that is up: the topology declared, deliveries
// flowing.
func (c *Consumer) consuming(url string) {
	c.opts.logger.Info("consuming", "queue", c.topo.Queue, "broker", redact(url))
	if f := c.opts.hooks.OnConnect; f != nil {
		f(ConnectEvent{Broker: redact(url)})
	}
}

func (c *Consumer) warnOnBrokerVersion(conn *amqp.Connection) {
	v, _ := conn.Properties["version"].(string)
	if strings.HasPrefix(v, "3.13.") {
		c.opts.logger.Warn("RabbitMQ 3.13 may drop dead-lettered messages in retry cycles unless the feature flag message_containers_deaths_v2 is enabled (3.13.3+)", "version", v)
	}
}
