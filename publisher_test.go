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
	nowhere := brokertest.Exchange(t, "nowhere", "direct")
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
	q := brokertest.Queue(t, "full", amqp.Table{"x-max-length": int32(0), "x-overflow": "reject-publish"})
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
	long(t)
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
	// One basic.get per message: thousands take a while on a loaded machine.
	for _, d := range getAll(t, topo.Queue, messageCount(t, topo.Queue), time.Minute) {
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

// Close interrupts a Publish that is reconnecting, in a backoff sleep or in
// a dial that hangs, and returns at once; the Publish returns ErrClosed.
func TestPublisherCloseInterruptsReconnect(t *testing.T) {
	t.Parallel()
	for name, addr := range map[string]string{"backoff": "127.0.0.1:1", "dial": silentListener(t)} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			tried := make(chan struct{}, 100)
			pub, err := dlxretry.NewPublisher("amqp://guest:guest@"+addr+"/",
				dlxretry.WithReconnectDelay(time.Minute, time.Minute),
				dlxretry.WithHooks(dlxretry.Hooks{OnDisconnect: func(dlxretry.DisconnectEvent) { tried <- struct{}{} }}))
			if err != nil {
				t.Fatal(err)
			}
			published := make(chan error, 1)
			go func() { published <- pub.Publish(context.Background(), "x", "k", amqp.Publishing{}) }()
			if name == "backoff" {
				<-tried // now sleeping a minute
			} else {
				time.Sleep(200 * time.Millisecond) // now in the handshake
			}
			returnsWithin(t, time.Second, "Close", pub.Close)
			err = returnsWithin(t, time.Second, "Publish after Close", func() error { return <-published })
			if !errors.Is(err, dlxretry.ErrClosed) {
				t.Errorf("Publish returned %v, want ErrClosed", err)
			}
		})
	}
}

// A zero Publisher says so instead of blocking.
func TestZeroPublisher(t *testing.T) {
	t.Parallel()
	var p dlxretry.Publisher
	err := returnsWithin(t, time.Second, "Publish on a zero Publisher", func() error {
		return p.Publish(context.Background(), "", "q", amqp.Publishing{})
	})
	var ce *dlxretry.ConfigError
	if !errors.As(err, &ce) {
		t.Errorf("Publish on a zero Publisher: %v, want a *ConfigError", err)
	}
	returnsWithin(t, time.Second, "Close on a zero Publisher", p.Close)
}

// A publish to an exchange that does not exist fails alone, with the
// broker's 404, while many good publishes run beside it; a message larger
// than the broker takes fails alone too.
func TestPublishBadMessageFailsAlone(t *testing.T) {
	t.Parallel()
	topo := declare(t, dlxretry.Classic, delaysMS(100), 3)
	pub := newPublisher(t, brokertest.Name(t, "pub"))
	missing := brokertest.Name(t, "missing")
	huge := amqp.Publishing{Body: make([]byte, 130<<20)} // over RabbitMQ's max_message_size (128 MiB on 3.x, 16 MiB on 4.x)
	if testing.Short() {
		huge.Body = nil
	}
	const good = 200
	var wg sync.WaitGroup
	start := make(chan struct{})
	goodErrs := make(chan error, good)
	for i := range good {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			goodErrs <- pub.Publish(context.Background(), topo.Exchange, "k", amqpMsg(fmt.Sprint("good-", i)))
		}()
	}
	var badErr, hugeErr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		<-start
		for range 5 {
			badErr = pub.Publish(context.Background(), missing, "k", amqpMsg("bad"))
		}
	}()
	go func() {
		defer wg.Done()
		<-start
		if huge.Body != nil {
			hugeErr = pub.Publish(context.Background(), topo.Exchange, "k", huge)
		}
	}()
	close(start)
	wg.Wait()
	close(goodErrs)
	failed := map[string]int{}
	for err := range goodErrs {
		if err != nil {
			failed[err.Error()]++
		}
	}
	if len(failed) > 0 {
		t.Errorf("good publishes failed beside the bad ones: %v", failed)
	}
	var ae *amqp.Error
	if !errors.As(badErr, &ae) || ae.Code != amqp.NotFound {
		t.Errorf("publish to a missing exchange: %v, want the broker's 404", badErr)
	}
	if huge.Body != nil && (!errors.As(hugeErr, &ae) || ae.Code != amqp.PreconditionFailed) {
		t.Errorf("publish of 130 MB: %v, want the broker's refusal (406)", hugeErr)
	}
	if n := messageCount(t, topo.Queue); n != good {
		t.Errorf("queue holds %d, want %d", n, good)
	}
}

// A publish that gave up before its return arrived leaves nothing behind: a
// later, routed publish with the same MessageId succeeds.
func TestPublishLeftoverReturn(t *testing.T) {
	t.Parallel()
	topo := declare(t, dlxretry.Classic, delaysMS(100), 3)
	proxy := startGateProxy(t)
	pub, err := dlxretry.NewPublisher(proxy.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	ctx := context.Background()
	nowhere := topo.RequeueExchange() // exists, and has no binding for "k"
	if err := pub.Publish(ctx, nowhere, "k", amqpMsg("warm-up")); !errors.Is(err, dlxretry.ErrUnroutable) {
		t.Fatalf("warm-up publish: %v, want ErrUnroutable", err)
	}
	proxy.Close() // the broker gets nothing more for now
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := pub.Publish(short, nowhere, "k", amqpMsg("m")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("publish while the broker reads nothing: %v, want the deadline", err)
	}
	proxy.Open() // the broker returns the message now
	if err := pub.Publish(ctx, topo.Exchange, "k", amqpMsg("m")); err != nil {
		t.Errorf("routed publish with the same MessageId: %v", err)
	}
	if n := messageCount(t, topo.Queue); n != 1 {
		t.Errorf("queue holds %d, want 1", n)
	}
}

// Publish and Close end when ctx ends even if the broker stops reading right
// after the handshake: opening the channel waits in vain.
func TestPublishChannelOpenBoundedByCtx(t *testing.T) {
	t.Parallel()
	proxy := startGateProxy(t)
	proxy.CloseAfterHandshake()
	pub, err := dlxretry.NewPublisher(proxy.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	err = returnsWithin(t, 3*time.Second, "Publish", func() error {
		return pub.Publish(ctx, "", "q", amqp.Publishing{})
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Publish: %v, want the deadline", err)
	}
	returnsWithin(t, 3*time.Second, "Close", pub.Close)
}
