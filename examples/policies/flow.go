package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dlxretry/dlxretry"
)

// failures is how many attempts at each message fail; forever: all of them.
var failures = map[string]int{"hello11": 0, "hello12": 2, "hello99": forever}

// order is the publishing order.
var order = []string{"hello11", "hello12", "hello99"}

const forever = -1

var errCallbackDown = errors.New("callback down")

func handle(_ context.Context, d *dlxretry.Delivery) error {
	n, ok := failures[string(d.Body)]
	switch {
	case !ok:
		return dlxretry.Permanent(fmt.Errorf("unknown message %q", d.Body))
	case n == forever || d.Attempt <= n:
		return errCallbackDown
	}
	return nil
}

// retryFlow publishes the messages and consumes until each is acked or parked.
func retryFlow(ctx context.Context, brokerURL string, topo dlxretry.Topology, out io.Writer) error {
	out = &syncWriter{w: out}
	pub, err := dlxretry.NewPublisher(brokerURL, dlxretry.WithConnectionName("dlxretry-policies-publisher"))
	if err != nil {
		return err
	}
	defer pub.Close()
	for _, body := range order {
		if err := pub.Publish(ctx, topo.Exchange, "order.created", amqp.Publishing{Body: []byte(body)}); err != nil {
			return err
		}
	}
	t := &tally{out: out, done: make(chan struct{})}
	c, err := dlxretry.NewConsumer(brokerURL, topo, handle, dlxretry.WithHooks(t.hooks()),
		dlxretry.WithConnectionName("dlxretry-policies"))
	if err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	select {
	case <-t.done:
		stop()
		if err := <-done; err != nil {
			return err
		}
	case err := <-done:
		return fmt.Errorf("consumer stopped early: %v", err)
	case <-ctx.Done():
		stop()
		<-done
		return fmt.Errorf("gave up: %w", ctx.Err())
	}
	fmt.Fprintf(out, "summary: %d messages, %d acked, %d retries, %d parked\n", len(order), t.acks, t.retries, t.parks)
	return nil
}

// tally prints and counts outcomes; done is closed once every message has
// been acked or parked.
type tally struct {
	out                  io.Writer
	done                 chan struct{}
	mu                   sync.Mutex
	acks, retries, parks int
}

func (t *tally) hooks() dlxretry.Hooks {
	return dlxretry.Hooks{
		OnAck: func(_ context.Context, e dlxretry.AckEvent) {
			fmt.Fprintf(t.out, "ack     %s (attempt %d)\n", e.Delivery.Body, e.Attempt)
			t.count(&t.acks)
		},
		OnRetry: func(_ context.Context, e dlxretry.RetryEvent) {
			if e.ParkErr != nil {
				fmt.Fprintf(t.out, "park failed for %s: %v\n", e.Delivery.Body, e.ParkErr)
			}
			fmt.Fprintf(t.out, "retry   %s attempt %d failed: %v -> tier %d (%v)\n", e.Delivery.Body, e.Attempt, e.Err, e.Tier, e.Delay)
			t.count(&t.retries)
		},
		OnPark: func(_ context.Context, e dlxretry.ParkEvent) {
			fmt.Fprintf(t.out, "park    %s after %d attempts: %v\n", e.Delivery.Body, e.Attempt, e.Err)
			t.count(&t.parks)
		},
	}
}

func (t *tally) count(n *int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	*n++
	if t.acks+t.parks == len(order) {
		close(t.done)
	}
}

// syncWriter serializes writes from the hooks, which may run on several
// goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
