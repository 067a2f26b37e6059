package dlxretry

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// consumerTag names the consumer on its channel.
const consumerTag = "dlxretry"

// ErrConsumerCancelled is why a session ends when the broker cancels the
// consumer, for example because its queue was deleted; [Consumer.Run]
// reconnects and declares the topology again.
var ErrConsumerCancelled = errors.New("dlxretry: the broker cancelled the consumer")

// Consumer consumes a [Topology]'s work queue and runs a [Handler] on each
// delivery, settling it as [Wrap] does. Create it with [NewConsumer] and
// start it with [Consumer.Run]; the zero value is not usable. A Consumer
// holds no connection outside Run; call Run once at a time.
type Consumer struct {
	urls []string
	topo Topology
	proc *processor
	opts options
}

// NewConsumer checks the topology and options and returns a Consumer that
// will connect to url (an amqp:// or amqps:// URI), or the URLs of
// [WithURLs] in turn, when run. It does not connect.
func NewConsumer(url string, t Topology, h Handler, opts ...Option) (*Consumer, error) {
	p, err := newProcessor(t, h, opts)
	if err != nil {
		return nil, err
	}
	urls, err := brokerURLs(url, p.opts.urls)
	if err != nil {
		return nil, err
	}
	return &Consumer{urls: urls, topo: t, proc: p, opts: p.opts}, nil
}

// Run connects, declares the topology, sets the prefetch and handles
// deliveries with the configured concurrency until ctx is cancelled. When
// the connection or a channel fails, or the broker cancels the consumer (its
// queue was deleted), Run reconnects with capped exponential backoff and
// jitter, trying the brokers in turn, and declares again. The backoff starts
// over only after a connection has stayed up for the longest delay of
// [WithReconnectDelay], so a message that breaks every connection does not
// make Run reconnect in a tight loop.
//
// A delivery received on a channel that has died is never settled on
// another one: the broker redelivers it. Handlers still running on a dead
// connection have their contexts cancelled, and the next connection does
// not wait for them.
//
// ctx also bounds connecting. When ctx is cancelled Run stops consuming and
// waits for every handler it started (their contexts stay alive) up to the
// shutdown timeout; prefetched messages not yet started return to the queue
// when it closes the connection. It then returns nil once no handler of
// this Run is running. If some still are at the timeout, their contexts are
// cancelled, the connection is closed (their messages return to the queue)
// and Run returns a *[ShutdownError] naming them; what they return later is
// discarded: nothing is settled and no hook is called.
//
// Run returns early only for what reconnecting cannot fix: refused
// credentials, a missing vhost or permission, or a topology that clashes
// with what the broker has (a *[DeclareError]).
func (c *Consumer) Run(ctx context.Context) error {
	if c == nil || c.proc == nil {
		return invalid("Consumer", "not created by NewConsumer")
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
	b := newBackoff(&c.opts)
	for attempt := 0; ; attempt++ {
		url := c.urls[attempt%len(c.urls)]
		up, err := c.serve(ctx, url, run)
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
	conn       *amqp.Connection
	ch         *amqp.Channel
	proc       processor
	deliveries <-chan amqp.Delivery
	chClosed   chan *amqp.Error
	parkClosed chan *amqp.Error
	cancelled  chan string
	stopping   context.Context // done once the session stops taking deliveries
	stop       context.CancelFunc
}

// serve is one connection's life: it returns how long the connection was up
// and why it ended. When ctx is cancelled it drains the handlers before
// closing the connection, so that they can still settle.
func (c *Consumer) serve(ctx context.Context, url string, run *running) (time.Duration, error) {
	conn, err := dial(ctx, url, c.opts.connName)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	c.warnOnBrokerVersion(conn)
	s, err := c.open(ctx, conn)
	if err != nil {
		return 0, err
	}
	defer s.stop()
	start := time.Now()
	c.opts.connected(url)
	hctx, cancelHandlers := context.WithCancel(run.base)
	defer cancelHandlers() // the channel is gone: their messages come back anyway
	c.startWorkers(hctx, s, run)
	err = c.supervise(ctx, s, run)
	return time.Since(start), err
}

// open declares the topology and starts consuming.
func (c *Consumer) open(ctx context.Context, conn *amqp.Connection) (*session, error) {
	s := &session{conn: conn, proc: *c.proc}
	version, _ := conn.Properties["version"].(string)
	s.proc.resetByDeadLettering = resetByDeadLettering(version)
	s.stopping, s.stop = context.WithCancel(context.Background())
	var err error
	if s.ch, err = conn.Channel(); err != nil {
		return nil, err
	}
	if err := c.topo.Declare(ctx, s.ch); err != nil {
		return nil, err
	}
	pch, err := conn.Channel()
	if err != nil {
		return nil, err
	}
	if s.proc.park, err = newParker(pch, c.topo, c.opts.errorTextLimit, conn.Config.FrameSize); err != nil {
		return nil, err
	}
	s.parkClosed = pch.NotifyClose(make(chan *amqp.Error, 1))
	if err := s.ch.Qos(c.opts.prefetch, 0, false); err != nil {
		return nil, fmt.Errorf("dlxretry: set prefetch: %w", err)
	}
	s.chClosed = s.ch.NotifyClose(make(chan *amqp.Error, 1))
	s.cancelled = s.ch.NotifyCancel(make(chan string, 1))
	if s.deliveries, err = s.ch.Consume(c.topo.Queue, consumerTag, false, false, false, false, nil); err != nil {
		return nil, fmt.Errorf("dlxretry: consume %s: %w", c.topo.Queue, err)
	}
	return s, nil
}

// startWorkers runs the handlers until the delivery stream ends; run counts
// them, so that they may outlive the session but not Run.
func (c *Consumer) startWorkers(hctx context.Context, s *session, run *running) {
	for range c.opts.concurrency {
		run.wg.Add(1)
		go func() {
			defer run.wg.Done()
			for d := range s.deliveries {
				if s.stopping.Err() != nil {
					continue // left unacked: the broker requeues it when the channel closes
				}
				done := run.started(d)
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
		_ = s.ch.Cancel(consumerTag, false) // the channel stays open for the acks of handlers in flight
		return run.drain()
	}
	if s.conn.IsClosed() {
		err = fmt.Errorf("dlxretry: connection lost: %w", err)
	}
	return err
}

func closeErr(err *amqp.Error) error {
	if err == nil {
		return amqp.ErrClosed
	}
	return err
}

func (c *Consumer) warnOnBrokerVersion(conn *amqp.Connection) {
	v, _ := conn.Properties["version"].(string)
	if strings.HasPrefix(v, "3.13.") {
		c.opts.logger.Warn("RabbitMQ 3.13 may drop dead-lettered messages in retry cycles unless the feature flag message_containers_deaths_v2 is enabled (3.13.3+)", "version", v)
	}
}
