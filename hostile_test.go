package dlxretry_test

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dlxretry/dlxretry"
	"github.com/dlxretry/dlxretry/internal/brokertest"
	amqp "github.com/rabbitmq/amqp091-go"
)

// publishMsg publishes one message as given, waiting for its confirm.
func publishMsg(t *testing.T, exchange, key string, msg amqp.Publishing) {
	t.Helper()
	ch := brokertest.Channel(t)
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	dc, err := ch.PublishWithDeferredConfirm(exchange, key, false, false, msg)
	if err != nil {
		t.Fatalf("publish %s: %v", msg.Body, err)
	}
	if !dc.Wait() {
		t.Fatalf("publish %s: nacked", msg.Body)
	}
}

// rejectedEntry is an x-death entry for queue's rejections with count.
func rejectedEntry(queue string, count any) amqp.Table {
	return amqp.Table{"queue": queue, "reason": "rejected", "count": count, "exchange": "x",
		"routing-keys": []any{"k"}, "time": time.Now().Truncate(time.Second)}
}

// counter counts handler calls and outcomes per message body.
type counter struct {
	mu       sync.Mutex
	calls    map[string][]int // attempts seen
	acks     map[string]int
	parks    map[string]int
	parkErrs map[string]string
	fail     func(body string) bool
	outcomes chan string
}

func newCounter(fail func(body string) bool) *counter {
	return &counter{calls: map[string][]int{}, acks: map[string]int{}, parks: map[string]int{},
		parkErrs: map[string]string{}, fail: fail, outcomes: make(chan string, 1000)}
}

func (c *counter) handle(_ context.Context, d *dlxretry.Delivery) error {
	c.mu.Lock()
	c.calls[string(d.Body)] = append(c.calls[string(d.Body)], d.Attempt)
	c.mu.Unlock()
	if c.fail(string(d.Body)) {
		return errTest
	}
	return nil
}

func (c *counter) hooks() dlxretry.Hooks {
	return dlxretry.Hooks{
		OnAck: func(_ context.Context, e dlxretry.AckEvent) {
			c.mu.Lock()
			c.acks[string(e.Delivery.Body)]++
			c.mu.Unlock()
			c.outcomes <- string(e.Delivery.Body)
		},
		OnPark: func(_ context.Context, e dlxretry.ParkEvent) {
			c.mu.Lock()
			c.parks[string(e.Delivery.Body)]++
			c.parkErrs[string(e.Delivery.Body)] = e.Err.Error()
			c.mu.Unlock()
			c.outcomes <- string(e.Delivery.Body)
		},
	}
}

func (c *counter) snapshot(body string) (calls []int, acks, parks int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int(nil), c.calls[body]...), c.acks[body], c.parks[body]
}

// A publisher can write any x-death header. One the broker cannot have
// written is never handed to the broker's dead-lettering (RabbitMQ 3.10
// crashes the queue on a string or float count, or an entry that is not a
// table): the message is parked at once, confirmed, with the header moved
// aside, and the queue goes on working.
func TestHostileDeathHistoryIsParked(t *testing.T) {
	for _, typ := range queueTypes {
		t.Run(string(typ), func(t *testing.T) {
			t.Parallel()
			topo := declare(t, typ, delaysMS(50), 3)
			q := topo.Queue
			cases := map[string]any{
				"string-count":   []any{rejectedEntry(q, "1")},
				"float-count":    []any{rejectedEntry(q, 2.5)},
				"not-a-table":    []any{"boom"},
				"max-int64":      []any{rejectedEntry(q, int64(math.MaxInt64))},
				"negative-count": []any{rejectedEntry(q, int64(-1_000_000))},
				"far-beyond":     []any{rejectedEntry(q, int64(10_000))},
				"not-an-array":   "x-death",
				"other-queue":    []any{amqp.Table{"queue": "elsewhere", "reason": "expired", "count": "7"}},
			}
			c := newCounter(func(string) bool { return true })
			run(t, topo, c.handle, dlxretry.WithHooks(c.hooks()))
			for body, xdeath := range cases {
				publishMsg(t, topo.Exchange, "k", amqp.Publishing{Body: []byte(body), MessageId: body,
					DeliveryMode: amqp.Persistent, Headers: amqp.Table{"x-death": xdeath}})
			}
			waitN(t, c.outcomes, len(cases), 10*time.Second)
			parked := getAll(t, topo.ParkingQueue(), len(cases), 5*time.Second)
			for _, p := range parked {
				body := string(p.Body)
				calls, acks, parks := c.snapshot(body)
				if len(calls) != 0 || acks != 0 || parks != 1 {
					t.Errorf("%s: handler ran %d times, %d acks, %d parks; want 0, 0, 1", body, len(calls), acks, parks)
				}
				if e, _ := p.Headers[dlxretry.HeaderError].(string); !strings.Contains(e, "unreadable x-death") {
					t.Errorf("%s: parked with error %q", body, e)
				}
				if _, ok := p.Headers["x-death"]; ok {
					t.Errorf("%s: parked copy still has x-death", body)
				}
				if s, _ := p.Headers[dlxretry.HeaderUnreadableDeaths].(string); s == "" {
					t.Errorf("%s: parked copy lacks %s", body, dlxretry.HeaderUnreadableDeaths)
				}
			}
			// The queue still works.
			c.fail = func(b string) bool { return b != "after" }
			publish(t, topo.Exchange, "k", "after")
			waitN(t, c.outcomes, 1, 10*time.Second)
			if _, acks, _ := c.snapshot("after"); acks != 1 {
				t.Errorf("a message after the hostile ones was acked %d times", acks)
			}
			assertEmpty(t, topo)
		})
	}
}

// Well-formed but forged counts do not bend the budget: a message carrying
// an x-death that says it already failed (on RabbitMQ 3.x the broker would
// go on counting from it) still runs exactly MaxAttempts times, attempts
// 1, 2, 3; a forged x-delivery-count on a classic queue is ignored.
func TestForgedCountsDoNotBendTheBudget(t *testing.T) {
	for _, typ := range queueTypes {
		t.Run(string(typ), func(t *testing.T) {
			t.Parallel()
			topo := declare(t, typ, delaysMS(50, 100), 3)
			c := newCounter(func(b string) bool { return b != "delivery-count" })
			run(t, topo, c.handle, dlxretry.WithHooks(c.hooks()))
			for body, count := range map[string]int64{"count-2": 2, "count-100": 100} {
				publishMsg(t, topo.Exchange, "k", amqp.Publishing{Body: []byte(body), DeliveryMode: amqp.Persistent,
					Headers: amqp.Table{"x-death": []any{rejectedEntry(topo.Queue, count)}}})
			}
			publishMsg(t, topo.Exchange, "k", amqp.Publishing{Body: []byte("delivery-count"), DeliveryMode: amqp.Persistent,
				Headers: amqp.Table{"x-delivery-count": int64(99)}})
			waitN(t, c.outcomes, 3, 15*time.Second)
			for _, body := range []string{"count-2", "count-100"} {
				calls, acks, parks := c.snapshot(body)
				if want := []int{1, 2, 3}; !equalInts(calls, want) || acks != 0 || parks != 1 {
					t.Errorf("%s: attempts %v, %d acks, %d parks; want %v, 0, 1", body, calls, acks, parks, want)
				}
			}
			if calls, acks, _ := c.snapshot("delivery-count"); !equalInts(calls, []int{1}) || acks != 1 {
				t.Errorf("forged x-delivery-count: attempts %v, %d acks; want [1], 1", calls, acks)
			}
			getAll(t, topo.ParkingQueue(), 2, 5*time.Second)
			assertEmpty(t, topo)
		})
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// A message published with a routing key in the tier keys' namespace still
// waits in tier 1 after its first failure, not in a later tier.
func TestTierKeyCollisionEntersTierOne(t *testing.T) {
	t.Parallel()
	topo := declare(t, dlxretry.Classic, delaysMS(50, 5000, 5000), 4)
	var mu sync.Mutex
	second := map[string]dlxretry.Deaths{}
	h := func(_ context.Context, d *dlxretry.Delivery) error {
		if d.Attempt == 1 {
			return errTest
		}
		mu.Lock()
		second[string(d.Body)] = d.Deaths
		mu.Unlock()
		if d.Attempt != 2 {
			t.Errorf("%s: second delivery has Attempt %d", d.Body, d.Attempt)
		}
		if k := d.OriginalRoutingKey(); k != string(d.Body) {
			t.Errorf("original routing key %q, want %q", k, d.Body)
		}
		return nil
	}
	c := newCounter(nil)
	run(t, topo, h, dlxretry.WithHooks(c.hooks()))
	keys := []string{topo.TierKey(1), topo.TierKey(2), topo.Queue + ".tier.x"}
	for _, k := range keys {
		publish(t, topo.Exchange, k, k)
	}
	waitN(t, c.outcomes, len(keys), 4*time.Second) // later tiers would take 5 s
	for _, k := range keys {
		deaths := second[k]
		if _, ok := deaths.Find(topo.TierQueue(1), dlxretry.ReasonExpired); !ok || len(deaths) != 1 {
			t.Errorf("key %s: deaths before the second attempt %+v, want tier 1's only", k, deaths)
		}
	}
	assertEmpty(t, topo)
}

// A handler or hook that acks, nacks or rejects the delivery itself changes
// nothing: the library settles it once, from the handler's return value.
func TestHandlerCannotSettle(t *testing.T) {
	t.Parallel()
	topo := declare(t, dlxretry.Classic, delaysMS(50), 3)
	var calls int
	h := func(_ context.Context, d *dlxretry.Delivery) error {
		calls++
		for _, err := range []error{d.Ack(false), d.Nack(false, true), d.Reject(true)} {
			if !errors.Is(err, dlxretry.ErrSettledByLibrary) {
				t.Errorf("handler's settle returned %v", err)
			}
		}
		if d.Attempt == 1 {
			return errTest
		}
		return nil
	}
	c := newCounter(nil)
	hooks := c.hooks()
	onAck := hooks.OnAck
	hooks.OnAck = func(ctx context.Context, e dlxretry.AckEvent) {
		if err := e.Delivery.Ack(false); !errors.Is(err, dlxretry.ErrSettledByLibrary) {
			t.Errorf("hook's ack returned %v", err)
		}
		onAck(ctx, e)
	}
	run(t, topo, h, dlxretry.WithHooks(hooks))
	publish(t, topo.Exchange, "k", "m", "n")
	waitN(t, c.outcomes, 2, 5*time.Second)
	if calls != 4 {
		t.Errorf("handler ran %d times, want 4", calls)
	}
	select {
	case o := <-c.outcomes:
		t.Errorf("extra outcome for %s", o)
	case <-time.After(300 * time.Millisecond):
	}
	assertEmpty(t, topo)
}
