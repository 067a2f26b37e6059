package dlxretry_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlxretry/dlxretry"
	"github.com/dlxretry/dlxretry/internal/brokertest"
	"github.com/dlxretry/dlxretry/internal/leaktest"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(runChild())
	}
	leaktest.VerifyTestMain(m)
}

func TestNewConsumerRejectsBadInput(t *testing.T) {
	good := dlxretry.Topology{Queue: "q", Delays: delaysMS(100), MaxAttempts: 3}
	h := func(context.Context, *dlxretry.Delivery) error { return nil }
	cases := []struct {
		name  string
		url   string
		topo  dlxretry.Topology
		h     dlxretry.Handler
		opts  []dlxretry.Option
		field string
	}{
		{"bad url", "http://x", good, h, nil, "url"},
		{"bad topology", "amqp://localhost", dlxretry.Topology{Queue: "q", MaxAttempts: 1}, h, nil, "Topology.Delays"},
		{"nil handler", "amqp://localhost", good, nil, nil, "handler"},
		{"zero concurrency", "amqp://localhost", good, h, []dlxretry.Option{dlxretry.WithConcurrency(0)}, "WithConcurrency"},
		{"prefetch below concurrency", "amqp://localhost", good, h,
			[]dlxretry.Option{dlxretry.WithConcurrency(8), dlxretry.WithPrefetch(4)}, "WithPrefetch"},
		{"nil logger", "amqp://localhost", good, h, []dlxretry.Option{dlxretry.WithLogger(nil)}, "WithLogger"},
		{"redelivery limit", "amqp://localhost", good, h, []dlxretry.Option{dlxretry.WithRedeliveryLimit(0)}, "WithRedeliveryLimit"},
		{"error text limit", "amqp://localhost", good, h, []dlxretry.Option{dlxretry.WithErrorTextLimit(1 << 20)}, "WithErrorTextLimit"},
		{"handler timeout", "amqp://localhost", good, h, []dlxretry.Option{dlxretry.WithHandlerTimeout(-time.Second)}, "WithHandlerTimeout"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := dlxretry.NewConsumer(c.url, c.topo, c.h, c.opts...)
			var ce *dlxretry.ConfigError
			if !errors.As(err, &ce) || ce.Field != c.field {
				t.Fatalf("NewConsumer error %v, want a ConfigError for %s", err, c.field)
			}
		})
	}
}

// Cancelling Run lets handlers in flight finish and ack; prefetched messages
// that had not started go back to the queue. Nothing is lost.
func TestRunDrainsOnCancel(t *testing.T) {
	t.Parallel()
	topo := declare(t, dlxretry.Classic, delaysMS(100), 3)
	const total = 10
	bodies := make([]string, total)
	for i := range bodies {
		bodies[i] = string(rune('a' + i))
	}
	publish(t, topo.Exchange, "k", bodies...)

	started := make(chan struct{}, total)
	release := make(chan struct{})
	var acked atomic.Int32
	h := func(ctx context.Context, d *dlxretry.Delivery) error {
		started <- struct{}{}
		<-release
		if ctx.Err() != nil {
			t.Error("handler context cancelled during a graceful drain")
		}
		return nil
	}
	c, err := dlxretry.NewConsumer(brokertest.URL(t), topo, h, dlxretry.WithConcurrency(2), dlxretry.WithPrefetch(6),
		dlxretry.WithHooks(dlxretry.Hooks{OnAck: func(context.Context, dlxretry.AckEvent) { acked.Add(1) }}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	<-started
	<-started // both workers busy, more prefetched behind them
	cancel()
	time.Sleep(100 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("Run returned (%v) with handlers in flight", err)
	default:
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := acked.Load(); got != 2 {
		t.Errorf("acked %d, want the 2 in flight", got)
	}
	if n := messageCount(t, topo.Queue); n != total-2 {
		t.Errorf("work queue holds %d, want %d: every unstarted message back", n, total-2)
	}
}

// WithConcurrency runs that many handlers at once.
func TestConcurrency(t *testing.T) {
	t.Parallel()
	topo := declare(t, dlxretry.Classic, delaysMS(100), 3)
	const workers = 4
	var now, peak atomic.Int32
	acks := make(chan string, 16)
	h := func(ctx context.Context, d *dlxretry.Delivery) error {
		n := now.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		time.Sleep(100 * time.Millisecond)
		now.Add(-1)
		return nil
	}
	run(t, topo, h, dlxretry.WithConcurrency(workers),
		dlxretry.WithHooks(dlxretry.Hooks{OnAck: func(_ context.Context, e dlxretry.AckEvent) { acks <- string(e.Delivery.Body) }}))
	publish(t, topo.Exchange, "k", "1", "2", "3", "4", "5", "6", "7", "8")
	waitN(t, acks, 8, 10*time.Second)
	if p := peak.Load(); p != workers {
		t.Errorf("peak concurrency %d, want %d", p, workers)
	}
}

// When parking fails (here: the parking queue is gone, so the parking
// exchange returns the message), the message is not acked: it goes round the
// retry path and is parked once parking works again.
func TestParkingFailureKeepsMessage(t *testing.T) {
	t.Parallel()
	topo := declare(t, dlxretry.Classic, delaysMS(200), 1)
	parkErrs := make(chan error, 100)
	parks := make(chan string, 1)
	acks := make(chan string, 1)
	h := func(ctx context.Context, d *dlxretry.Delivery) error {
		if string(d.Body) == "ok" {
			return nil
		}
		return errTest
	}
	run(t, topo, h, dlxretry.WithHooks(dlxretry.Hooks{
		OnAck: func(_ context.Context, e dlxretry.AckEvent) { acks <- string(e.Delivery.Body) },
		OnRetry: func(_ context.Context, e dlxretry.RetryEvent) {
			if e.ParkErr != nil {
				parkErrs <- e.ParkErr
			}
		},
		OnPark: func(_ context.Context, e dlxretry.ParkEvent) { parks <- string(e.Delivery.Body) }}))
	publish(t, topo.Exchange, "k", "ok")
	waitN(t, acks, 1, 5*time.Second) // the consumer has declared and is consuming
	if _, err := brokertest.Channel(t).QueueDelete(topo.ParkingQueue(), false, false, false); err != nil {
		t.Fatal(err)
	}
	publish(t, topo.Exchange, "k", "m")
	select {
	case err := <-parkErrs:
		if !errors.Is(err, dlxretry.ErrUnroutable) {
			t.Fatalf("park error %v, want ErrUnroutable", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no park attempt")
	}
	// Put the parking queue back: the next round parks it.
	if err := topo.Declare(context.Background(), brokertest.Channel(t)); err != nil {
		t.Fatal(err)
	}
	waitN(t, parks, 1, 5*time.Second)
	getAll(t, topo.ParkingQueue(), 1, 2*time.Second)
	assertEmpty(t, topo)
}

// When the work queue is deleted under a running consumer, the broker
// cancels the consumer; Run notices, declares again and goes on consuming.
func TestConsumerRecoversDeletedQueue(t *testing.T) {
	t.Parallel()
	topo := declare(t, dlxretry.Classic, delaysMS(50), 3)
	connects := make(chan string, 10)
	disconnects := make(chan error, 10)
	r := newRecorder(nil)
	hooks := r.hooks()
	hooks.OnConnect = func(e dlxretry.ConnectEvent) { connects <- e.Broker }
	hooks.OnDisconnect = func(e dlxretry.DisconnectEvent) { disconnects <- e.Err }
	run(t, topo, r.handle, dlxretry.WithHooks(hooks), dlxretry.WithReconnectDelay(10*time.Millisecond, 100*time.Millisecond))
	waitN(t, connects, 1, 5*time.Second)
	if _, err := brokertest.Channel(t).QueueDelete(topo.Queue, false, false, false); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-disconnects:
		if !errors.Is(err, dlxretry.ErrConsumerCancelled) {
			t.Errorf("disconnect reason %v, want the broker's cancel", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the consumer did not notice its queue was deleted")
	}
	waitN(t, connects, 1, 5*time.Second)
	publish(t, topo.Exchange, "k", "after")
	if got := waitN(t, r.acks, 1, 5*time.Second); got[0] != "after" {
		t.Errorf("acked %v", got)
	}
}

// A shutdown timeout shorter than a handler: Run cancels the handler's
// context, returns ErrShutdownTimeout, and the message goes back to the queue.
func TestRunShutdownTimeout(t *testing.T) {
	t.Parallel()
	topo := declare(t, dlxretry.Classic, delaysMS(50), 3)
	publish(t, topo.Exchange, "k", "slow")
	started := make(chan struct{})
	finished := make(chan struct{})
	h := func(ctx context.Context, d *dlxretry.Delivery) error {
		defer close(finished)
		close(started)
		<-ctx.Done()
		return ctx.Err()
	}
	c, err := dlxretry.NewConsumer(brokertest.URL(t), topo, h, dlxretry.WithShutdownTimeout(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	<-started
	cancel()
	if err := <-done; !errors.Is(err, dlxretry.ErrShutdownTimeout) {
		t.Fatalf("Run returned %v, want ErrShutdownTimeout", err)
	}
	<-finished
	// Back in the work queue as it was: not counted as a failed attempt.
	d := getAll(t, topo.Queue, 1, 5*time.Second)[0]
	if string(d.Body) != "slow" || !d.Redelivered || d.Headers["x-death"] != nil {
		t.Errorf("got %s (redelivered %v, headers %v), want slow requeued without a death", d.Body, d.Redelivered, d.Headers)
	}
}

// With several broker URLs, a consumer whose first broker is down connects
// to the next one.
func TestConsumerTriesBrokersInTurn(t *testing.T) {
	t.Parallel()
	topo := declare(t, dlxretry.Classic, delaysMS(50), 3)
	var down []string
	connected := make(chan string, 4)
	r := newRecorder(nil)
	hooks := r.hooks()
	hooks.OnConnect = func(e dlxretry.ConnectEvent) { connected <- e.Broker }
	hooks.OnDisconnect = func(e dlxretry.DisconnectEvent) { down = append(down, e.Broker) }
	c, err := dlxretry.NewConsumer("amqp://guest:guest@127.0.0.1:1/", topo, r.handle,
		dlxretry.WithURLs(brokertest.URL(t)), dlxretry.WithHooks(hooks),
		dlxretry.WithReconnectDelay(10*time.Millisecond, 50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	if got := waitN(t, connected, 1, 5*time.Second)[0]; strings.Contains(got, "127.0.0.1:1/") {
		t.Fatalf("connected to %s, the broker that is down", got)
	}
	publish(t, topo.Exchange, "k", "m")
	waitN(t, r.acks, 1, 5*time.Second)
	if len(down) == 0 || down[0] != "amqp://guest:xxxxx@127.0.0.1:1/" {
		t.Errorf("disconnect events %v, want the first broker's, password hidden", down)
	}
}

// WithHandlerTimeout puts a deadline on the handler's context; a handler that
// gives up with ctx.Err() has failed like any other, and is retried.
func TestHandlerTimeoutIsAFailure(t *testing.T) {
	t.Parallel()
	topo := declare(t, dlxretry.Classic, delaysMS(50), 3)
	r := newRecorder(nil)
	h := func(ctx context.Context, d *dlxretry.Delivery) error {
		if d.Attempt == 1 {
			<-ctx.Done() // a call that outlives the deadline
			return ctx.Err()
		}
		return r.handle(ctx, d)
	}
	retries := make(chan error, 1)
	hooks := r.hooks()
	hooks.OnRetry = func(ctx context.Context, e dlxretry.RetryEvent) { retries <- e.Err }
	run(t, topo, h, dlxretry.WithHandlerTimeout(100*time.Millisecond), dlxretry.WithHooks(hooks))
	publish(t, topo.Exchange, "k", "slow")
	select {
	case err := <-retries:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("retried with %v, want the deadline", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the timed-out delivery was not retried")
	}
	waitN(t, r.acks, 1, 5*time.Second)
	if got := r.deliveries("slow"); len(got) != 1 || got[0].attempt != 2 {
		t.Errorf("second handler saw %+v, want attempt 2", got)
	}
	assertEmpty(t, topo)
}
