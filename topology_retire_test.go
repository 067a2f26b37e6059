package dlxretry_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dlxretry/dlxretry"
	"github.com/dlxretry/dlxretry/internal/brokertest"
	amqp "github.com/rabbitmq/amqp091-go"
)

// A tier key routes to one tier, and a tier queue's name fixes its TTL and
// key, whatever schedules a queue has had: no key gets a second
// destination, no queue a second set of arguments.
func TestTierNamesNeverGetASecondMeaning(t *testing.T) {
	const queue = "orders"
	dest := map[string]string{} // tier key -> the tier it routes to
	args := map[string]string{} // tier queue -> its TTL and key
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		delays := make([]time.Duration, 1+r.IntN(4))
		for i := range delays {
			delays[i] = time.Duration(100*(1+r.IntN(3))) * time.Millisecond
		}
		topo := dlxretry.Topology{Queue: queue, Delays: delays, MaxAttempts: 3}
		for i := 1; i <= topo.Tiers(); i++ {
			key, q, next := topo.TierKey(i), topo.TierQueue(i), topo.TierQueue(min(i+1, topo.Tiers()))
			if d, ok := dest[key]; ok && d != next {
				t.Fatalf("%v: key %s routes to %s and to %s", delays, key, d, next)
			}
			dest[key] = next
			a := fmt.Sprint(delays[i-1], key)
			if prev, ok := args[q]; ok && prev != a {
				t.Fatalf("%v: queue %s declared with %s and with %s", delays, q, prev, a)
			}
			args[q] = a
			if !strings.HasPrefix(key, queue+".tier.") {
				t.Fatalf("key %s lacks the prefix %s.tier.", key, queue)
			}
		}
	}
}

// The longest names stay within AMQP's 255 bytes.
func TestTierNamesFit(t *testing.T) {
	topo := dlxretry.Topology{Queue: strings.Repeat("q", 200), MaxAttempts: 1,
		Delays: []time.Duration{time.Duration(1<<31-1) * time.Millisecond}}
	if err := topo.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{topo.TierQueue(1), topo.TierKey(1)} {
		if len(name) > 255 {
			t.Errorf("%s is %d bytes", name, len(name))
		}
	}
}

// Declares racing under a load of first failures: old and new replicas of
// a rolling deploy lose and copy none; several new schedules declared at
// once lose none and may copy a few, at the instant their activations
// race. Each ends with one tier 1 behind the first-retry exchange.
func TestConcurrentDeclaresKeepOneFirstBinding(t *testing.T) {
	long(t)
	for _, c := range []struct {
		name      string
		schedules int
	}{{"rolling deploy", 2}, {"four new schedules", 5}} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			base := dlxretry.Topology{Queue: brokertest.Name(t, "q"), Delays: delaysMS(50), MaxAttempts: 3}
			declareTopology(t, base)
			var topos []dlxretry.Topology
			for i := range 12 {
				topo := base
				topo.Delays = delaysMS(50 + 10*(i%c.schedules))
				topos = append(topos, topo)
			}
			t.Cleanup(func() { deleteTopology(t, topos[1]) })
			copies := duringFirstFailures(t, base, func() { declareAll(t, topos...) })
			if c.schedules == 2 && copies != 0 {
				t.Errorf("%d first failures were copied", copies)
			}
			if got := firstRoutes(t, base); len(got) != 1 {
				t.Errorf("first-retry exchanges have %d bindings, want 1: %q", len(got), got)
			}
		})
	}
}

// A schedule change, and a rollback with RetireTiers, switch first failures
// from one tier 1 to the other with one binding change each: none of the
// first failures published meanwhile is lost or copied.
func TestScheduleSwitchLosesAndCopiesNothing(t *testing.T) {
	long(t)
	for _, typ := range queueTypes {
		t.Run(string(typ), func(t *testing.T) {
			t.Parallel()
			a := dlxretry.Topology{Queue: brokertest.Name(t, "q"), Delays: delaysMS(50), MaxAttempts: 3, Type: typ}
			b := a
			b.Delays = delaysMS(80)
			declareTopology(t, a)
			t.Cleanup(func() { deleteTopology(t, b) })
			conn := brokertest.Dial(t)
			ch := brokertest.Channel(t)
			copies := duringFirstFailures(t, a, func() {
				for range 2 {
					time.Sleep(100 * time.Millisecond)
					if err := b.Declare(context.Background(), ch); err != nil {
						t.Fatal(err)
					}
					time.Sleep(100 * time.Millisecond)
					if _, err := a.RetireTiers(context.Background(), conn); err != nil {
						t.Fatal(err)
					}
					time.Sleep(100 * time.Millisecond)
					if _, err := b.RetireTiers(context.Background(), conn); err != nil {
						t.Fatal(err)
					}
				}
			})
			if copies != 0 {
				t.Errorf("%d first failures were copied", copies)
			}
		})
	}
}

// duringFirstFailures publishes first failures while f runs, then checks
// that each came back to the work queue, and returns how many copies came
// back besides.
func duringFirstFailures(t *testing.T, topo dlxretry.Topology, f func()) int {
	t.Helper()
	stop := make(chan struct{})
	published := make(chan int, 1)
	go func() { published <- publishFirstFailures(t, topo, stop) }()
	time.Sleep(50 * time.Millisecond)
	f()
	time.Sleep(50 * time.Millisecond)
	close(stop)
	n := <-published
	got := map[string]int{}
	total := 0
	for _, d := range drain(t, topo.Queue, time.Second) {
		got[string(d.Body)]++
		total++
	}
	t.Logf("%d first failures published, %d came back, %d distinct", n, total, len(got))
	if len(got) != n {
		t.Errorf("%d of %d first failures came back", len(got), n)
	}
	return total - len(got)
}

// drain takes messages from queue until none has come for quiet.
func drain(t *testing.T, queue string, quiet time.Duration) []amqp.Delivery {
	t.Helper()
	ch := brokertest.Channel(t)
	var out []amqp.Delivery
	last := time.Now()
	for time.Since(last) < quiet {
		d, ok, err := ch.Get(queue, true)
		if err != nil {
			t.Fatalf("get from %s: %v", queue, err)
		}
		if !ok {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		out, last = append(out, d), time.Now()
	}
	return out
}

// publishFirstFailures publishes to the retry exchange with keys it has no
// binding for, as the broker does with a first failure, until stop closes,
// and returns how many it published.
func publishFirstFailures(t *testing.T, topo dlxretry.Topology, stop <-chan struct{}) int {
	conn, err := amqp.Dial(brokertest.URL(t))
	if err != nil {
		t.Errorf("dial: %v", err)
		return 0
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err == nil {
		err = ch.Confirm(false)
	}
	for n := 0; ; n++ {
		select {
		case <-stop:
			return n
		default:
		}
		var dc *amqp.DeferredConfirmation
		if err == nil {
			dc, err = ch.PublishWithDeferredConfirm(topo.RetryExchange(), "order.created", false, false,
				amqp.Publishing{Body: []byte(fmt.Sprint(n))})
		}
		if err == nil && !dc.Wait() {
			err = errors.New("nacked")
		}
		if err != nil {
			t.Errorf("publish first failure %d: %v", n, err)
			return n
		}
	}
}

// RetireTiers deletes the old schedule's empty tiers at once, reports the
// ones where messages still wait, and deletes those once they have
// drained; the waiting message is handled and parked once.
func TestRetireTiers(t *testing.T) {
	long(t)
	for _, typ := range queueTypes {
		t.Run(string(typ), func(t *testing.T) {
			t.Parallel()
			before := dlxretry.Topology{Queue: brokertest.Name(t, "q"), Delays: delaysMS(100, 5000), MaxAttempts: 3,
				Type: typ, Exchange: brokertest.Name(t, "x")}
			after := before
			after.Delays = delaysMS(100, 200)
			declareTopology(t, before)
			rec := newRecorder(map[string]int{"waiting": -1})
			stopBefore := startConsumer(t, before, rec.handle, dlxretry.WithHooks(rec.hooks()))
			publish(t, before.Exchange, "order.created", "waiting")
			waitUntil(t, 5*time.Second, func() bool { return len(rec.deliveries("waiting")) == 2 })
			stopBefore()
			declareTopology(t, after)
			startConsumer(t, after, rec.handle, dlxretry.WithHooks(rec.hooks()))

			report := retire(t, after)
			if want := map[string]int{before.TierQueue(2): 1}; !reflect.DeepEqual(report.Waiting, want) || report.Done() || len(report.Retired) != 0 {
				t.Errorf("first report %+v, want %v waiting and nothing retired", report, want)
			}
			assertGone(t, before.TierQueue(1))
			checkOneCopyEach(t, after, rec, []string{"waiting"}, 3)

			report = retire(t, after)
			if !report.Done() || !reflect.DeepEqual(report.Retired, [][]time.Duration{before.Delays}) {
				t.Errorf("second report %+v, want done with %v retired", report, before.Delays)
			}
			assertGone(t, before.TierQueue(2))
			for i := 1; i <= after.Tiers(); i++ {
				if n := messageCount(t, after.TierQueue(i)); n != 0 {
					t.Errorf("%s holds %d messages", after.TierQueue(i), n)
				}
			}
		})
	}
}

// Going back to an older schedule: RetireTiers with it makes it the active
// one and retires the newer one, which a later Declare of the newer
// schedule (a replica of the rolled-back version) does not bring back.
func TestRollbackWithRetireTiers(t *testing.T) {
	long(t)
	t.Parallel()
	older := dlxretry.Topology{Queue: brokertest.Name(t, "q"), Delays: delaysMS(100, 200), MaxAttempts: 3,
		Exchange: brokertest.Name(t, "x")}
	newer := older
	newer.Delays = delaysMS(300, 400)
	declareTopology(t, older)
	declareTopology(t, newer)

	report := retire(t, older)
	if !report.Done() || !reflect.DeepEqual(report.Retired, [][]time.Duration{newer.Delays}) {
		t.Errorf("report %+v, want done with %v retired", report, newer.Delays)
	}
	if err := newer.Declare(context.Background(), brokertest.Channel(t)); err != nil {
		t.Fatal(err)
	}
	assertGone(t, newer.TierQueue(1))
	if got, want := firstRoutes(t, older), []string{older.TierQueue(1)}; !equal(got, want) {
		t.Errorf("%s binds %q, want %q", "first-retry exchanges", got, want)
	}

	// A consumer with the newer schedule retries on the older one.
	rec := newRecorder(map[string]int{"m": 1})
	startConsumer(t, newer, rec.handle, dlxretry.WithHooks(rec.hooks()))
	publish(t, newer.Exchange, "order.created", "m")
	waitN(t, rec.acks, 1, 10*time.Second)
	if got := rec.deliveries("m"); len(got) != 2 || got[1].routingKey != older.TierKey(1) {
		t.Errorf("deliveries %+v, want the retry to come from %s", got, older.TierKey(1))
	}
}

// Delete removes the tiers of every schedule the queue has had, and the
// schedule records.
func TestDeleteRemovesEverySchedule(t *testing.T) {
	t.Parallel()
	a := dlxretry.Topology{Queue: brokertest.Name(t, "q"), Delays: delaysMS(100, 200), MaxAttempts: 3}
	b := a
	b.Delays = delaysMS(300)
	declareTopology(t, a)
	declareTopology(t, b)
	if err := b.Delete(context.Background(), brokertest.Channel(t)); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{a.TierQueue(1), a.TierQueue(2), b.TierQueue(1), a.Queue,
		a.Queue + ".retry.schedules", a.Queue + ".retry.schedules.count"} {
		assertGone(t, q)
	}
}

func retire(t *testing.T, topo dlxretry.Topology) dlxretry.RetireReport {
	t.Helper()
	report, err := topo.RetireTiers(context.Background(), brokertest.Dial(t))
	if err != nil {
		t.Fatalf("RetireTiers: %v", err)
	}
	return report
}

func assertGone(t *testing.T, queue string) {
	t.Helper()
	_, err := brokertest.Channel(t).QueueDeclarePassive(queue, true, false, false, false, nil)
	var ae *amqp.Error
	if !errors.As(err, &ae) || ae.Code != amqp.NotFound {
		t.Errorf("queue %s: %v, want it gone", queue, err)
	}
}

// Many consumers declaring at once, as after a broker restart, take turns
// reading the schedule records and all succeed.
func TestManyDeclaresAtOnce(t *testing.T) {
	t.Parallel()
	topo := dlxretry.Topology{Queue: brokertest.Name(t, "q"), Delays: delaysMS(100, 200), MaxAttempts: 3}
	declareTopology(t, topo)
	newer := topo
	newer.Delays = delaysMS(300)
	declareTopology(t, newer)
	topos := make([]dlxretry.Topology, 40)
	for i := range topos {
		topos[i] = []dlxretry.Topology{topo, newer}[i%2]
	}
	start := time.Now()
	declareAll(t, topos...)
	t.Logf("%d declares in %v", len(topos), time.Since(start))
}
