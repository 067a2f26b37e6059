package parkinglot_test

import (
	"context"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dlxretry/dlxretry"
	"github.com/dlxretry/dlxretry/internal/brokertest"
)

var queueTypes = []dlxretry.QueueType{dlxretry.Classic, dlxretry.Quorum}

// declare declares a topology with a unique queue name and an owned topic
// exchange, and deletes it when the test ends.
func declare(t *testing.T, typ dlxretry.QueueType, delays []time.Duration, maxAttempts int) dlxretry.Topology {
	t.Helper()
	topo := dlxretry.Topology{Queue: brokertest.Name(t, "q"), Delays: delays, MaxAttempts: maxAttempts,
		Type: typ, Exchange: brokertest.Name(t, "x")}
	if err := topo.Declare(context.Background(), brokertest.Channel(t)); err != nil {
		t.Fatalf("declare: %v", err)
	}
	t.Cleanup(func() {
		if err := topo.Delete(context.Background(), brokertest.Channel(t)); err != nil {
			t.Errorf("cleanup: delete topology: %v", err)
		}
	})
	return topo
}

func delaysMS(n ...int) []time.Duration {
	out := make([]time.Duration, len(n))
	for i, v := range n {
		out[i] = time.Duration(v) * time.Millisecond
	}
	return out
}

// newConn returns a Conn to the test broker, closed when the test ends.
func newConn(t *testing.T) *dlxretry.Conn {
	t.Helper()
	c, err := dlxretry.NewConn(brokertest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// run starts a consumer and stops it, waiting for Run to return, when the test ends.
func run(t *testing.T, topo dlxretry.Topology, h dlxretry.Handler, opts ...dlxretry.Option) {
	t.Helper()
	c, err := dlxretry.NewConsumer(brokertest.URL(t), topo, h, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Run did not return 10s after cancel")
		}
	})
}

// publish publishes bodies to exchange with key, each confirmed and routed.
func publish(t *testing.T, exchange, key string, bodies ...string) {
	t.Helper()
	pub, err := dlxretry.NewPublisher(brokertest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	for _, b := range bodies {
		if err := pub.Publish(context.Background(), exchange, key, amqp.Publishing{Body: []byte(b), MessageId: b}); err != nil {
			t.Fatalf("publish %s: %v", b, err)
		}
	}
}

// waitN receives n values from c within timeout.
func waitN(t *testing.T, c <-chan string, n int, timeout time.Duration) []string {
	t.Helper()
	var got []string
	deadline := time.After(timeout)
	for len(got) < n {
		select {
		case s := <-c:
			got = append(got, s)
		case <-deadline:
			t.Fatalf("got %d of %d within %v: %v", len(got), n, timeout, got)
		}
	}
	return got
}

// messageCount is the number of ready messages in queue.
func messageCount(t *testing.T, queue string) int {
	t.Helper()
	q, err := brokertest.Channel(t).QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		t.Fatalf("inspect %s: %v", queue, err)
	}
	return q.Messages
}

// getAll takes want messages from queue (acking them) within timeout.
func getAll(t *testing.T, queue string, want int, timeout time.Duration) []amqp.Delivery {
	t.Helper()
	ch := brokertest.Channel(t)
	var out []amqp.Delivery
	for deadline := time.Now().Add(timeout); len(out) < want && time.Now().Before(deadline); {
		d, ok, err := ch.Get(queue, true)
		if err != nil {
			t.Fatalf("get from %s: %v", queue, err)
		}
		if !ok {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		out = append(out, d)
	}
	if len(out) != want {
		t.Fatalf("got %d messages from %s, want %d", len(out), queue, want)
	}
	return out
}

// assertEmpty checks the work queue and every tier queue are empty.
func assertEmpty(t *testing.T, topo dlxretry.Topology) {
	t.Helper()
	queues := []string{topo.Queue}
	for i := 1; i <= topo.Tiers(); i++ {
		queues = append(queues, topo.TierQueue(i))
	}
	for _, q := range queues {
		if n := messageCount(t, q); n != 0 {
			t.Errorf("%s holds %d messages", q, n)
		}
	}
}
