package main

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dlxretry/dlxretry"
)

// S2: the failure path. Every message fails on its first delivery and
// succeeds on its second; the first retry delay is 100 ms. Measured from
// the first delivery to the n-th success.

const s2Delay = 100 * time.Millisecond

var errFail = errors.New("bench: planned failure")

// samberNote says why samber/go-amqp-pubsub itself is not in the tables.
const samberNote = "n/a: the Go module proxy refuses github.com/samber/go-amqp-pubsub (403 for every version), so it cannot be a dependency; the row above is its retry mechanism written out"

func s2Contenders() []contender {
	return []contender{
		{id: "raw", name: "amqp091-go reject-to-DLX loop (raw)", measure: consumeRun(rejectLoopQueues(s2Delay), s2Raw)},
		{id: "dlx", name: "dlxretry Consumer", measure: consumeRun(dlxTopology(s2Delay), s2Dlx)},
		{id: "rawdlx", name: "amqp091-go loop on dlxretry's topology (diagnostic)", measure: consumeRun(dlxTopology(s2Delay), s2Raw)},
		{id: "repub", name: "republish + per-message expiration (samber/go-amqp-pubsub's mechanism)", measure: consumeRun(republishQueues, s2Republish)},
		{id: "samber", name: "samber/go-amqp-pubsub", note: samberNote},
		{id: "repubc", name: "republish with a confirm before the ack (no loss window)", measure: consumeRun(republishQueues, s2RepublishConfirmed)},
		{id: "wm", name: "watermill Router + Retry middleware (in-process)", once: true, maxN: 1000, measure: consumeRun(plainQueue, s2Wm)},
	}
}

// rejectLoopQueues declares the smallest broker-routed retry loop: the work
// queue dead-letters to one tier queue, whose TTL sends messages back.
func rejectLoopQueues(delay time.Duration) declareFunc {
	return func(_ context.Context, e *env, name string) (target, error) {
		tier := name + ".tier"
		t := target{queue: name, names: []string{name, tier}}
		err := errors.Join(
			e.declareQueue(tier, amqp.Table{
				"x-message-ttl":             delay.Milliseconds(),
				"x-dead-letter-exchange":    "",
				"x-dead-letter-routing-key": name,
			}),
			e.declareQueue(name, amqp.Table{
				"x-dead-letter-exchange":    "",
				"x-dead-letter-routing-key": tier,
			}))
		return t, err
	}
}

// s2Raw fails a delivery that has no x-death header, acks one that has.
// It runs on the smallest loop and, as a diagnostic that separates the
// broker's work from the client's, on dlxretry's topology.
func s2Raw(e *env, t target, m *meter) (*consumer, error) {
	return rawConsume(e, t.queue, ackAll(func(d amqp.Delivery) {
		if d.Headers["x-death"] == nil {
			m.touch()
			_ = d.Nack(false, false)
			return
		}
		m.hit()
		_ = d.Ack(false)
	}))
}

func s2Dlx(e *env, t target, m *meter) (*consumer, error) {
	return dlxConsume(e, t.topo, func(_ context.Context, d *dlxretry.Delivery) error {
		if d.Attempt == 1 {
			m.touch()
			return errFail
		}
		m.hit()
		return nil
	}, dlxretry.Hooks{})
}

// republishQueues declares a work queue and a single retry queue without a
// TTL that dead-letters back to it: each retry is republished to it with a
// per-message expiration, as samber/go-amqp-pubsub does.
func republishQueues(_ context.Context, e *env, name string) (target, error) {
	retry := name + ".retry"
	t := target{queue: name, retry: retry, names: []string{name, retry}}
	err := errors.Join(
		e.declareQueue(name, nil),
		e.declareQueue(retry, amqp.Table{
			"x-dead-letter-exchange":    "",
			"x-dead-letter-routing-key": name,
		}))
	return t, err
}

// republisher retries a delivery the way samber/go-amqp-pubsub does by
// default (EventuallyConsistentRetry): publish a copy with an attempt
// header and an expiration to the retry queue on a second channel without
// confirms, guarded by a mutex, then ack the original.
// With confirm set, the channel is in confirm mode and each retry waits
// for the broker's confirm of its copy before it acks the original.
type republisher struct {
	mu      sync.Mutex
	ch      *amqp.Channel
	retry   string
	confirm bool
}

func newRepublisher(conn *amqp.Connection, retry string, confirm bool) (*republisher, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, err
	}
	if confirm {
		if err := ch.Confirm(false); err != nil {
			return nil, err
		}
	}
	return &republisher{ch: ch, retry: retry, confirm: confirm}, nil
}

// attempts is the attempt header of a republished delivery, 0 on the first.
func attempts(d amqp.Delivery) int {
	s, _ := d.Headers["x-retry-attempts"].(string)
	n, _ := strconv.Atoi(s)
	return n
}

func (r *republisher) retryAfter(d amqp.Delivery, delay time.Duration) error {
	h := d.Headers
	if h == nil {
		h = amqp.Table{}
	}
	h["x-retry-attempts"] = strconv.Itoa(attempts(d) + 1)
	msg := amqp.Publishing{
		Headers: h, ContentType: d.ContentType, ContentEncoding: d.ContentEncoding,
		DeliveryMode: d.DeliveryMode, Priority: d.Priority, CorrelationId: d.CorrelationId,
		ReplyTo: d.ReplyTo, Expiration: strconv.FormatInt(delay.Milliseconds(), 10),
		MessageId: d.MessageId, Timestamp: d.Timestamp, Type: d.Type, AppId: d.AppId, Body: d.Body,
	}
	r.mu.Lock()
	dc, err := r.ch.PublishWithDeferredConfirmWithContext(context.Background(), "", r.retry, true, false, msg)
	r.mu.Unlock()
	if err != nil {
		return err
	}
	if r.confirm {
		if err := waitAll(context.Background(), []*amqp.DeferredConfirmation{dc}); err != nil {
			return err
		}
	}
	return d.Ack(false)
}

func s2Republish(e *env, t target, m *meter) (*consumer, error) {
	return s2Republishing(e, t, m, false)
}

func s2RepublishConfirmed(e *env, t target, m *meter) (*consumer, error) {
	return s2Republishing(e, t, m, true)
}

func s2Republishing(e *env, t target, m *meter, confirm bool) (*consumer, error) {
	return rawConsume(e, t.queue, func(conn *amqp.Connection) (func(amqp.Delivery), error) {
		r, err := newRepublisher(conn, t.retry, confirm)
		if err != nil {
			return nil, err
		}
		return func(d amqp.Delivery) {
			if attempts(d) == 0 {
				m.touch()
				_ = r.retryAfter(d, s2Delay)
				return
			}
			m.hit()
			_ = d.Ack(false)
		}, nil
	})
}

func s2Wm(e *env, t target, m *meter) (*consumer, error) {
	retry := middleware.Retry{
		MaxRetries:      1,
		InitialInterval: s2Delay,
		MaxInterval:     s2Delay,
		Multiplier:      1,
		MaxElapsedTime:  time.Minute,
	}
	return wmConsume(e, t.queue, func(msg *message.Message) error {
		if msg.Metadata.Get("bench-failed") == "" {
			m.touch()
			msg.Metadata.Set("bench-failed", "1")
			return errFail
		}
		m.hit()
		return nil
	}, retry.Middleware)
}

func runS2(ctx context.Context, e *env) (string, error) {
	sums, err := runRounds(ctx, e, "S2", s2Contenders(), size{n: e.cfg.n2}, size{n: min(e.cfg.n2, 200)})
	if err != nil {
		return "", err
	}
	return throughputTable("S2 failure path: fail once, succeed on the retry (100 ms first tier)", sums, true), nil
}
