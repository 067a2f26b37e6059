package dlxretry_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/dlxretry/dlxretry"
	"github.com/dlxretry/dlxretry/internal/brokertest"
	amqp "github.com/rabbitmq/amqp091-go"
)

// declare declares a topology with a unique queue name and an owned topic
// exchange, and deletes it when the test ends.
func declare(t *testing.T, typ dlxretry.QueueType, delays []time.Duration, maxAttempts int) dlxretry.Topology {
	t.Helper()
	topo := dlxretry.Topology{
		Queue:       brokertest.Name(t, "q"),
		Delays:      delays,
		MaxAttempts: maxAttempts,
		Type:        typ,
		Exchange:    brokertest.Name(t, "x"),
	}
	declareTopology(t, topo)
	return topo
}

func declareTopology(t *testing.T, topo dlxretry.Topology) {
	t.Helper()
	ch := brokertest.Channel(t)
	if err := topo.Declare(context.Background(), ch); err != nil {
		t.Fatalf("declare: %v", err)
	}
	t.Cleanup(func() { deleteTopology(t, topo) })
}

func deleteTopology(t *testing.T, topo dlxretry.Topology) {
	conn, err := amqp.Dial(brokertest.URL(t))
	if err != nil {
		t.Errorf("cleanup: dial: %v", err)
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err == nil {
		err = topo.Delete(context.Background(), ch)
	}
	if err != nil {
		t.Errorf("cleanup: delete topology: %v", err)
	}
}

// publish publishes bodies to exchange with key, waiting for each confirm.
func publish(t *testing.T, exchange, key string, bodies ...string) {
	t.Helper()
	ch := brokertest.Channel(t)
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	returns := ch.NotifyReturn(make(chan amqp.Return, len(bodies)))
	for _, b := range bodies {
		dc, err := ch.PublishWithDeferredConfirm(exchange, key, true, false,
			amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte(b), MessageId: b})
		if err != nil {
			t.Fatalf("publish %s: %v", b, err)
		}
		if !dc.Wait() {
			t.Fatalf("publish %s: nacked", b)
		}
	}
	select {
	case r := <-returns:
		t.Fatalf("publish %s: returned: %s", r.Body, r.ReplyText)
	default:
	}
}

// delivery is what a recording handler saw.
type delivery struct {
	body       string
	attempt    int
	routingKey string
	origKey    string
	start, end time.Time
}

// recorder is a handler that records every delivery and fails each message
// as many times as fails says (-1: always; missing: never).
type recorder struct {
	mu    sync.Mutex
	fails map[string]int
	perm  map[string]bool
	seen  []delivery
	acks  chan string
	parks chan string
}

func newRecorder(fails map[string]int) *recorder {
	return &recorder{fails: fails, perm: map[string]bool{}, acks: make(chan string, 10000), parks: make(chan string, 10000)}
}

var errTest = errors.New("test failure")

func (r *recorder) handle(ctx context.Context, d *dlxretry.Delivery) error {
	rec := delivery{body: string(d.Body), attempt: d.Attempt, routingKey: d.RoutingKey,
		origKey: d.OriginalRoutingKey(), start: time.Now()}
	r.mu.Lock()
	defer r.mu.Unlock()
	n, ok := r.fails[rec.body]
	rec.end = time.Now()
	r.seen = append(r.seen, rec)
	switch {
	case r.perm[rec.body]:
		return dlxretry.Permanent(errTest)
	case ok && (n < 0 || d.Attempt <= n):
		return errTest
	}
	return nil
}

func (r *recorder) hooks() dlxretry.Hooks {
	return dlxretry.Hooks{
		OnAck:  func(_ context.Context, e dlxretry.AckEvent) { r.acks <- string(e.Delivery.Body) },
		OnPark: func(_ context.Context, e dlxretry.ParkEvent) { r.parks <- string(e.Delivery.Body) },
	}
}

// deliveries returns what the handler saw of one message, in order.
func (r *recorder) deliveries(body string) []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []delivery
	for _, d := range r.seen {
		if d.body == body {
			out = append(out, d)
		}
	}
	return out
}

// waitN reads n values from c, failing the test after timeout.
func waitN(t *testing.T, c <-chan string, n int, timeout time.Duration) []string {
	t.Helper()
	var got []string
	deadline := time.After(timeout)
	for len(got) < n {
		select {
		case s := <-c:
			got = append(got, s)
		case <-deadline:
			t.Fatalf("got %d of %d outcomes in %v: %v", len(got), n, timeout, got)
		}
	}
	return got
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

// messageCount is the number of ready messages in queue.
func messageCount(t *testing.T, queue string) int {
	t.Helper()
	q, err := brokertest.Channel(t).QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		t.Fatalf("inspect %s: %v", queue, err)
	}
	return q.Messages
}

// getAll takes every message from queue (acking them) within timeout.
func getAll(t *testing.T, queue string, want int, timeout time.Duration) []amqp.Delivery {
	t.Helper()
	ch := brokertest.Channel(t)
	var out []amqp.Delivery
	deadline := time.Now().Add(timeout)
	for len(out) < want && time.Now().Before(deadline) {
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

func delaysMS(n ...int) []time.Duration {
	out := make([]time.Duration, len(n))
	for i, v := range n {
		out[i] = time.Duration(v) * time.Millisecond
	}
	return out
}

var queueTypes = []dlxretry.QueueType{dlxretry.Classic, dlxretry.Quorum}

// long skips a test that takes seconds under -short, which keeps the loop
// of a change quick; CI runs everything.
func long(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("takes seconds: runs without -short, as CI does")
	}
}
