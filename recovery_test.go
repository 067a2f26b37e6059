package dlxretry_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/dlxretry/dlxretry"
	"github.com/dlxretry/dlxretry/internal/brokertest"
	amqp "github.com/rabbitmq/amqp091-go"
)

// The Consumer and Publisher dial their own connections with amqp091-go's
// Config.Recovery off and supervise them themselves. Wrap, on a user's
// connection that has Recovery on, must never settle a delivery on a channel
// recovered since it arrived: a recovered channel numbers deliveries anew,
// so the old tag names another message (or none, and the broker closes the
// channel). Here five deliveries wait in the client's buffer while the first
// one's handler runs and the channel is recovered. Wrap settles none of them
// on the recovered channel and closes it; the user's loop opens a new one,
// and every message ends acked or parked exactly once, with nothing left.
func TestWrapSettlesNothingAfterARecovery(t *testing.T) {
	t.Parallel()
	topo := declare(t, dlxretry.Classic, delaysMS(50), 3)
	bodies := []string{"ok-1", "ok-2", "ok-3", "ok-4", "ok-5", "fail"}
	publish(t, topo.Exchange, "k", bodies...)

	conn, err := amqp.DialConfig(brokertest.URL(t), amqp.Config{Recovery: &amqp.Recovery{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := newCounter(func(b string) bool { return b == "fail" })
	blocked, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	h := func(ctx context.Context, d *dlxretry.Delivery) error {
		once.Do(func() {
			close(blocked)
			<-release
		})
		return c.handle(ctx, d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	channels := make(chan *amqp.Channel, 10)
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		for ctx.Err() == nil {
			consumeWithWrap(ctx, t, conn, topo, h, c.hooks(), channels)
		}
	}()
	t.Cleanup(func() { cancel(); <-loopDone })

	first := <-channels
	states := make(chan *amqp.StateChanged, 4)
	first.NotifyStateChange(states)
	<-blocked
	_ = first.Ack(1<<40, false) // an unknown tag: the broker closes the channel; amqp091-go recovers it
	waitState(t, states, amqp.StateOpen)
	close(release)

	waitN(t, c.outcomes, len(bodies), 10*time.Second)
	for _, b := range bodies {
		_, acks, parks := c.snapshot(b)
		if want := b != "fail"; acks+parks != 1 || (acks == 1) != want {
			t.Errorf("%s: %d acks, %d parks", b, acks, parks)
		}
	}
	select {
	case b := <-c.outcomes:
		t.Errorf("%s settled twice", b)
	case <-time.After(300 * time.Millisecond):
	}
	getAll(t, topo.ParkingQueue(), 1, 5*time.Second)
	assertEmpty(t, topo)
}

// consumeWithWrap is a user's consume loop on one channel: it returns when
// the channel's delivery stream ends.
func consumeWithWrap(ctx context.Context, t *testing.T, conn *amqp.Connection, topo dlxretry.Topology,
	h dlxretry.Handler, hooks dlxretry.Hooks, channels chan<- *amqp.Channel) {
	ch, err := conn.Channel()
	if err != nil {
		time.Sleep(50 * time.Millisecond)
		return
	}
	defer func() { go ch.Close() }() // amqp091-go's Close can hang on a recovered channel
	process, err := dlxretry.Wrap(ch, topo, h, dlxretry.WithHooks(hooks))
	if err == nil {
		err = ch.Qos(10, 0, false)
	}
	var deliveries <-chan amqp.Delivery
	if err == nil {
		deliveries, err = ch.Consume(topo.Queue, "", false, false, false, false, nil)
	}
	if err != nil {
		t.Errorf("open a channel to consume: %v", err)
		return
	}
	// As Wrap's doc asks: a recovered channel is done with.
	states := make(chan *amqp.StateChanged, 8)
	ch.NotifyStateChange(states)
	channels <- ch
	for {
		select {
		case d, ok := <-deliveries:
			if !ok {
				return
			}
			process(ctx, d)
		case <-states:
			return
		case <-ctx.Done():
			return
		}
	}
}

func waitState(t *testing.T, states <-chan *amqp.StateChanged, want amqp.LifeCycleState) {
	t.Helper()
	for {
		select {
		case s := <-states:
			if s.To == want {
				return
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("channel never reached state %v", want)
		}
	}
}
