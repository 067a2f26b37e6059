package dlxretry_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dlxretry/dlxretry"
	"github.com/dlxretry/dlxretry/internal/brokertest"
	amqp "github.com/rabbitmq/amqp091-go"
)

// After a schedule change every message still gets MaxAttempts deliveries
// and one parked copy: no tier key routes into two tiers, and one tier 1
// takes first failures.
func TestScheduleChangeLeavesOneCopy(t *testing.T) {
	cases := []struct {
		name          string
		typ           dlxretry.QueueType
		before, after []time.Duration
		beforeMax     int
		afterMax      int
	}{
		{"delay changed", dlxretry.Classic, delaysMS(100, 200), delaysMS(100, 300), 4, 4},
		{"delay changed quorum", dlxretry.Quorum, delaysMS(100, 200), delaysMS(100, 300), 4, 4},
		{"delay added", dlxretry.Classic, delaysMS(100, 200), delaysMS(100, 200, 400), 4, 4},
		{"delay removed", dlxretry.Classic, delaysMS(100, 200, 400), delaysMS(100, 200), 4, 4},
		{"first delay changed", dlxretry.Classic, delaysMS(100, 200), delaysMS(150, 200), 4, 4},
		{"max attempts changed", dlxretry.Classic, delaysMS(100, 200), delaysMS(100, 200), 3, 5},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			before := dlxretry.Topology{Queue: brokertest.Name(t, "q"), Delays: c.before, MaxAttempts: c.beforeMax,
				Type: c.typ, Exchange: brokertest.Name(t, "x")}
			after := before
			after.Delays, after.MaxAttempts = c.after, c.afterMax
			declareTopology(t, before)
			declareTopology(t, after)

			bodies := []string{"m1", "m2", "m3"}
			rec := newRecorder(map[string]int{"m1": -1, "m2": -1, "m3": -1})
			startConsumer(t, after, rec.handle, dlxretry.WithHooks(rec.hooks()))
			publish(t, after.Exchange, "order.created", bodies...)
			checkOneCopyEach(t, after, rec, bodies, after.MaxAttempts)
		})
	}
}

// Messages waiting in the old schedule's tiers when the schedule changes
// finish on the old path, once each; new messages take the new one.
func TestScheduleChangeLetsWaitingMessagesFinish(t *testing.T) {
	long(t)
	t.Parallel()
	before := dlxretry.Topology{Queue: brokertest.Name(t, "q"), Delays: delaysMS(1500, 200), MaxAttempts: 4,
		Exchange: brokertest.Name(t, "x")}
	after := before
	after.Delays = delaysMS(100, 300)
	declareTopology(t, before)

	rec := newRecorder(map[string]int{"old1": -1, "old2": -1, "new1": -1})
	stopBefore := startConsumer(t, before, rec.handle, dlxretry.WithHooks(rec.hooks()))
	publish(t, before.Exchange, "order.created", "old1", "old2")
	waitUntil(t, 5*time.Second, func() bool { return len(rec.deliveries("old1")) == 1 && len(rec.deliveries("old2")) == 1 })
	stopBefore()
	declareTopology(t, after)
	if n := messageCount(t, before.TierQueue(1)); n != 2 {
		t.Fatalf("%s holds %d messages at the change, want 2", before.TierQueue(1), n)
	}
	startConsumer(t, after, rec.handle, dlxretry.WithHooks(rec.hooks()))
	publish(t, after.Exchange, "order.created", "new1")

	checkOneCopyEach(t, after, rec, []string{"old1", "old2", "new1"}, 4)
	for _, body := range []string{"old1", "old2"} {
		for i, d := range rec.deliveries(body)[1:] {
			if want := before.TierKey(min(i+1, before.Tiers())); d.routingKey != want {
				t.Errorf("%s: delivery %d came with key %s, want the old schedule's %s", body, i+2, d.routingKey, want)
			}
		}
	}
}

// During a rolling deploy old and new replicas declare at once and consume
// side by side: the first-retry exchange ends with one binding, to the new
// schedule's tier 1, and every message is handled MaxAttempts times and
// parked once.
func TestRollingDeployLeavesOneCopy(t *testing.T) {
	long(t)
	t.Parallel()
	old := dlxretry.Topology{Queue: brokertest.Name(t, "q"), Delays: delaysMS(100, 200), MaxAttempts: 4,
		Exchange: brokertest.Name(t, "x")}
	updated := old
	updated.Delays = delaysMS(150, 300)
	declareTopology(t, old)
	t.Cleanup(func() { deleteTopology(t, updated) })
	declareAll(t, old, updated, old, updated, old, updated, old, updated)

	if got, want := firstRoutes(t, old), []string{updated.TierQueue(1)}; !equal(got, want) {
		t.Errorf("first-retry exchanges bind %q, want %q", got, want)
	}
	bodies := []string{"m1", "m2", "m3", "m4"}
	rec := newRecorder(map[string]int{"m1": -1, "m2": -1, "m3": -1, "m4": -1})
	startConsumer(t, old, rec.handle, dlxretry.WithHooks(rec.hooks()))
	startConsumer(t, updated, rec.handle, dlxretry.WithHooks(rec.hooks()))
	publish(t, old.Exchange, "order.created", bodies...)
	checkOneCopyEach(t, updated, rec, bodies, 4)
}

// declareAll declares each topology on a connection of its own, all at once.
func declareAll(t *testing.T, topos ...dlxretry.Topology) {
	t.Helper()
	chans := make([]*amqp.Channel, len(topos))
	for i := range topos {
		chans[i] = brokertest.Channel(t)
	}
	errs := make([]error, len(topos))
	var wg sync.WaitGroup
	for i, topo := range topos {
		wg.Go(func() { errs[i] = topo.Declare(context.Background(), chans[i]) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("declare %d (%v): %v", i, topos[i].Delays, err)
		}
	}
}

// checkOneCopyEach waits until every message is parked, waits some more for
// copies, and checks each message was handled calls times and parked once.
func checkOneCopyEach(t *testing.T, topo dlxretry.Topology, rec *recorder, bodies []string, calls int) {
	t.Helper()
	waitN(t, rec.parks, len(bodies), 20*time.Second)
	time.Sleep(2 * time.Second) // copies, if any, arrive within the longest path
	parked := map[string]int{}
	for _, d := range getAll(t, topo.ParkingQueue(), messageCount(t, topo.ParkingQueue()), time.Second) {
		parked[string(d.Body)]++
	}
	for _, b := range bodies {
		n := len(rec.deliveries(b))
		t.Logf("%s: %d handler calls, %d parked copies", b, n, parked[b])
		if n != calls || parked[b] != 1 {
			t.Errorf("%s: %d handler calls and %d parked copies, want %d and 1", b, n, parked[b], calls)
		}
	}
}

// startConsumer runs a consumer until the returned stop is called or the
// test ends.
func startConsumer(t *testing.T, topo dlxretry.Topology, h dlxretry.Handler, opts ...dlxretry.Option) (stop func()) {
	t.Helper()
	c, err := dlxretry.NewConsumer(brokertest.URL(t), topo, h, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
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
	t.Cleanup(stop)
	return stop
}

func waitUntil(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met in %v", timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// firstRoutes lists the queues bound to the exchanges behind the
// first-retry exchange (Q.retry.first.0 and its alternate exchange
// Q.retry.first.1), one entry per binding, as rabbitmqctl reports them.
func firstRoutes(t *testing.T, topo dlxretry.Topology) []string {
	t.Helper()
	out := brokertest.Ctl(t, "list_bindings", "-q", "--no-table-headers", "source_name", "destination_name")
	var got []string
	for _, line := range strings.Split(out, "\n") {
		src, dst, ok := strings.Cut(line, "\t")
		if ok && (src == topo.FirstRetryExchange()+".0" || src == topo.FirstRetryExchange()+".1") {
			got = append(got, dst)
		}
	}
	return got
}

func equal(a, b []string) bool {
	return strings.Join(a, "\n") == strings.Join(b, "\n")
}
