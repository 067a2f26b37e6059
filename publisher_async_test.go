package dlxretry_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dlxretry/dlxretry"
	"github.com/dlxretry/dlxretry/internal/brokertest"
	amqp "github.com/rabbitmq/amqp091-go"
)

// One goroutine keeps many PublishAsync calls in flight to a queue, to
// nowhere and to a queue that nacks, interleaved: each Confirmation tells
// its own outcome, and exactly the routable messages arrive, in order.
func TestPublishAsyncOutcomes(t *testing.T) {
	t.Parallel()
	topo := declare(t, dlxretry.Classic, delaysMS(100), 3)
	full := brokertest.Queue(t, "full", amqp.Table{"x-max-length": int32(0), "x-overflow": "reject-publish"})
	pub := newPublisher(t, brokertest.Name(t, "pub"))
	ctx := context.Background()
	type sent struct {
		body string
		c    *dlxretry.Confirmation
		want error
	}
	const n = 600
	var all []sent
	for i := range n {
		body := fmt.Sprint("m-", i)
		exchange, key, want := topo.Exchange, "k", error(nil)
		switch i % 5 {
		case 1:
			exchange, want = topo.RequeueExchange(), dlxretry.ErrUnroutable // no binding for "k"
		case 3:
			exchange, key, want = "", full, dlxretry.ErrNacked
		}
		c, err := pub.PublishAsync(ctx, exchange, key, amqpMsg(body))
		if err != nil {
			t.Fatalf("PublishAsync %s: %v", body, err)
		}
		all = append(all, sent{body, c, want})
	}
	var routed []string
	for _, s := range all {
		<-s.c.Done()
		err := s.c.Wait(ctx)
		switch {
		case s.want == nil && err != nil:
			t.Errorf("%s: %v, want nil", s.body, err)
		case s.want != nil && !errors.Is(err, s.want):
			t.Errorf("%s: %v, want %v", s.body, err, s.want)
		case s.want == nil:
			routed = append(routed, s.body)
		}
		if again := s.c.Wait(ctx); fmt.Sprint(again) != fmt.Sprint(err) {
			t.Errorf("%s: Wait again: %v, first %v", s.body, again, err)
		}
	}
	got := getAll(t, topo.Queue, len(routed), 10*time.Second)
	for i, d := range got {
		if string(d.Body) != routed[i] {
			t.Fatalf("message %d in the queue is %s, want %s: one goroutine's messages arrive in order", i, d.Body, routed[i])
		}
	}
}

// While the broker reads nothing, PublishAsync stops at 1,024 messages in
// flight and waits (here until its ctx ends); once the broker reads again,
// Confirmations nobody waited for free their places, and every message is
// confirmed.
func TestPublishAsyncBackpressure(t *testing.T) {
	t.Parallel()
	q := brokertest.Queue(t, "q", nil)
	proxy := startGateProxy(t)
	pub, err := dlxretry.NewPublisher(proxy.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	ctx := context.Background()
	if err := pub.Publish(ctx, "", q, amqpMsg("warm-up")); err != nil {
		t.Fatal(err)
	}
	proxy.Close()
	var cs []*dlxretry.Confirmation
	var blocked error
	for i := 0; blocked == nil && i < 2000; i++ {
		short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		c, err := pub.PublishAsync(short, "", q, amqpMsg(fmt.Sprint("m-", i)))
		cancel()
		if err != nil {
			blocked = err
			break
		}
		cs = append(cs, c)
	}
	if !errors.Is(blocked, context.DeadlineExceeded) || len(cs) != 1024 {
		t.Fatalf("PublishAsync with the broker reading nothing: %d sent, then %v; want 1024, then the deadline", len(cs), blocked)
	}
	proxy.Open()
	// Nobody waits for the first ones: later publishes take their outcome.
	for i := range 1000 {
		c, err := pub.PublishAsync(ctx, "", q, amqpMsg(fmt.Sprint("n-", i)))
		if err != nil {
			t.Fatalf("PublishAsync once the broker reads: %v", err)
		}
		cs = append(cs, c)
	}
	for i, c := range cs {
		if err := c.Wait(ctx); err != nil {
			t.Fatalf("confirmation %d: %v", i, err)
		}
	}
	if n := messageCount(t, q); n != len(cs)+1 {
		t.Errorf("queue holds %d, want %d", n, len(cs)+1)
	}
}

// OnPublish reports every PublishAsync once, whether or not anyone waits
// for its Confirmation: the outcomes nobody took are taken by later
// publishes, or by Close.
func TestPublishAsyncReportsEachOnce(t *testing.T) {
	t.Parallel()
	q := brokertest.Queue(t, "q", nil)
	var mu sync.Mutex
	var ok, failed int
	pub, err := dlxretry.NewPublisher(brokertest.URL(t), dlxretry.WithHooks(dlxretry.Hooks{
		OnPublish: func(_ context.Context, e dlxretry.PublishEvent) {
			mu.Lock()
			defer mu.Unlock()
			if e.Err == nil && e.Exchange == "" && e.RoutingKey == q {
				ok++
			} else if errors.Is(e.Err, dlxretry.ErrUnroutable) {
				failed++
			}
		},
	}))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const n = 300
	var waited []*dlxretry.Confirmation
	for i := range n {
		key := q
		if i%3 == 0 {
			key = "nowhere"
		}
		c, err := pub.PublishAsync(ctx, "", key, amqpMsg(fmt.Sprint("m-", i)))
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			waited = append(waited, c)
		}
	}
	for _, c := range waited {
		_ = c.Wait(ctx)
	}
	if err := pub.Close(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if ok != n-n/3 || failed != n/3 {
		t.Errorf("OnPublish saw %d confirmed and %d unroutable, want %d and %d", ok, failed, n-n/3, n/3)
	}
}

// PublishAsync refuses what it cannot send, without a Confirmation.
func TestPublishAsyncRefusals(t *testing.T) {
	t.Parallel()
	pub := newPublisher(t, brokertest.Name(t, "pub"))
	ctx := context.Background()
	var ce *dlxretry.ConfigError
	if _, err := pub.PublishAsync(ctx, "", "q", amqp.Publishing{Expiration: "soon"}); !errors.As(err, &ce) {
		t.Errorf("an Expiration that is not a number: %v, want a *ConfigError", err)
	}
	if _, err := pub.PublishAsync(ctx, "", "q", amqp.Publishing{Headers: amqp.Table{"n": uint64(1)}}); !errors.As(err, &ce) {
		t.Errorf("a header of type uint64: %v, want a *ConfigError", err)
	}
	var ae *amqp.Error
	if _, err := pub.PublishAsync(ctx, brokertest.Name(t, "missing"), "k", amqp.Publishing{}); !errors.As(err, &ae) || ae.Code != amqp.NotFound {
		t.Errorf("an exchange that does not exist: %v, want the broker's 404", err)
	}
	if err := pub.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := pub.PublishAsync(ctx, "", "q", amqp.Publishing{}); !errors.Is(err, dlxretry.ErrClosed) {
		t.Errorf("after Close: %v, want ErrClosed", err)
	}
	var zero dlxretry.Confirmation
	if err := zero.Wait(ctx); !errors.As(err, &ce) {
		t.Errorf("Wait on a zero Confirmation: %v, want a *ConfigError", err)
	}
}

// Wait returns when its ctx ends, and the message stays in flight.
func TestConfirmationWaitBoundedByCtx(t *testing.T) {
	t.Parallel()
	q := brokertest.Queue(t, "q", nil)
	proxy := startGateProxy(t)
	pub, err := dlxretry.NewPublisher(proxy.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	ctx := context.Background()
	if err := pub.Publish(ctx, "", q, amqpMsg("warm-up")); err != nil {
		t.Fatal(err)
	}
	proxy.Close()
	c, err := pub.PublishAsync(ctx, "", q, amqpMsg("m"))
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if err := c.Wait(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait while the broker reads nothing: %v, want the deadline", err)
	}
	proxy.Open()
	if err := c.Wait(ctx); err != nil {
		t.Errorf("Wait once the broker reads: %v", err)
	}
}
