package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/dlxretry/dlxretry"
)

// S4: delay accuracy under load. Handlers fail -s4rate messages a second
// for -s4time: new messages arrive at a third of that rate and each fails
// once in every one of the three tiers, then succeeds. For every retry: the
// time from the nack (the OnRetry hook, which runs once the nack is sent)
// to the redelivery reaching the handler, minus the tier's delay. The
// work queue's depth is sampled meanwhile: a redelivery that finds a
// backlog waits its turn, and that wait is part of the overshoot.

var s4Delays = []time.Duration{100 * time.Millisecond, 500 * time.Millisecond, 2 * time.Second}

type s4Run struct {
	nacked *stamps
	over   []*samples // per tier
	m      *meter

	backlog int // the work queue's deepest sampled backlog
}

func (r *s4Run) handle(_ context.Context, d *dlxretry.Delivery) error {
	now := time.Now()
	if at, ok := r.nacked.take(d.MessageId); ok {
		tier := min(d.Attempt-1, len(s4Delays))
		r.over[tier-1].add(now.Sub(at) - s4Delays[tier-1])
	}
	if d.Attempt <= len(s4Delays) {
		return errFail
	}
	r.m.hit()
	return nil
}

func runS4(ctx context.Context, e *env) (section string, err error) {
	t, err := dlxTopology(s4Delays...)(ctx, e, e.name("S4"))
	defer func() {
		if ferr := e.forget(t.names...); ferr != nil && err == nil {
			err = ferr
		}
	}()
	if err != nil {
		return "", err
	}
	perSecond := max(1, e.cfg.s4Rate/len(s4Delays))
	total := int(float64(perSecond) * e.cfg.s4Time.Seconds())
	r := &s4Run{nacked: newStamps(), m: newMeter(total)}
	for range s4Delays {
		r.over = append(r.over, &samples{})
	}
	hooks := dlxretry.Hooks{OnRetry: func(_ context.Context, ev dlxretry.RetryEvent) { r.nacked.set(ev.Delivery.MessageId, time.Now()) }}
	c, err := dlxConsume(e, t.topo, r.handle, hooks)
	if err != nil {
		return "", err
	}
	progress("S4: %d new msg/s for %s through tiers %v", perSecond, e.cfg.s4Time, s4Delays)
	backlog := e.sampleDepth(t.queue, 100*time.Millisecond)
	if err := e.paced(ctx, t.queue, "s4-", perSecond, total); err != nil {
		c.stop()
		backlog()
		return "", err
	}
	err = waitFor(ctx, r.m, c, 2*time.Minute)
	r.backlog = backlog()
	if serr := c.stop(); serr != nil {
		progress("S4: stopping the consumer: %v", serr)
	}
	if err != nil {
		return "", err
	}
	return s4Table(e, r, perSecond, total), nil
}

func s4Table(e *env, r *s4Run, perSecond, total int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "### S4 delay accuracy under load (dlxretry), %d failures/s\n\n", perSecond*len(s4Delays))
	fmt.Fprintf(&b, "%d new messages/s for %s (%d messages), each failing once per tier, then acked: %d nacks/s "+
		"and %d deliveries/s in steady state. Deepest work-queue backlog seen: %d messages.\n"+
		"Overshoot = time from the nack to the redelivery reaching the handler, minus the tier's delay.\n\n",
		perSecond, e.cfg.s4Time, total, perSecond*len(s4Delays), perSecond*(len(s4Delays)+1), r.backlog)
	b.WriteString("| tier | delay | retries | p50 overshoot | p99 overshoot | max |\n|--:|--:|--:|--:|--:|--:|\n")
	for i, s := range r.over {
		fmt.Fprintf(&b, "| %d | %s | %d | %s | %s | %s |\n", i+1, s4Delays[i], s.len(), ms(s.quantile(0.5)), ms(s.quantile(0.99)), ms(s.quantile(1)))
	}
	return b.String()
}

// sampleDepth polls queue's depth every interval until the returned
// function is called, which returns the largest depth seen.
func (e *env) sampleDepth(queue string, every time.Duration) func() int {
	stop := make(chan struct{})
	deepest := make(chan int, 1)
	go func() {
		var most int
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-stop:
				deepest <- most
				return
			case <-t.C:
				if n, err := e.depth(queue); err == nil {
					most = max(most, n)
				}
			}
		}
	}()
	return func() int {
		close(stop)
		return <-deepest
	}
}

// paced publishes total messages to queue at perSecond, ids prefix + index,
// without confirms (the consumer counts them all back).
func (e *env) paced(ctx context.Context, queue, prefix string, perSecond, total int) error {
	ch, err := e.channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	return pace(ctx, perSecond, total, func(i int) error {
		return ch.PublishWithContext(ctx, "", queue, false, false, e.message(prefix+strconv.Itoa(i)))
	})
}

// pace calls send for 0..total-1, perSecond of them a second.
func pace(ctx context.Context, perSecond, total int, send func(i int) error) error {
	start := time.Now()
	for i := 0; i < total; {
		due := min(total, int(time.Since(start).Seconds()*float64(perSecond))+1)
		for ; i < due; i++ {
			if err := send(i); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
	return nil
}
