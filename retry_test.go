package dlxretry_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlxretry/dlxretry"
	"github.com/dlxretry/dlxretry/internal/brokertest"
	amqp "github.com/rabbitmq/amqp091-go"
)

// A message that fails k times, k below the threshold, is delivered k+1
// times, each after its tier's delay, and then acked.
func TestFailsThenSucceeds(t *testing.T) {
	for _, typ := range queueTypes {
		t.Run(string(typ), func(t *testing.T) {
			t.Parallel()
			delays := delaysMS(100, 200, 400)
			topo := declare(t, typ, delays, 5)
			const k = 3
			r := newRecorder(map[string]int{"m": k})
			run(t, topo, r.handle, dlxretry.WithHooks(r.hooks()))
			publish(t, topo.Exchange, "order.created", "m")

			waitN(t, r.acks, 1, 10*time.Second)
			got := r.deliveries("m")
			if len(got) != k+1 {
				t.Fatalf("delivered %d times, want %d", len(got), k+1)
			}
			for i := 1; i < len(got); i++ {
				gap := got[i].start.Sub(got[i-1].end)
				delay := delays[i-1]
				// At least the tier's delay; the routing key below says which
				// tier it came from, so the upper bound only catches a message
				// held far too long, with room for a loaded machine.
				if gap < delay || gap >= delay+2*time.Second {
					t.Errorf("gap before delivery %d is %v, want [%v, %v)", i+1, gap, delay, delay+2*time.Second)
				}
				if got[i].attempt != i+1 {
					t.Errorf("delivery %d has Attempt %d", i+1, got[i].attempt)
				}
				if got[i].routingKey != topo.TierKey(i) || got[i].origKey != "order.created" {
					t.Errorf("delivery %d: routing key %q, original %q", i+1, got[i].routingKey, got[i].origKey)
				}
			}
			assertEmpty(t, topo)
		})
	}
}

// A message that always fails is delivered MaxAttempts times and parked with
// headers that say why; nothing is left in the work or tier queues.
func TestAlwaysFailsIsParked(t *testing.T) {
	for _, typ := range queueTypes {
		t.Run(string(typ), func(t *testing.T) {
			t.Parallel()
			topo := declare(t, typ, delaysMS(50, 100), 4)
			r := newRecorder(map[string]int{"bad": -1})
			run(t, topo, r.handle, dlxretry.WithHooks(r.hooks()))
			before := time.Now().Add(-time.Second)
			publish(t, topo.Exchange, "order.created", "bad")

			waitN(t, r.parks, 1, 10*time.Second)
			if n := len(r.deliveries("bad")); n != topo.MaxAttempts {
				t.Fatalf("delivered %d times, want %d", n, topo.MaxAttempts)
			}
			parked := getAll(t, topo.ParkingQueue(), 1, 5*time.Second)[0]
			assertParkedHeaders(t, parked, topo, 4, false, before)
			assertEmpty(t, topo)
		})
	}
}

// Permanent(err) parks on the first delivery.
func TestPermanentParksAtOnce(t *testing.T) {
	t.Parallel()
	topo := declare(t, dlxretry.Classic, delaysMS(50), 5)
	r := newRecorder(nil)
	r.perm["invalid"] = true
	run(t, topo, r.handle, dlxretry.WithHooks(r.hooks()))
	before := time.Now().Add(-time.Second)
	publish(t, topo.Exchange, "order.created", "invalid")

	waitN(t, r.parks, 1, 5*time.Second)
	if n := len(r.deliveries("invalid")); n != 1 {
		t.Fatalf("delivered %d times, want 1", n)
	}
	parked := getAll(t, topo.ParkingQueue(), 1, 5*time.Second)[0]
	assertParkedHeaders(t, parked, topo, 1, true, before)
	assertEmpty(t, topo)
}

// A handler panic is a failure like any other: retried, then parked.
func TestPanicCountsAsFailure(t *testing.T) {
	t.Parallel()
	topo := declare(t, dlxretry.Classic, delaysMS(20), 2)
	var calls int
	h := func(ctx context.Context, d *dlxretry.Delivery) error {
		calls++
		panic("boom")
	}
	parks := make(chan string, 1)
	run(t, topo, h, dlxretry.WithHooks(dlxretry.Hooks{OnPark: func(_ context.Context, e dlxretry.ParkEvent) {
		var pe *dlxretry.PanicError
		if !errors.As(e.Err, &pe) {
			t.Errorf("park cause %v is not a *PanicError", e.Err)
		}
		parks <- string(e.Delivery.Body)
	}}))
	publish(t, topo.Exchange, "k", "p")
	waitN(t, parks, 1, 5*time.Second)
	if calls != 2 {
		t.Errorf("handler ran %d times, want 2", calls)
	}
	parked := getAll(t, topo.ParkingQueue(), 1, 5*time.Second)[0]
	if msg, _ := parked.Headers[dlxretry.HeaderError].(string); msg != "dlxretry: handler panicked: boom" {
		t.Errorf("error header %q", msg)
	}
}

// No head-of-line blocking: a message waiting in a long tier does not hold
// back one in a short tier.
func TestNoHeadOfLineBlocking(t *testing.T) {
	t.Parallel()
	topo := declare(t, dlxretry.Classic, delaysMS(100, 3000), 5)
	r := newRecorder(map[string]int{"slow": 2, "fast": 1})
	run(t, topo, r.handle, dlxretry.WithHooks(r.hooks()))

	publish(t, topo.Exchange, "k", "slow")
	// "slow" fails twice and settles into the 3s tier.
	deadline := time.Now().Add(5 * time.Second)
	for len(r.deliveries("slow")) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	publish(t, topo.Exchange, "k", "fast")
	first := waitN(t, r.acks, 1, 2*time.Second)[0]
	if first != "fast" {
		t.Fatalf("first ack is %q, want fast", first)
	}
	fast := r.deliveries("fast")
	// Blocked, it would have waited for the 3s tier ahead of it.
	if gap := fast[1].start.Sub(fast[0].end); gap >= 2*time.Second {
		t.Errorf("fast came back after %v behind a 3s retry", gap)
	}
	waitN(t, r.acks, 1, 6*time.Second)
	assertEmpty(t, topo)
}

// Retries go back to the work queue only, never to other queues bound to
// the same exchange.
func TestRetriesDoNotLeak(t *testing.T) {
	t.Parallel()
	ch := brokertest.Channel(t)
	exchange := brokertest.Exchange(t, "events", "topic")
	spy := brokertest.Queue(t, "spy", nil)
	if err := ch.QueueBind(spy, "#", exchange, false, nil); err != nil {
		t.Fatal(err)
	}
	topo := dlxretry.Topology{Queue: brokertest.Name(t, "q"), Delays: delaysMS(20, 40), MaxAttempts: 5,
		Bindings: []dlxretry.Binding{{Exchange: exchange, Key: "order.*"}}}
	declareTopology(t, topo)
	r := newRecorder(map[string]int{"a": 2, "b": 3, "c": 1})
	run(t, topo, r.handle, dlxretry.WithHooks(r.hooks()))
	publish(t, exchange, "order.created", "a", "b", "c")

	waitN(t, r.acks, 3, 10*time.Second)
	if n := len(r.seen); n != 3+6 {
		t.Errorf("handler saw %d deliveries, want 9", n)
	}
	got := getAll(t, spy, 3, 2*time.Second)
	for _, d := range got {
		if d.RoutingKey != "order.created" || d.Headers["x-death"] != nil {
			t.Errorf("spy got a retry: key %q headers %v", d.RoutingKey, d.Headers)
		}
	}
	if n := messageCount(t, spy); n != 0 {
		t.Errorf("spy has %d more messages", n)
	}
}

// Quorum: a message whose consumer dies before acking, again and again, is
// counted as failing, retried and parked; the broker never drops it. What
// x-delivery-count counts differs by version (3.x resets it on
// dead-lettering, 4.0 also counts nacks, 4.3 keeps it), and the consumer
// reads the broker's version: the handler runs limit+1 times per attempt on
// every version.
func TestQuorumCrashLoopIsParked(t *testing.T) {
	long(t)
	t.Parallel()
	topo := declare(t, dlxretry.Quorum, delaysMS(50), 2)
	name := brokertest.Name(t, "conn")
	const limit = 2
	var handled atomic.Int32
	h := func(ctx context.Context, d *dlxretry.Delivery) error {
		handled.Add(1)
		if n, err := brokertest.CloseConnections(name); err != nil || n == 0 {
			t.Errorf("crash: closed %d connections: %v", n, err)
		}
		<-ctx.Done() // the process "dies" mid-message: nothing is settled
		return ctx.Err()
	}
	c := newCounter(nil)
	run(t, topo, h, dlxretry.WithConnectionName(name), dlxretry.WithRedeliveryLimit(limit),
		dlxretry.WithReconnectDelay(10*time.Millisecond, 100*time.Millisecond), dlxretry.WithHooks(c.hooks()),
		dlxretry.WithShutdownTimeout(time.Second)) // the last crashing handler waits for its ctx
	publish(t, topo.Exchange, "k", "poison")
	// Six crashes, each a rabbitmqctl list and close: seconds each when the
	// machine is busy.
	waitN(t, c.outcomes, 1, 3*time.Minute)
	// Each attempt allows limit+1 deliveries: on 3.x and 4.3 that makes two
	// rounds of limit+1 crashes each, each round's last delivery failed
	// without running the handler. RabbitMQ 4.0 carries a count into the next
	// attempt that cannot be told from a fresh one, so the consumer allows
	// (limit+1) × attempt there: at most limit+1 more runs per attempt.
	lo, hi := int32(topo.MaxAttempts*(limit+1)), int32((limit+1)*topo.MaxAttempts*(topo.MaxAttempts+1)/2)
	if n := handled.Load(); n < lo || n > hi {
		t.Errorf("handler ran %d times, want %d to %d", n, lo, hi)
	}
	got := getAll(t, topo.ParkingQueue(), 1, 5*time.Second)[0]
	if msg, _ := got.Headers[dlxretry.HeaderError].(string); msg != dlxretry.ErrRedeliveryLimit.Error() {
		t.Errorf("parked with error %q", msg)
	}
	assertEmpty(t, topo)
}

func getOne(t *testing.T, ch *amqp.Channel, queue string, timeout time.Duration) amqp.Delivery {
	t.Helper()
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		d, ok, err := ch.Get(queue, false)
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		if ok {
			return d
		}
	}
	t.Fatalf("no message in %s after %v", queue, timeout)
	return amqp.Delivery{}
}

func assertParkedHeaders(t *testing.T, d amqp.Delivery, topo dlxretry.Topology, attempts int64, permanent bool, after time.Time) {
	t.Helper()
	h := d.Headers
	checks := []struct {
		name      string
		got, want any
	}{
		{dlxretry.HeaderQueue, h[dlxretry.HeaderQueue], topo.Queue},
		{dlxretry.HeaderError, h[dlxretry.HeaderError], errTest.Error()},
		{dlxretry.HeaderAttempts, h[dlxretry.HeaderAttempts], attempts},
		{dlxretry.HeaderOriginalExchange, h[dlxretry.HeaderOriginalExchange], topo.Exchange},
		{dlxretry.HeaderOriginalRoutingKey, h[dlxretry.HeaderOriginalRoutingKey], "order.created"},
		{dlxretry.HeaderPermanent, h[dlxretry.HeaderPermanent], permanent},
		{"delivery mode", d.DeliveryMode, amqp.Persistent},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("parked %s = %#v, want %#v", c.name, c.got, c.want)
		}
	}
	at, ok := h[dlxretry.HeaderParkedAt].(time.Time)
	if !ok || at.Before(after) || at.After(time.Now().Add(time.Second)) {
		t.Errorf("parked at %v, want after %v", h[dlxretry.HeaderParkedAt], after)
	}
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

// A handler that always fails runs exactly MaxAttempts times and the message
// is parked with the handler's own error, also with more attempts than the
// redelivery limit: RabbitMQ 4.0 raises x-delivery-count on every nack and
// keeps it through dead-lettering, which must not read as a crash loop.
func TestAlwaysFailsRunsEveryAttempt(t *testing.T) {
	for _, typ := range queueTypes {
		t.Run(string(typ), func(t *testing.T) {
			t.Parallel()
			topo := declare(t, typ, delaysMS(20), 9)
			c := newCounter(func(string) bool { return true })
			run(t, topo, c.handle, dlxretry.WithHooks(c.hooks()))
			publish(t, topo.Exchange, "k", "bad")
			waitN(t, c.outcomes, 1, 20*time.Second)
			calls, _, parks := c.snapshot("bad")
			if want := []int{1, 2, 3, 4, 5, 6, 7, 8, 9}; !equalInts(calls, want) || parks != 1 {
				t.Errorf("attempts %v, %d parks; want %v, 1", calls, parks, want)
			}
			if e := c.parkErrs["bad"]; e != errTest.Error() {
				t.Errorf("parked with %q, want the handler's error", e)
			}
			getAll(t, topo.ParkingQueue(), 1, 5*time.Second)
			assertEmpty(t, topo)
		})
	}
}
