// Package parkedtest parks messages for the tests of the dlxretry command
// and its console: it declares a topology with a name of its own and
// publishes to its parking exchange what parking would publish.
package parkedtest

import (
	"context"
	"fmt"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dlxretry/dlxretry"
	"github.com/dlxretry/dlxretry/internal/brokertest"
)

// Topology declares a topology named after the test and deletes it, parked
// messages and all, when the test ends.
func Topology(t testing.TB, what string) dlxretry.Topology {
	t.Helper()
	return declare(t, brokertest.Name(t, what))
}

// Quorum is Topology with quorum queues.
func Quorum(t testing.TB, what string) dlxretry.Topology {
	t.Helper()
	return declareTopology(t, dlxretry.Topology{Queue: brokertest.Name(t, what), Delays: []time.Duration{time.Second},
		MaxAttempts: 3, Type: dlxretry.Quorum})
}

// Named declares a topology for the work queue queue, which must not exist,
// and deletes it when the test ends: for pictures that show plain names.
func Named(t testing.TB, queue string) dlxretry.Topology {
	t.Helper()
	if _, err := brokertest.Channel(t).QueueDeclarePassive(queue, true, false, false, false, nil); err == nil {
		t.Fatalf("the queue %s exists on the broker; this test declares it and deletes it afterwards", queue)
	}
	return declare(t, queue)
}

func declare(t testing.TB, queue string) dlxretry.Topology {
	t.Helper()
	return declareTopology(t, dlxretry.Topology{Queue: queue, Delays: []time.Duration{time.Second}, MaxAttempts: 3})
}

func declareTopology(t testing.TB, topo dlxretry.Topology) dlxretry.Topology {
	t.Helper()
	if err := topo.Declare(context.Background(), brokertest.Channel(t)); err != nil {
		t.Fatalf("declare %s: %v", topo.Queue, err)
	}
	t.Cleanup(func() {
		if err := topo.Delete(context.Background(), cleanupChannel(t)); err != nil {
			t.Errorf("cleanup: delete %s: %v", topo.Queue, err)
		}
	})
	return topo
}

// Message is a parked message to make. Zero fields take the defaults Park says.
type Message struct {
	ID          string // default: the group's name and its index
	Error       string
	Permanent   bool
	Attempts    int           // default 3
	Age         time.Duration // how long ago it was parked
	Key         string        // original routing key; default "order.created"
	ContentType string        // default application/json
	Body        []byte        // default a small JSON document
}

// Park publishes msgs to topo's parking exchange with the headers parking
// writes and an x-death entry for the work queue, with confirms.
func Park(t testing.TB, topo dlxretry.Topology, msgs ...Message) {
	t.Helper()
	ch := brokertest.Channel(t)
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	var last *amqp.DeferredConfirmation
	for i, m := range msgs {
		dc, err := ch.PublishWithDeferredConfirm(topo.ParkingExchange(), orDefault(m.Key, "order.created"), true, false, publishing(topo, i, m))
		if err != nil {
			t.Fatalf("park %d: %v", i, err)
		}
		last = dc
	}
	if last != nil && !last.Wait() {
		t.Fatal("park: nacked")
	}
}

func publishing(topo dlxretry.Topology, i int, m Message) amqp.Publishing {
	if m.Attempts == 0 {
		m.Attempts = 3
	}
	key := orDefault(m.Key, "order.created")
	parkedAt := time.Now().Add(-m.Age).UTC().Truncate(time.Second)
	body := m.Body
	if body == nil {
		body = fmt.Appendf(nil, `{"order":%d,"customer":"c-%d","items":[{"sku":"A-1","qty":2}]}`, 4700+i, i)
	}
	return amqp.Publishing{
		MessageId:    orDefault(m.ID, fmt.Sprintf("m-%04d", i)),
		ContentType:  orDefault(m.ContentType, "application/json"),
		DeliveryMode: amqp.Persistent,
		Timestamp:    parkedAt.Add(-time.Minute),
		Body:         body,
		Headers: amqp.Table{
			dlxretry.HeaderQueue:              topo.Queue,
			dlxretry.HeaderError:              m.Error,
			dlxretry.HeaderAttempts:           int64(m.Attempts),
			dlxretry.HeaderParkedAt:           parkedAt,
			dlxretry.HeaderOriginalExchange:   "shop",
			dlxretry.HeaderOriginalRoutingKey: key,
			dlxretry.HeaderPermanent:          m.Permanent,
			"x-death": []any{amqp.Table{
				"queue": topo.Queue, "reason": "rejected", "count": int64(m.Attempts - 1),
				"time": parkedAt.Add(-time.Minute), "exchange": "shop", "routing-keys": []any{key},
			}},
		},
	}
}

// Fleet is 48 messages with 6 kinds of error, ids and numbers in their
// texts, as an operator meets them: 20 timeouts, 10 missing orders, 8
// malformed payloads (permanent), 5 refused connections, 3 rate limits and
// 2 duplicate keys.
func Fleet() []Message {
	var msgs []Message
	add := func(n int, permanent bool, format func(i int) string) {
		for i := range n {
			msgs = append(msgs, Message{Error: format(i), Permanent: permanent, Age: time.Duration(len(msgs)+1) * 37 * time.Minute})
		}
	}
	add(20, false, func(i int) string { return fmt.Sprintf("upstream timeout after %dms", 1000+i*50) })
	add(10, false, func(i int) string { return fmt.Sprintf("order %d not found", 4720+i) }) // the order its body names
	add(8, true, func(i int) string { return fmt.Sprintf("malformed payload: invalid character 'x' at offset %d", i) })
	add(5, false, func(i int) string { return fmt.Sprintf("dial tcp 10.0.0.%d:5432: connection refused", i+1) })
	add(3, false, func(i int) string {
		return fmt.Sprintf("rate limited: retry after %ds (request 5f2b9c1e%04d)", 30+i, i)
	})
	add(2, true, func(i int) string {
		return fmt.Sprintf("duplicate key value violates unique constraint \"orders_pkey\" (id=%d)", 90+i)
	})
	for i := range msgs {
		msgs[i].ID = fmt.Sprintf("m-%04d", i)
	}
	return msgs
}

// Depth is how many ready messages queue holds.
func Depth(t testing.TB, queue string) int {
	t.Helper()
	q, err := brokertest.Channel(t).QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		t.Fatalf("inspect %s: %v", queue, err)
	}
	return q.Messages
}

// AwaitDepth waits, ten seconds at most, until queue holds want ready
// messages: a console reading the queue in the background holds some for
// a moment.
func AwaitDepth(t testing.TB, queue string, want int) {
	t.Helper()
	got := -1
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if got = Depth(t, queue); got == want {
			return
		}
	}
	t.Errorf("%s holds %d ready messages, want %d", queue, got, want)
}

func cleanupChannel(t testing.TB) *amqp.Channel {
	conn, err := amqp.Dial(brokertest.URL(t))
	if err != nil {
		t.Fatalf("cleanup: dial: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("cleanup: channel: %v", err)
	}
	return ch
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
