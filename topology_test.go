package dlxretry_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/dlxretry/dlxretry"
	"github.com/dlxretry/dlxretry/internal/brokertest"
	amqp "github.com/rabbitmq/amqp091-go"
)

// Declaring twice is a no-op: no error, and messages already queued stay.
func TestRedeclareIsNoOp(t *testing.T) {
	for _, typ := range queueTypes {
		t.Run(string(typ), func(t *testing.T) {
			t.Parallel()
			topo := declare(t, typ, delaysMS(100, 200), 3)
			publish(t, topo.Exchange, "k", "one", "two")
			if err := topo.Declare(context.Background(), brokertest.Channel(t)); err != nil {
				t.Fatalf("second declare: %v", err)
			}
			if n := messageCount(t, topo.Queue); n != 2 {
				t.Errorf("work queue holds %d messages after re-declare, want 2", n)
			}
		})
	}
}

// Declaring over a queue that exists with other arguments names the queue and
// the argument, and still exposes the broker's error.
func TestDeclareConflictNamesQueueAndArgument(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		existing amqp.Table
		typ      dlxretry.QueueType
		argument []string // the broker names the first it finds
	}{
		{"other dead-letter exchange", amqp.Table{"x-dead-letter-exchange": "elsewhere"}, dlxretry.Classic, []string{"x-dead-letter-exchange"}},
		{"classic becoming quorum", nil, dlxretry.Quorum, []string{"x-queue-type", "x-overflow", "x-dead-letter-strategy", "x-delivery-limit"}},
		{"a ttl on the work queue", amqp.Table{"x-message-ttl": int32(1000)}, dlxretry.Classic, []string{"x-message-ttl"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			topo := dlxretry.Topology{Queue: brokertest.Name(t, "q"), Delays: delaysMS(100), MaxAttempts: 3, Type: c.typ}
			if c.existing == nil { // the same queue as declared classic
				c.existing = amqp.Table{"x-dead-letter-exchange": topo.RetryExchange()}
			}
			ch := brokertest.Channel(t)
			if _, err := ch.QueueDeclare(topo.Queue, true, false, false, false, c.existing); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { deleteTopology(t, topo) })

			err := topo.Declare(context.Background(), brokertest.Channel(t))
			var de *dlxretry.DeclareError
			if !errors.As(err, &de) {
				t.Fatalf("Declare returned %v, want a *DeclareError", err)
			}
			if de.Kind != "queue" || de.Name != topo.Queue || !slices.Contains(c.argument, de.Argument) {
				t.Errorf("DeclareError{Kind: %q, Name: %q, Argument: %q}, want queue %q argument in %q",
					de.Kind, de.Name, de.Argument, topo.Queue, c.argument)
			}
			var ae *amqp.Error
			if !errors.As(err, &ae) || ae.Code != amqp.PreconditionFailed {
				t.Errorf("the broker's PRECONDITION_FAILED is not reachable with errors.As: %v", err)
			}
		})
	}
}

// A Consumer whose topology clashes with the broker returns the declare
// error from Run instead of reconnecting forever.
func TestConsumerReturnsDeclareConflict(t *testing.T) {
	t.Parallel()
	topo := dlxretry.Topology{Queue: brokertest.Name(t, "q"), Delays: delaysMS(100), MaxAttempts: 3}
	if _, err := brokertest.Channel(t).QueueDeclare(topo.Queue, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteTopology(t, topo) })
	c, err := dlxretry.NewConsumer(brokertest.URL(t), topo, func(context.Context, *dlxretry.Delivery) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	err = c.Run(context.Background())
	var de *dlxretry.DeclareError
	if !errors.As(err, &de) || de.Name != topo.Queue || de.Argument != "x-dead-letter-exchange" {
		t.Fatalf("Run returned %v, want a DeclareError for %s naming x-dead-letter-exchange", err, topo.Queue)
	}
}

// Delete removes everything Declare made, and a second Delete is harmless.
func TestDeleteRemovesEverything(t *testing.T) {
	t.Parallel()
	topo := dlxretry.Topology{Queue: brokertest.Name(t, "q"), Delays: delaysMS(10, 20), MaxAttempts: 2,
		Exchange: brokertest.Name(t, "x")}
	ctx := context.Background()
	if err := topo.Declare(ctx, brokertest.Channel(t)); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := topo.Delete(ctx, brokertest.Channel(t)); err != nil {
			t.Fatalf("Delete: %v", err)
		}
	}
	queues := []string{topo.Queue, topo.ParkingQueue(), topo.TierQueue(1), topo.TierQueue(2),
		topo.Queue + ".retry.schedules", topo.Queue + ".retry.schedules.count"}
	for _, q := range queues {
		if _, err := brokertest.Channel(t).QueueDeclarePassive(q, true, false, false, false, nil); err == nil {
			t.Errorf("queue %s still exists", q)
		}
	}
	exchanges := []string{topo.Exchange, topo.RetryExchange(), topo.FirstRetryExchange(), topo.FirstRetryExchange() + ".0",
		topo.FirstRetryExchange() + ".1", topo.RequeueExchange(), topo.ParkingExchange()}
	for _, x := range exchanges {
		if err := brokertest.Channel(t).ExchangeDeclarePassive(x, "direct", true, false, false, false, nil); err == nil {
			t.Errorf("exchange %s still exists", x)
		}
	}
}
