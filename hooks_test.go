package dlxretry_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dlxretry/dlxretry"
	"github.com/dlxretry/dlxretry/internal/brokertest"
)

// hookLog records, per message body, the hooks called for it in order, and
// checks that each outcome hook gets the context OnDelivery returned.
type hookLog struct {
	t    *testing.T
	mu   sync.Mutex
	seen map[string][]string
	next int
	done chan string // a body, each time its message was acked or parked
}

type traceKey struct{}

func newHookLog(t *testing.T) *hookLog {
	return &hookLog{t: t, seen: map[string][]string{}, done: make(chan string, 100)}
}

func (l *hookLog) add(body, event string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seen[body] = append(l.seen[body], event)
}

func (l *hookLog) events(body string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.seen[body])
}

// outcome records an outcome hook and checks its ctx carries the trace id
// OnDelivery gave the same attempt.
func (l *hookLog) outcome(ctx context.Context, d *dlxretry.Delivery, event string) {
	id, _ := ctx.Value(traceKey{}).(string)
	if want := fmt.Sprintf("%s/%d", d.Body, d.Attempt); id != want {
		l.t.Errorf("%s of %s: ctx carries trace %q, want %q", event, d.Body, id, want)
	}
	l.add(string(d.Body), event)
}

func (l *hookLog) hooks() dlxretry.Hooks {
	return dlxretry.Hooks{
		OnDelivery: func(ctx context.Context, e dlxretry.DeliveryEvent) context.Context {
			l.add(string(e.Delivery.Body), fmt.Sprintf("delivery %d", e.Attempt))
			return context.WithValue(ctx, traceKey{}, fmt.Sprintf("%s/%d", e.Delivery.Body, e.Attempt))
		},
		OnAck: func(ctx context.Context, e dlxretry.AckEvent) {
			l.outcome(ctx, e.Delivery, "ack")
			l.done <- string(e.Delivery.Body)
		},
		OnRetry: func(ctx context.Context, e dlxretry.RetryEvent) {
			l.outcome(ctx, e.Delivery, fmt.Sprintf("retry tier %d", e.Tier))
		},
		OnPark: func(ctx context.Context, e dlxretry.ParkEvent) {
			l.outcome(ctx, e.Delivery, "park "+string(e.Reason))
			l.done <- string(e.Delivery.Body)
		},
		OnRelease: func(ctx context.Context, e dlxretry.ReleaseEvent) {
			l.outcome(ctx, e.Delivery, "release")
			l.done <- string(e.Delivery.Body)
		},
	}
}

// Every delivery gets OnDelivery and then exactly one outcome hook, with the
// context OnDelivery returned, which the handler gets too.
func TestHooksReportEachDeliveryOnce(t *testing.T) {
	t.Parallel()
	topo := declare(t, dlxretry.Classic, delaysMS(50, 50), 3)
	l := newHookLog(t)
	h := func(ctx context.Context, d *dlxretry.Delivery) error {
		if id, _ := ctx.Value(traceKey{}).(string); id != fmt.Sprintf("%s/%d", d.Body, d.Attempt) {
			t.Errorf("handler of %s attempt %d: ctx carries trace %q", d.Body, d.Attempt, id)
		}
		switch {
		case string(d.Body) == "perm":
			return dlxretry.Permanent(errTest)
		case string(d.Body) == "fail", string(d.Body) == "once" && d.Attempt == 1:
			return errTest
		}
		return nil
	}
	run(t, topo, h, dlxretry.WithHooks(l.hooks()))
	publish(t, topo.Exchange, "k", "ok", "once", "perm", "fail")
	waitN(t, l.done, 4, 10*time.Second)

	want := map[string][]string{
		"ok":   {"delivery 1", "ack"},
		"once": {"delivery 1", "retry tier 1", "delivery 2", "ack"},
		"perm": {"delivery 1", "park permanent"},
		"fail": {"delivery 1", "retry tier 1", "delivery 2", "retry tier 2", "delivery 3", "park exhausted"},
	}
	for body, w := range want {
		if got := l.events(body); !slices.Equal(got, w) {
			t.Errorf("%s: hooks %q, want %q", body, got, w)
		}
	}
}

// A handler that fails because shutdown cancelled its ctx (the shutdown
// timeout passed) leaves the delivery to the broker, and OnRelease says so.
func TestHooksReportAReleaseOnShutdown(t *testing.T) {
	t.Parallel()
	topo := declare(t, dlxretry.Classic, delaysMS(50), 2)
	l := newHookLog(t)
	started := make(chan struct{}, 1)
	h := func(ctx context.Context, d *dlxretry.Delivery) error {
		started <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	}
	c, err := dlxretry.NewConsumer(brokertest.URL(t), topo, h, dlxretry.WithHooks(l.hooks()),
		dlxretry.WithShutdownTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	publish(t, topo.Exchange, "k", "slow")
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler never ran")
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, dlxretry.ErrShutdownTimeout) {
			t.Fatalf("Run: %v, want ErrShutdownTimeout", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	waitN(t, l.done, 1, 5*time.Second)
	if got, want := l.events("slow"), []string{"delivery 1", "release"}; !slices.Equal(got, want) {
		t.Errorf("hooks %q, want %q", got, want)
	}
	if n := messageCount(t, topo.Queue); n != 1 {
		t.Errorf("work queue holds %d messages after shutdown, want the released one", n)
	}
}
