//go:build faults

// Whole-broker faults: they hit every connection on the broker, so they run
// in a step of their own (.ci/run: go test -tags faults -run Fault -p 1),
// never beside other tests.

package dlxretry_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlxretry/dlxretry"
	"github.com/dlxretry/dlxretry/internal/brokertest"
)

// rabbitmqctl close_all_connections, again and again, during a mixed load.
func TestFaultCloseAllConnections(t *testing.T) {
	l := newMixedLoad(t, loadSize(t), dlxretry.Classic)
	const prefetch = 32
	run(t, l.topo, l.handle, dlxretry.WithConcurrency(8), dlxretry.WithPrefetch(prefetch),
		dlxretry.WithReconnectDelay(50*time.Millisecond, time.Second))
	pub := newPublisher(t, brokertest.Name(t, "pub"))
	stop := make(chan struct{})
	cycles := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				cycles <- n
				return
			case <-time.After(500 * time.Millisecond):
			}
			brokertest.Ctl(t, "close_all_connections", "fault test")
			n++
		}
	}()
	retries := l.publishAll(t, pub, 1000)
	l.waitSettled(t, 3*time.Minute)
	close(stop)
	n := <-cycles
	dups := l.verify(t)
	t.Logf("%d messages, %d close_all_connections, %d publishes repeated, %d duplicates", l.n, n, retries, dups)
	if n == 0 {
		t.Error("no fault was injected")
	}
	// At most one duplicate per handler in flight (8) at each closing.
	if bound := n*8 + retries; dups > bound {
		t.Errorf("%d duplicates, more than the %d that could have been in flight", dups, bound)
	}
}

// The broker application restarted mid-run, with quorum queues: zero loss.
func TestFaultBrokerRestart(t *testing.T) {
	l := newMixedLoad(t, loadSize(t), dlxretry.Quorum)
	var consumerDown, publisherDown atomic.Int32
	run(t, l.topo, l.handle, dlxretry.WithConcurrency(8), dlxretry.WithPrefetch(32),
		dlxretry.WithHooks(dlxretry.Hooks{OnDisconnect: func(dlxretry.DisconnectEvent) { consumerDown.Add(1) }}),
		dlxretry.WithReconnectDelay(100*time.Millisecond, time.Second))
	pub, err := dlxretry.NewPublisher(brokertest.URL(t),
		dlxretry.WithHooks(dlxretry.Hooks{OnDisconnect: func(dlxretry.DisconnectEvent) { publisherDown.Add(1) }}),
		dlxretry.WithReconnectDelay(100*time.Millisecond, time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pub.Close() })
	published := make(chan int, 1)
	go func() { published <- l.publishAll(t, pub, 1000) }()
	time.Sleep(2 * time.Second)
	brokertest.RestartApp(t, 2*time.Second)
	retries := <-published
	l.waitSettled(t, 3*time.Minute)
	dups := l.verify(t)
	t.Logf("%d messages, broker restarted once, %d and %d failed or lost connections (consumer, publisher), %d publishes repeated, %d duplicates",
		l.n, consumerDown.Load(), publisherDown.Load(), retries, dups)
	if bound := 8 + retries; dups > bound {
		t.Errorf("%d duplicates, more than the %d that could have been in flight", dups, bound)
	}
	if consumerDown.Load() == 0 || publisherDown.Load() == 0 {
		t.Error("the consumer and the publisher did not both lose their connections: the fault missed the run")
	}
}

// While a memory alarm blocks publishing, Publish waits within its ctx
// instead of hanging, and succeeds once the alarm clears.
func TestFaultPublishWhileBlocked(t *testing.T) {
	topo := declare(t, dlxretry.Classic, delaysMS(100), 3)
	pub := newPublisher(t, brokertest.Name(t, "pub"))
	ctx := context.Background()
	if err := pub.Publish(ctx, topo.Exchange, "k", amqpMsg("before")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { brokertest.Ctl(t, "set_vm_memory_high_watermark", "0.4") })
	brokertest.Ctl(t, "set_vm_memory_high_watermark", "0.000001")
	time.Sleep(time.Second) // the alarm reaches the connection

	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	start := time.Now()
	err := pub.Publish(short, topo.Exchange, "k", amqpMsg("blocked"))
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 4*time.Second {
		t.Fatalf("Publish while blocked returned %v after %v, want the ctx deadline", err, time.Since(start))
	}
	brokertest.Ctl(t, "set_vm_memory_high_watermark", "0.4")
	long, cancel2 := context.WithTimeout(ctx, 20*time.Second)
	defer cancel2()
	if err := pub.Publish(long, topo.Exchange, "k", amqpMsg("after")); err != nil {
		t.Fatalf("Publish after the alarm cleared: %v", err)
	}
	got := map[string]bool{}
	for _, d := range getAll(t, topo.Queue, messageCount(t, topo.Queue), 5*time.Second) {
		got[string(d.Body)] = true
	}
	if !got["before"] || !got["after"] {
		t.Errorf("queue holds %v, want before and after", got)
	}
}
