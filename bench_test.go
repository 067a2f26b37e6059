package dlxretry

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// The per-delivery path without a broker. Run with
//
//	go test -run '^$' -bench . -benchmem
//
// The comparison against a real broker and other libraries is in bench/
// (see docs/benchmarks.md).

// benchDeathHeaders are headers as amqp091-go decodes them for a message
// that failed twice in queue "orders" and waited twice in its first tier:
// two x-death entries (most recent first), the x-first-death-* and
// x-last-death-* headers the broker adds, and one header of the publisher's.
func benchDeathHeaders() amqp.Table {
	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	return amqp.Table{
		"x-death": []any{
			amqp.Table{
				"count":        int64(2),
				"exchange":     "orders.retry.first",
				"queue":        "orders.retry.1.1s",
				"reason":       "expired",
				"routing-keys": []any{"order.created"},
				"time":         at.Add(time.Second),
			},
			amqp.Table{
				"count":        int64(2),
				"exchange":     "shop",
				"queue":        "orders",
				"reason":       "rejected",
				"routing-keys": []any{"order.created"},
				"time":         at,
			},
		},
		"x-first-death-exchange": "shop",
		"x-first-death-queue":    "orders",
		"x-first-death-reason":   "rejected",
		"x-last-death-exchange":  "orders.retry.first",
		"x-last-death-queue":     "orders.retry.1.1s",
		"x-last-death-reason":    "expired",
		"trace-id":               "4bf92f3577b34da6a3ce929d0e0e4736",
	}
}

func BenchmarkParseDeaths(b *testing.B) {
	h := benchDeathHeaders()
	b.ReportAllocs()
	for b.Loop() {
		ds, err := ParseDeaths(h)
		if err != nil || ds.Rejections("orders") != 2 {
			b.Fatalf("ParseDeaths = %v, %v", ds, err)
		}
	}
}

// BenchmarkParseDeaths20Tiers reads the history of a message that went
// through 20 tiers: one rejected entry and 20 expired ones.
func BenchmarkParseDeaths20Tiers(b *testing.B) {
	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	entries := []any{amqp.Table{
		"count": int64(20), "exchange": "shop", "queue": "orders", "reason": "rejected",
		"routing-keys": []any{"order.created"}, "time": at,
	}}
	for i := range 20 {
		entries = append(entries, amqp.Table{
			"count": int64(1), "exchange": "orders.retry", "queue": fmt.Sprintf("orders.retry.%d", i+1), "reason": "expired",
			"routing-keys": []any{strconv.Itoa(i)}, "time": at.Add(time.Duration(i) * time.Second),
		})
	}
	h := amqp.Table{"x-death": entries}
	b.ReportAllocs()
	for b.Loop() {
		ds, err := ParseDeaths(h)
		if err != nil || len(ds) != 21 || ds.Rejections("orders") != 20 {
			b.Fatalf("ParseDeaths = %d entries, %v", len(ds), err)
		}
	}
}

func BenchmarkParseDeathsNone(b *testing.B) {
	h := amqp.Table{"trace-id": "4bf92f3577b34da6a3ce929d0e0e4736"}
	b.ReportAllocs()
	for b.Loop() {
		ds, err := ParseDeaths(h)
		if err != nil || ds != nil {
			b.Fatalf("ParseDeaths = %v, %v", ds, err)
		}
	}
}

func BenchmarkDecide(b *testing.B) {
	fail := errors.New("callback down")
	cases := []struct {
		name    string
		err     error
		attempt int
		want    action
	}{
		{"ack", nil, 1, actionAck},
		{"retry", fail, 1, actionRetry},
		{"park/max-attempts", fail, 5, actionPark},
		{"park/permanent", Permanent(fail), 1, actionPark},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if got := decide(c.err, c.attempt, 5); got != c.want {
					b.Fatalf("decide = %v, want %v", got, c.want)
				}
			}
		})
	}
}

// nopAcknowledger settles nothing; it counts what it was asked to do.
type nopAcknowledger struct{ acks, nacks int }

func (a *nopAcknowledger) Ack(uint64, bool) error        { a.acks++; return nil }
func (a *nopAcknowledger) Nack(uint64, bool, bool) error { a.nacks++; return nil }
func (a *nopAcknowledger) Reject(uint64, bool) error     { a.nacks++; return nil }

// benchTopology is the topology of the processor benchmarks.
var benchTopology = Topology{Queue: "orders", Delays: []time.Duration{time.Second, 10 * time.Second}, MaxAttempts: 5}

func benchProcessor(b *testing.B, h Handler, opts ...Option) *processor {
	b.Helper()
	p, err := newProcessor(benchTopology, h, opts)
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// benchDelivery is a delivery as the broker hands it over: a first one
// from the publisher's exchange; a retried one (with x-death headers) from
// the topology's requeue exchange, with the tier's key.
func benchDelivery(ack amqp.Acknowledger, headers amqp.Table) amqp.Delivery {
	d := amqp.Delivery{
		Acknowledger: ack,
		Headers:      headers,
		DeliveryMode: amqp.Persistent,
		MessageId:    "m-1",
		Exchange:     "shop",
		RoutingKey:   "order.created",
		DeliveryTag:  1,
		Body:         make([]byte, 1024),
	}
	if headers[headerXDeath] != nil {
		d.Exchange, d.RoutingKey = benchTopology.RequeueExchange(), benchTopology.TierKey(1)
	}
	return d
}

// BenchmarkProcessAck is a first delivery whose handler succeeds: parse the
// (absent) x-death header, run the handler, decide, ack.
func BenchmarkProcessAck(b *testing.B) {
	p := benchProcessor(b, func(context.Context, *Delivery) error { return nil })
	ack := &nopAcknowledger{}
	msg := benchDelivery(ack, amqp.Table{"trace-id": "4bf92f3577b34da6a3ce929d0e0e4736"})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		p.process(ctx, msg)
	}
	if ack.acks == 0 || ack.nacks != 0 {
		b.Fatalf("acks %d, nacks %d", ack.acks, ack.nacks)
	}
}

// BenchmarkProcessAckWithHooks is BenchmarkProcessAck with an OnAck hook, as
// a user feeding metrics has.
func BenchmarkProcessAckWithHooks(b *testing.B) {
	var n int
	p := benchProcessor(b, func(context.Context, *Delivery) error { return nil },
		WithHooks(Hooks{OnAck: func(context.Context, AckEvent) { n++ }}))
	ack := &nopAcknowledger{}
	msg := benchDelivery(ack, nil)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		p.process(ctx, msg)
	}
	if n == 0 {
		b.Fatal("OnAck never called")
	}
}

// BenchmarkProcessRetry is a third delivery (two x-death entries) whose
// handler fails: parse, run, decide, nack into the next tier.
func BenchmarkProcessRetry(b *testing.B) {
	fail := errors.New("callback down")
	p := benchProcessor(b, func(context.Context, *Delivery) error { return fail })
	ack := &nopAcknowledger{}
	msg := benchDelivery(ack, benchDeathHeaders())
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		p.process(ctx, msg)
	}
	if ack.nacks == 0 || ack.acks != 0 {
		b.Fatalf("acks %d, nacks %d", ack.acks, ack.nacks)
	}
}

// BenchmarkProcessAckRetried is a third delivery whose handler succeeds: the
// success path of a message that has been retried.
func BenchmarkProcessAckRetried(b *testing.B) {
	p := benchProcessor(b, func(context.Context, *Delivery) error { return nil })
	ack := &nopAcknowledger{}
	msg := benchDelivery(ack, benchDeathHeaders())
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		p.process(ctx, msg)
	}
}
