package dlxretry

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	amqp "github.com/rabbitmq/amqp091-go"
)

// Consumer consumes a [Topology]'s work queue and runs a [Handler] on each
// delivery, settling it as [Wrap] does. Create it with [NewConsumer] and
// start it with [Consumer.Run]. A Consumer runs once; it holds no
// connection before Run.
type Consumer struct {
	url  string
	topo Topology
	proc *processor
	opts options
}

// NewConsumer checks the topology and options and returns a Consumer that
// will connect to url (an amqp:// or amqps:// URI) when run. It does not
// connect.
func NewConsumer(url string, t Topology, h Handler, opts ...Option) (*Consumer, error) {
	if _, err := amqp.ParseURI(url); err != nil {
		return nil, invalid("url", "%v", err)
	}
	p, err := newProcessor(t, h, opts)
	if err != nil {
		return nil, err
	}
	return &Consumer{url: url, topo: t, proc: p, opts: p.opts}, nil
}

// Run connects, declares the topology, and handles deliveries with the
// configured concurrency until ctx is cancelled. When the connection fails it
// reconnects with capped exponential backoff and declares again. A delivery
// received on a channel that has died is never acked on another one: the
// broker redelivers it.
//
// When ctx is cancelled Run stops consuming, lets the handlers in flight
// finish (their contexts are not cancelled), closes the connection, so that
// prefetched messages not yet started return to the queue, and returns nil.
// It returns an error early only for what reconnecting cannot fix: refused
// credentials or vhost, or a topology that clashes with what the broker has.
func (c *Consumer) Run(ctx context.Context) error {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 100 * time.Millisecond
	b.MaxInterval = 10 * time.Second
	b.MaxElapsedTime = 0
	for {
		err := c.session(ctx, b.Reset)
		if ctx.Err() != nil {
			return nil
		}
		if fatal(err) {
			return err
		}
		wait := b.NextBackOff()
		c.opts.logger.Warn("consumer connection lost; reconnecting", "queue", c.topo.Queue, "error", err, "in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// fatal tells errors that another connection attempt cannot fix.
func fatal(err error) bool {
	var de *DeclareError
	if errors.As(err, &de) && de.Argument != "" {
		return true
	}
	return errors.Is(err, amqp.ErrCredentials) || errors.Is(err, amqp.ErrVhost) || errors.Is(err, amqp.ErrSASL)
}

// session is one connection's life: it returns when the connection or
// channel dies, the broker cancels the consumer, or ctx is cancelled.
func (c *Consumer) session(ctx context.Context, connected func()) error {
	conn, err := dial(c.url, c.opts.connName)
	if err != nil {
		return err
	}
	defer conn.Close()
	c.warnOnBrokerVersion(conn)
	stop := make(chan struct{})
	defer close(stop)
	deliveries, closed, err := c.open(ctx, conn, stop)
	if err != nil {
		return err
	}
	connected()
	var wg sync.WaitGroup
	for range c.opts.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.work(ctx, deliveries)
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil
	}
	select {
	case err := <-closed:
		if err != nil {
			return err
		}
	default:
	}
	return errors.New("dlxretry: delivery stream ended (consumer cancelled by the broker?)")
}

func dial(url, name string) (*amqp.Connection, error) {
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(name)
	return amqp.DialConfig(url, amqp.Config{Properties: props, Heartbeat: 10 * time.Second})
}

// open declares the topology and starts consuming; closed reports the
// consuming channel's death.
func (c *Consumer) open(ctx context.Context, conn *amqp.Connection, stop <-chan struct{}) (<-chan amqp.Delivery, chan *amqp.Error, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, nil, err
	}
	if err := c.topo.Declare(ctx, ch); err != nil {
		return nil, nil, err
	}
	pch, err := conn.Channel()
	if err != nil {
		return nil, nil, err
	}
	if c.proc.park, err = newParker(pch, c.topo, c.opts.errorTextLimit); err != nil {
		return nil, nil, err
	}
	if err := ch.Qos(c.opts.prefetch, 0, false); err != nil {
		return nil, nil, fmt.Errorf("dlxretry: set prefetch: %w", err)
	}
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	const tag = "dlxretry"
	deliveries, err := ch.Consume(c.topo.Queue, tag, false, false, false, false, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("dlxretry: consume %s: %w", c.topo.Queue, err)
	}
	go func() {
		select {
		case <-ctx.Done():
			// Ends the delivery stream; the channel stays open for the acks
			// of handlers in flight.
			_ = ch.Cancel(tag, false)
		case <-stop:
		}
	}()
	return deliveries, closed, nil
}

// work handles deliveries until the stream ends or ctx is cancelled; a
// delivery received after cancellation is left for the broker to requeue.
func (c *Consumer) work(ctx context.Context, deliveries <-chan amqp.Delivery) {
	hctx := context.WithoutCancel(ctx)
	for d := range deliveries {
		if ctx.Err() != nil {
			continue
		}
		c.proc.process(hctx, d)
	}
}

func (c *Consumer) warnOnBrokerVersion(conn *amqp.Connection) {
	v, _ := conn.Properties["version"].(string)
	if strings.HasPrefix(v, "3.13.") {
		c.opts.logger.Warn("RabbitMQ 3.13 may drop dead-lettered messages in retry cycles unless the feature flag message_containers_deaths_v2 is enabled (3.13.3+)", "version", v)
	}
}
