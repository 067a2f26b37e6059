package dlxretry_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dlxretry/dlxretry"
	"github.com/dlxretry/dlxretry/internal/brokertest"
	amqp "github.com/rabbitmq/amqp091-go"
)

// A Publisher whose connection the broker closes reports it at once: a log
// line and OnDisconnect with an error wrapping ErrConnectionLost and the
// broker's reason, as the Hooks doc promises, not only failed dials.
func TestPublisherReportsLostConnection(t *testing.T) {
	long(t)
	t.Parallel()
	queue := brokertest.Queue(t, "q", nil)
	name := brokertest.Name(t, "pub")
	lost := make(chan dlxretry.DisconnectEvent, 10)
	logger, logs := newLog()
	pub, err := dlxretry.NewPublisher(brokertest.URL(t), dlxretry.WithConnectionName(name), dlxretry.WithLogger(logger),
		dlxretry.WithHooks(dlxretry.Hooks{OnDisconnect: func(e dlxretry.DisconnectEvent) { lost <- e }}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pub.Close() })
	ctx := context.Background()
	if err := pub.Publish(ctx, "", queue, amqpMsg("one")); err != nil {
		t.Fatal(err)
	}

	if n, err := brokertest.CloseConnections(name); err != nil || n != 1 {
		t.Fatalf("closed %d connections: %v", n, err)
	}
	var e dlxretry.DisconnectEvent
	select {
	case e = <-lost:
	case <-time.After(10 * time.Second):
		t.Fatalf("no OnDisconnect 10s after the broker closed the connection; log:\n%s", logs)
	}
	var ae *amqp.Error
	if !errors.Is(e.Err, dlxretry.ErrConnectionLost) || !errors.As(e.Err, &ae) || ae.Code != amqp.ConnectionForced {
		t.Errorf("OnDisconnect error %v, want ErrConnectionLost wrapping the broker's 320", e.Err)
	}
	if e.Broker != redactedURL(t) {
		t.Errorf("OnDisconnect broker %q, want %q", e.Broker, redactedURL(t))
	}
	if !strings.Contains(logs.String(), `msg="connection lost"`) {
		t.Errorf("no log line for the lost connection; log:\n%s", logs)
	}

	if err := pub.Publish(ctx, "", queue, amqpMsg("two")); err != nil {
		t.Fatalf("publish after the loss: %v", err)
	}
	select {
	case e := <-lost:
		t.Errorf("a second OnDisconnect for one loss: %v", e.Err)
	default:
	}
	if got := getAll(t, queue, 2, 5*time.Second); len(got) != 2 {
		t.Errorf("%d messages in the queue, want 2", len(got))
	}
}

// A Consumer whose connection is lost says so: its session's error wraps
// ErrConnectionLost and the broker's reason, and names no channel (which
// channel's notification came first is chance). Its own connection does not
// report the loss a second time.
func TestConsumerSessionEndsWithConnectionLost(t *testing.T) {
	long(t)
	t.Parallel()
	topo := declare(t, dlxretry.Classic, delaysMS(50), 3)
	name := brokertest.Name(t, "consumer")
	sessions := make(chan string, 10)
	ended := make(chan error, 10)
	run(t, topo, func(context.Context, *dlxretry.Delivery) error { return nil },
		dlxretry.WithConnectionName(name), dlxretry.WithReconnectDelay(10*time.Millisecond, 100*time.Millisecond),
		dlxretry.WithHooks(dlxretry.Hooks{
			OnConnect:    func(e dlxretry.ConnectEvent) { sessions <- e.Broker },
			OnDisconnect: func(e dlxretry.DisconnectEvent) { ended <- e.Err },
		}))
	waitN(t, sessions, 1, 5*time.Second)

	if n, err := brokertest.CloseConnections(name); err != nil || n != 1 {
		t.Fatalf("closed %d connections: %v", n, err)
	}
	waitN(t, sessions, 1, 10*time.Second) // the next session
	var errs []error
	for len(ended) > 0 {
		errs = append(errs, <-ended)
	}
	if len(errs) != 1 {
		t.Fatalf("%d OnDisconnect for one lost connection, want 1: %v", len(errs), errs)
	}
	err := errs[0]
	var ae *amqp.Error
	if !errors.Is(err, dlxretry.ErrConnectionLost) || !errors.As(err, &ae) || ae.Code != amqp.ConnectionForced {
		t.Errorf("session ended with %v, want ErrConnectionLost wrapping the broker's 320", err)
	}
	if strings.Contains(err.Error(), "channel closed") {
		t.Errorf("session ended with %q: a lost connection named as a closed channel", err)
	}
}

// When the connection to one broker of WithURLs is lost, the next attempt
// goes to the next broker: in a cluster, the node whose connection was lost
// is likely down. Two proxies stand for two nodes; the first one dies.
func TestReconnectStartsWithTheNextBroker(t *testing.T) {
	t.Parallel()
	queue := brokertest.Queue(t, "q", nil)
	first, second := startGateProxy(t), startGateProxy(t)
	var mu sync.Mutex
	var dialed []string
	dialer := func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		dialed = append(dialed, addr)
		mu.Unlock()
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	failed := make(chan error, 10)
	pub, err := dlxretry.NewPublisher(first.URL(t), dlxretry.WithURLs(second.URL(t)), dlxretry.WithDialer(dialer),
		dlxretry.WithReconnectDelay(time.Second, time.Second),
		dlxretry.WithHooks(dlxretry.Hooks{OnDisconnect: func(e dlxretry.DisconnectEvent) {
			if !errors.Is(e.Err, dlxretry.ErrConnectionLost) {
				failed <- e.Err
			}
		}}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pub.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := pub.Publish(ctx, "", queue, amqpMsg("one")); err != nil {
		t.Fatal(err)
	}

	first.stop() // the node dies: its connections drop, it refuses new ones
	for {
		err := pub.Publish(ctx, "", queue, amqpMsg("two"))
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("publish after the first broker died: %v", err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{first.ln.Addr().String(), second.ln.Addr().String()}
	if len(dialed) != 2 || dialed[0] != want[0] || dialed[1] != want[1] {
		t.Errorf("dialed %v, want %v: the first attempt after the loss goes to the next broker", dialed, want)
	}
	select {
	case err := <-failed:
		t.Errorf("a failed attempt on the way: %v", err)
	default:
	}
	getAll(t, queue, 2, 5*time.Second)
}

// redactedURL is the test broker's URL as events show it.
func redactedURL(t *testing.T) string {
	t.Helper()
	return strings.Replace(brokertest.URL(t), ":guest@", ":xxxxx@", 1)
}
