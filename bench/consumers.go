package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmamqp "github.com/ThreeDotsLabs/watermill-amqp/v3/pkg/amqp"
	"github.com/ThreeDotsLabs/watermill/message"
	amqp "github.com/rabbitmq/amqp091-go"
	rabbitmq "github.com/wagslane/go-rabbitmq"

	"github.com/dlxretry/dlxretry"
)

// This file starts a consumer of each kind with the same prefetch and
// concurrency; the scenarios give them their handlers.

// consumer is a running consumer: stop stops it and waits for it; failed
// delivers why it stopped on its own.
type consumer struct {
	stop   func() error
	failed chan error
}

// waitFor waits until the meter is done, the consumer fails, ctx ends or
// the timeout passes.
func waitFor(ctx context.Context, m *meter, c *consumer, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-m.done:
		return nil
	case err := <-c.failed:
		if err == nil {
			err = errors.New("stopped on its own")
		}
		return fmt.Errorf("consumer: %w", err)
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return fmt.Errorf("%d of %d messages done after %s", m.count.Load(), m.target, timeout)
	}
}

// rawConsume is the hand-written amqp091-go loop: one channel with the
// prefetch, concurrency goroutines ranging over its deliveries. makeHandler
// gets the connection (to open a publishing channel, say) and returns the
// function that handles and settles each delivery.
func rawConsume(e *env, queue string, makeHandler func(*amqp.Connection) (func(amqp.Delivery), error)) (*consumer, error) {
	conn, err := amqp.Dial(e.cfg.url)
	if err != nil {
		return nil, err
	}
	handle, err := makeHandler(conn)
	if err != nil {
		conn.Close()
		return nil, err
	}
	ds, err := rawSubscribe(conn, queue, e.cfg.prefetch)
	if err != nil {
		conn.Close()
		return nil, err
	}
	var wg sync.WaitGroup
	for range e.cfg.concurrency {
		wg.Go(func() {
			for d := range ds {
				handle(d)
			}
		})
	}
	stop := func() error {
		err := conn.Close()
		wg.Wait()
		return err
	}
	return &consumer{stop: stop, failed: make(chan error)}, nil
}

func rawSubscribe(conn *amqp.Connection, queue string, prefetch int) (<-chan amqp.Delivery, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, err
	}
	if err := ch.Qos(prefetch, 0, false); err != nil {
		return nil, err
	}
	return ch.Consume(queue, "", false, false, false, false, nil)
}

// ackAll is a makeHandler for handlers that only need the delivery.
func ackAll(handle func(amqp.Delivery)) func(*amqp.Connection) (func(amqp.Delivery), error) {
	return func(*amqp.Connection) (func(amqp.Delivery), error) { return handle, nil }
}

// dlxConsume runs a dlxretry Consumer on topo.
func dlxConsume(e *env, topo dlxretry.Topology, h dlxretry.Handler, hooks dlxretry.Hooks) (*consumer, error) {
	c, err := dlxretry.NewConsumer(e.cfg.url, topo, h,
		dlxretry.WithConcurrency(e.cfg.concurrency),
		dlxretry.WithPrefetch(e.cfg.prefetch),
		dlxretry.WithHooks(hooks),
		dlxretry.WithConnectionName("dlxretry-bench"))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	failed := make(chan error, 1)
	go func() {
		err := c.Run(ctx)
		done <- err
		failed <- err
	}()
	stop := func() error {
		cancel()
		return <-done
	}
	return &consumer{stop: stop, failed: failed}, nil
}

// quiet is a go-rabbitmq logger that discards everything (its default
// logs to stderr).
type quiet struct{}

func (quiet) Fatalf(string, ...interface{}) {}
func (quiet) Errorf(string, ...interface{}) {}
func (quiet) Warnf(string, ...interface{})  {}
func (quiet) Infof(string, ...interface{})  {}
func (quiet) Debugf(string, ...interface{}) {}

// wagConsume runs a wagslane/go-rabbitmq Consumer on an existing queue.
func wagConsume(e *env, queue string, h rabbitmq.Handler) (*consumer, error) {
	conn, err := rabbitmq.NewConn(e.cfg.url, rabbitmq.WithConnectionOptionsLogger(quiet{}))
	if err != nil {
		return nil, err
	}
	c, err := rabbitmq.NewConsumer(conn, queue,
		rabbitmq.WithConsumerOptionsQueueNoDeclare,
		rabbitmq.WithConsumerOptionsConcurrency(e.cfg.concurrency),
		rabbitmq.WithConsumerOptionsQOSPrefetch(e.cfg.prefetch),
		rabbitmq.WithConsumerOptionsLogger(quiet{}))
	if err != nil {
		conn.Close()
		return nil, err
	}
	failed := make(chan error, 1)
	go func() { failed <- c.Run(h) }()
	stop := func() error {
		c.Close()
		return conn.Close()
	}
	return &consumer{stop: stop, failed: failed}, nil
}

// wmConsume runs a watermill Router over a watermill-amqp durable-queue
// subscriber. A watermill-amqp subscription hands its handler one message
// at a time and waits for its ack, so concurrency is that many handlers
// (subscriptions) on the same queue, each with its own channel and the
// prefetch.
func wmConsume(e *env, queue string, h message.NoPublishHandlerFunc, mw ...message.HandlerMiddleware) (*consumer, error) {
	cfg := wmamqp.NewDurableQueueConfig(e.cfg.url)
	cfg.Consume.Qos.PrefetchCount = e.cfg.prefetch
	sub, err := wmamqp.NewSubscriber(cfg, watermill.NopLogger{})
	if err != nil {
		return nil, err
	}
	r, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
	if err != nil {
		sub.Close()
		return nil, err
	}
	r.AddMiddleware(mw...)
	for i := range e.cfg.concurrency {
		r.AddConsumerHandler(fmt.Sprintf("bench-%d", i), queue, sub, h)
	}
	failed := make(chan error, 1)
	go func() { failed <- r.Run(context.Background()) }()
	select {
	case <-r.Running():
	case err := <-failed:
		sub.Close()
		return nil, fmt.Errorf("watermill router: %w", err)
	}
	stop := func() error {
		return errors.Join(r.Close(), sub.Close())
	}
	return &consumer{stop: stop, failed: failed}, nil
}
