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

// Many goroutines publish at once, to a queue and to nowhere, interleaved:
// each learns its own outcome, and exactly the routable ones arrive.
func TestPublishConcurrentOutcomes(t *testing.T) {
	t.Parallel()
	topo := declare(t, dlxretry.Classic, delaysMS(100), 3)
	nowhere := brokertest.Name(t, "nowhere")
	if err := brokertest.Channel(t).ExchangeDeclare(nowhere, "direct", false, true, false, false, nil); err != nil {
		t.Fatal(err)
	}
	pub := newPublisher(t, brokertest.Name(t, "pub"))
	const goroutines, each = 20, 50
	var wg sync.WaitGroup
	errs := make(chan error, goroutines*each)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				body := fmt.Sprintf("g%d-%d", g, i)
				exchange := topo.Exchange
				if i%3 == 0 {
					exchange = nowhere
				}
				err := pub.Publish(context.Background(), exchange, "k", amqp.Publishing{Body: []byte(body)})
				switch {
				case exchange == nowhere && !errors.Is(err, dlxretry.ErrUnroutable):
					errs <- fmt.Errorf("%s to nowhere: %v, want ErrUnroutable", body, err)
				case exchange != nowhere && err != nil:
					errs <- fmt.Errorf("%s: %v", body, err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	routable := goroutines * (each - (each+2)/3)
	got := getAll(t, topo.Queue, routable, 10*time.Second)
	for _, d := range got {
		if d.DeliveryMode != amqp.Persistent || d.MessageId == "" {
			t.Fatalf("message %s: delivery mode %d, message id %q; want persistent with an id", d.Body, d.DeliveryMode, d.MessageId)
		}
	}
}

// Publishes that share a MessageId are still told apart.
func TestPublishSameMessageID(t *testing.T) {
	t.Parallel()
	topo := declare(t, dlxretry.Classic, delaysMS(100), 3)
	pub := newPublisher(t, brokertest.Name(t, "pub"))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var unroutable, ok int
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			exchange := topo.Exchange
			if i%2 == 0 {
				exchange = topo.RequeueExchange() // no binding for "k": returned
			}
			err := pub.Publish(context.Background(), exchange, "k", amqp.Publishing{MessageId: "same"})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil && exchange == topo.Exchange:
				ok++
			case errors.Is(err, dlxretry.ErrUnroutable) && exchange != topo.Exchange:
				unroutable++
			default:
				t.Errorf("publish %d to %s: %v", i, exchange, err)
			}
		}()
	}
	wg.Wait()
	if ok != 20 || unroutable != 20 || messageCount(t, topo.Queue) != 20 {
		t.Errorf("%d ok, %d unroutable, %d queued; want 20 each", ok, unroutable, messageCount(t, topo.Queue))
	}
}

// A broker nack (a full queue that rejects publishes) is an error.
func TestPublishNacked(t *testing.T) {
	t.Parallel()
	q := brokertest.Name(t, "full")
	ch := brokertest.Channel(t)
	if _, err := ch.QueueDeclare(q, false, true, false, false, amqp.Table{"x-max-length": int32(0), "x-overflow": "reject-publish"}); err != nil {
		t.Fatal(err)
	}
	pub := newPublisher(t, brokertest.Name(t, "pub"))
	err := pub.Publish(context.Background(), "", q, amqp.Publishing{Body: []byte("x")})
	if !errors.Is(err, dlxretry.ErrNacked) {
		t.Fatalf("Publish to a full queue: %v, want ErrNacked", err)
	}
}

func TestPublishAfterClose(t *testing.T) {
	t.Parallel()
	pub := newPublisher(t, brokertest.Name(t, "pub"))
	if err := pub.Publish(context.Background(), "amq.direct", "nothing", amqp.Publishing{}); !errors.Is(err, dlxretry.ErrUnroutable) {
		t.Fatalf("first publish: %v", err)
	}
	if err := pub.Close(); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(context.Background(), "amq.direct", "nothing", amqp.Publishing{}); !errors.Is(err, dlxretry.ErrClosed) {
		t.Fatalf("publish after Close: %v, want ErrClosed", err)
	}
}

// With no broker to reach, Publish gives up when its ctx ends and says why.
func TestPublishUnreachable(t *testing.T) {
	t.Parallel()
	var disconnects int
	pub, err := dlxretry.NewPublisher("amqp://guest:secret@127.0.0.1:1/",
		dlxretry.WithReconnectDelay(10*time.Millisecond, 50*time.Millisecond),
		dlxretry.WithHooks(dlxretry.Hooks{OnDisconnect: func(e dlxretry.DisconnectEvent) {
			disconnects++
			if e.Broker != "amqp://guest:xxxxx@127.0.0.1:1/" {
				t.Errorf("event shows broker %q, want the password hidden", e.Broker)
			}
		}}))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err = pub.Publish(ctx, "x", "k", amqp.Publishing{})
	if !errors.Is(err, context.DeadlineExceeded) || disconnects < 2 {
		t.Fatalf("Publish: %v after %d attempts; want the deadline after several", err, disconnects)
	}
}

// Publishing across cuts of the publisher's connection: every Publish that
// returned nil is in the queue.
func TestPublishAcrossConnectionCuts(t *testing.T) {
	t.Parallel()
	topo := declare(t, dlxretry.Classic, delaysMS(100), 3)
	name := brokertest.Name(t, "pub")
	pub := newPublisher(t, name)
	cutter := brokertest.StartCutter(t, name, 100*time.Millisecond)
	confirmed := map[string]bool{}
	var failed int
	// Publish for 4s, and on until two cuts have landed (rabbitmqctl is slow
	// on a loaded machine), within 30s.
	start := time.Now()
	for i := 0; time.Since(start) < 4*time.Second || (cutter.Cuts() < 2 && time.Since(start) < 30*time.Second); i++ {
		body := fmt.Sprintf("p-%d", i)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := pub.Publish(ctx, topo.Exchange, "k", amqpMsg(body))
		cancel()
		if err != nil {
			failed++
			continue
		}
		confirmed[body] = true
	}
	cuts, err := cutter.Stop()
	if err != nil {
		t.Fatal(err)
	}
	queued := map[string]bool{}
	for _, d := range getAll(t, topo.Queue, messageCount(t, topo.Queue), 10*time.Second) {
		queued[string(d.Body)] = true
	}
	for body := range confirmed {
		if !queued[body] {
			t.Errorf("%s was confirmed but is not in the queue", body)
		}
	}
	t.Logf("%d confirmed, %d failed, %d cuts, %d queued", len(confirmed), failed, cuts, len(queued))
	if cuts == 0 {
		t.Error("no connection was cut")
	}
}
