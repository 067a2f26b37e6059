package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dlxretry/dlxretry"
)

// S5: head-of-line blocking. Messages that want a 5 s retry and messages
// that want a 100 ms retry arrive interleaved (slow, fast, slow, fast, ...,
// over two seconds). When do the 100 ms ones come back?
//
// dlxretry: tiers of 100 ms and 5 s; a slow message fails twice (its second
// failure sends it to the 5 s tier), a fast one once. The single queue:
// every retry is republished to one retry queue with a per-message
// expiration of 100 ms or 5 s (samber/go-amqp-pubsub's mechanism).

const (
	s5Fast = 100 * time.Millisecond
	s5Slow = 5 * time.Second
)

type s5Run struct {
	nacked     *stamps
	fast, slow *samples // time from the retry's nack to its redelivery
	m          *meter
}

func newS5Run(n int) *s5Run {
	return &s5Run{nacked: newStamps(), fast: &samples{}, slow: &samples{}, m: newMeter(n)}
}

func isSlow(d amqp.Delivery) bool { return strings.HasPrefix(d.MessageId, "slow") }

// arrived records the wait of a redelivery; long says it came from a 5 s wait.
func (r *s5Run) arrived(d amqp.Delivery, now time.Time, long bool) {
	at, ok := r.nacked.take(d.MessageId)
	switch {
	case !ok:
	case !isSlow(d):
		r.fast.add(now.Sub(at))
	case long:
		r.slow.add(now.Sub(at))
	}
}

func s5Dlx(ctx context.Context, e *env, r *s5Run) (*consumer, target, error) {
	t, err := dlxTopology(s5Fast, s5Slow)(ctx, e, e.name("S5.dlx"))
	if err != nil {
		return nil, t, err
	}
	h := func(_ context.Context, d *dlxretry.Delivery) error {
		r.arrived(d.Delivery, time.Now(), d.Attempt == 3)
		if (isSlow(d.Delivery) && d.Attempt < 3) || d.Attempt < 2 {
			return errFail
		}
		r.m.hit()
		return nil
	}
	hooks := dlxretry.Hooks{OnRetry: func(_ context.Context, ev dlxretry.RetryEvent) { r.nacked.set(ev.Delivery.MessageId, time.Now()) }}
	c, err := dlxConsume(e, t.topo, h, hooks)
	return c, t, err
}

func s5SingleQueue(ctx context.Context, e *env, r *s5Run) (*consumer, target, error) {
	t, err := republishQueues(ctx, e, e.name("S5.single"))
	if err != nil {
		return nil, t, err
	}
	c, err := rawConsume(e, t.queue, func(conn *amqp.Connection) (func(amqp.Delivery), error) {
		rp, err := newRepublisher(conn, t.retry, false)
		if err != nil {
			return nil, err
		}
		return func(d amqp.Delivery) {
			r.arrived(d, time.Now(), true)
			if attempts(d) > 0 {
				r.m.hit()
				_ = d.Ack(false)
				return
			}
			delay := s5Fast
			if isSlow(d) {
				delay = s5Slow
			}
			_ = rp.retryAfter(d, delay)
			r.nacked.set(d.MessageId, time.Now())
		}, nil
	})
	return c, t, err
}

type s5Contender struct {
	name  string
	start func(ctx context.Context, e *env, r *s5Run) (*consumer, target, error)
}

func runS5(ctx context.Context, e *env) (string, error) {
	cs := []s5Contender{
		{"dlxretry (a queue per delay)", s5Dlx},
		{"single retry queue, per-message expiration", s5SingleQueue},
	}
	var b strings.Builder
	fmt.Fprintf(&b, "### S5 head-of-line: %d retries of 100 ms interleaved with %d of 5 s\n\n", e.cfg.s5Pairs, e.cfg.s5Pairs)
	b.WriteString("| contender | 100 ms retries: p50 wait | p99 | max | 5 s retries: p50 wait |\n|---|--:|--:|--:|--:|\n")
	for _, c := range cs {
		r := newS5Run(2 * e.cfg.s5Pairs)
		if err := s5Measure(ctx, e, c, r); err != nil {
			return "", fmt.Errorf("%s: %w", c.name, err)
		}
		progress("S5: %-45s fast p50 %s p99 %s; slow p50 %s", c.name, ms(r.fast.quantile(0.5)), ms(r.fast.quantile(0.99)), ms(r.slow.quantile(0.5)))
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", c.name,
			ms(r.fast.quantile(0.5)), ms(r.fast.quantile(0.99)), ms(r.fast.quantile(1)), ms(r.slow.quantile(0.5)))
	}
	return b.String(), nil
}

func s5Measure(ctx context.Context, e *env, c s5Contender, r *s5Run) (err error) {
	cons, t, err := c.start(ctx, e, r)
	defer func() {
		if ferr := e.forget(t.names...); ferr != nil && err == nil {
			err = ferr
		}
	}()
	if err != nil {
		return err
	}
	defer func() {
		if serr := cons.stop(); serr != nil {
			progress("S5: stopping %s: %v", c.name, serr)
		}
	}()
	ch, err := e.channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	n := 2 * e.cfg.s5Pairs
	err = pace(ctx, e.cfg.s5Pairs, n, func(i int) error {
		id := "fast-" + strconv.Itoa(i/2)
		if i%2 == 0 {
			id = "slow-" + strconv.Itoa(i/2)
		}
		return ch.PublishWithContext(ctx, "", t.queue, false, false, e.message(id))
	})
	if err != nil {
		return err
	}
	return waitFor(ctx, r.m, cons, time.Minute)
}
