package dlxretry

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// consumerTag names the consumer on its channel.
const consumerTag = "dlxretry"

// Consumer consumes a [Topology]'s work queue and runs a [Handler] on each
// delivery, settling it as [Wrap] does. Create it with [NewConsumer] and
// start it with [Consumer.Run]. A Consumer holds no connection outside Run;
// call Run once at a time.
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
// jitter, trying the brokers in turn, and declares again. A delivery received
// on a channel that has died is never acked on another one: the broker
// redelivers it.
//
// When ctx is cancelled Run stops consuming and waits for the handlers in
// flight (their contexts stay alive) up to the shutdown timeout; prefetched
// messages not yet started return to the queue when it closes the
// connection. It then returns nil, or [ErrShutdownTimeout]. It returns early
// only for what reconnecting cannot fix: refused credentials or vhost, or a
// topology that clashes with what the broker has (a *[DeclareError]).
func (c *Consumer) Run(ctx context.Context) error {
	b := newBackoff(&c.opts)
	for attempt := 0; ; attempt++ {
		url := c.urls[attempt%len(c.urls)]
		err := c.serve(ctx, url, b.Reset)
		if ctx.Err() != nil {
			if errors.Is(err, ErrShutdownTimeout) {
				return err
			}
			return nil
		}
		if fatal(err) {
			return err
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
	ch          *amqp.Channel
	proc        processor
	deliveries  <-chan amqp.Delivery
	chClosed    chan *amqp.Error
	parkClosed  chan *amqp.Error
	stopHandles context.CancelFunc // ends handling of further deliveries
}

// serve is one connection's life. It returns when the connection or a
// channel dies, the broker cancels the consumer, or ctx is cancelled (then
// with nil or ErrShutdownTimeout).
func (c *Consumer) serve(ctx context.Context, url string, connected func()) error {
	conn, err := dial(url, c.opts.connName)
	if err != nil {
		return err
	}
	defer conn.Close()
	c.warnOnBrokerVersion(conn)
	s, err := c.open(ctx, conn)
	if err != nil {
		return err
	}
	connected()
	c.opts.connected(url)
	handleCtx, stopHandling := context.WithCancel(ctx)
	s.stopHandles = stopHandling
	defer stopHandling()
	hctx, cancelHandlers := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHandlers()
	done := c.startWorkers(handleCtx, hctx, s)
	return c.supervise(ctx, s, done, cancelHandlers)
}

// open declares the topology and starts consuming.
func (c *Consumer) open(ctx context.Context, conn *amqp.Connection) (*session, error) {
	s := &session{proc: *c.proc}
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
	if s.proc.park, err = newParker(pch, c.topo, c.opts.errorTextLimit); err != nil {
		return nil, err
	}
	s.parkClosed = pch.NotifyClose(make(chan *amqp.Error, 1))
	if err := s.ch.Qos(c.opts.prefetch, 0, false); err != nil {
		return nil, fmt.Errorf("dlxretry: set prefetch: %w", err)
	}
	s.chClosed = s.ch.NotifyClose(make(chan *amqp.Error, 1))
	if s.deliveries, err = s.ch.Consume(c.topo.Queue, consumerTag, false, false, false, false, nil); err != nil {
		return nil, fmt.Errorf("dlxretry: consume %s: %w", c.topo.Queue, err)
	}
	return s, nil
}

// startWorkers runs the handlers; done is closed when the delivery stream
// has ended and every handler has returned.
func (c *Consumer) startWorkers(handleCtx, hctx context.Context, s *session) <-chan struct{} {
	var wg sync.WaitGroup
	for range c.opts.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range s.deliveries {
				if handleCtx.Err() != nil {
					continue // left unacked: the broker requeues it when the channel closes
				}
				s.proc.process(hctx, d)
			}
		}()
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	return done
}

// supervise waits for the session to end and says why.
func (c *Consumer) supervise(ctx context.Context, s *session, done <-chan struct{}, cancelHandlers context.CancelFunc) error {
	select {
	case <-done:
		return streamEnded(s)
	case err := <-s.parkClosed:
		s.stop()
		<-done
		return fmt.Errorf("dlxretry: parking channel closed: %w", closeErr(err))
	case <-ctx.Done():
		s.stop()
		return c.drain(done, cancelHandlers)
	}
}

// stop ends the delivery stream; the channel stays open for the acks of
// handlers in flight.
func (s *session) stop() {
	s.stopHandles()
	_ = s.ch.Cancel(consumerTag, false)
}

func (c *Consumer) drain(done <-chan struct{}, cancelHandlers context.CancelFunc) error {
	t := time.NewTimer(c.opts.shutdownTimeout)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-t.C:
		cancelHandlers()
		c.opts.logger.Warn("handlers still running at the shutdown timeout", "queue", c.topo.Queue)
		return ErrShutdownTimeout
	}
}

// streamEnded tells a closed channel from a consumer the broker cancelled;
// the close notice can trail the end of the stream by a moment.
func streamEnded(s *session) error {
	select {
	case err := <-s.chClosed:
		return fmt.Errorf("dlxretry: channel closed: %w", closeErr(err))
	case <-time.After(100 * time.Millisecond):
		return errors.New("dlxretry: the broker cancelled the consumer (was the queue deleted?)")
	}
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
