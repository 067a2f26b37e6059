package dlxretry_test

import (
	"context"
	"testing"
	"time"

	"github.com/dlxretry/dlxretry"
	"github.com/dlxretry/dlxretry/internal/brokertest"
	amqp "github.com/rabbitmq/amqp091-go"
)

// The Consumer and Publisher dial their own connections with amqp091-go's
// Config.Recovery off and supervise them themselves. Wrap, on a user's
// connection that has Recovery on, must not settle a delivery whose channel
// was recovered while its handler ran: the old delivery tag would name
// another message on the new channel. Here a handler is in flight when the
// channel fails and amqp091-go recovers it; the stale delivery is left alone,
// the broker redelivers it, and it is acked exactly once.
func TestWrapLeavesDeliveriesFromBeforeARecovery(t *testing.T) {
	t.Parallel()
	topo := declare(t, dlxretry.Classic, delaysMS(50), 3)
	publish(t, topo.Exchange, "k", "m")

	conn, err := amqp.DialConfig(brokertest.URL(t), amqp.Config{Recovery: &amqp.Recovery{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	states := make(chan *amqp.StateChanged, 4)
	ch.NotifyStateChange(states)

	handled := make(chan bool, 4)
	release := make(chan struct{})
	h := func(ctx context.Context, d *dlxretry.Delivery) error {
		handled <- d.Redelivered
		if !d.Redelivered {
			<-release
		}
		return nil
	}
	acks := make(chan string, 4)
	process, err := dlxretry.Wrap(ch, topo, h, dlxretry.WithHooks(dlxretry.Hooks{
		OnAck: func(e dlxretry.AckEvent) { acks <- string(e.Delivery.Body) }}))
	if err != nil {
		t.Fatal(err)
	}
	deliveries, err := ch.Consume(topo.Queue, "", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for d := range deliveries {
			go process(ctx, d)
		}
	}()

	if redelivered := <-handled; redelivered {
		t.Fatal("first delivery is marked redelivered")
	}
	_ = ch.Ack(1<<40, false) // an unknown tag: the broker closes the channel; amqp091-go recovers it
	waitState(t, states, amqp.StateOpen)
	close(release)
	select {
	case redelivered := <-handled:
		if !redelivered {
			t.Error("second delivery is not marked redelivered")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the message was not redelivered after the recovery")
	}
	waitN(t, acks, 1, 5*time.Second)
	select {
	case body := <-acks:
		t.Fatalf("%s acked twice", body)
	case <-time.After(300 * time.Millisecond):
	}
	assertEmpty(t, topo)
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
