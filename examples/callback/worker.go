package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/dlxretry/dlxretry"
)

// callbackTimeout bounds one callback request.
const callbackTimeout = 2 * time.Second

// worker is the consumer's side: it delivers each job to its callback URL.
type worker struct {
	client *http.Client
}

// handle is the dlxretry.Handler. A job it cannot read is parked at once; a
// callback that cannot be reached or answers other than 2xx is retried.
func (w *worker) handle(ctx context.Context, d *dlxretry.Delivery) error {
	var j job
	if err := json.Unmarshal(d.Body, &j); err != nil {
		return dlxretry.Permanent(fmt.Errorf("unreadable job: %w", err))
	}
	ctx, cancel := context.WithTimeout(ctx, callbackTimeout)
	defer cancel()
	body, _ := json.Marshal(map[string]string{"message": j.Message})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, j.CallbackURL, bytes.NewReader(body))
	if err != nil {
		return dlxretry.Permanent(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := w.client.Do(req)
	if err != nil {
		return fmt.Errorf("callback unreachable: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("callback answered %s", resp.Status)
	}
	return nil
}

// tracker prints each outcome as the consumer's hooks report it, in the
// demo's style, and lets the demo wait for outcomes.
type tracker struct {
	out     io.Writer
	mu      sync.Mutex
	tried   map[string]bool // the first attempt was settled
	settled map[string]bool // acked or parked
	err     error           // why the consumer stopped early
	changed chan struct{}   // closed and replaced on every change
}

func newTracker(out io.Writer) *tracker {
	return &tracker{out: out, tried: map[string]bool{}, settled: map[string]bool{}, changed: make(chan struct{})}
}

func (t *tracker) hooks() dlxretry.Hooks {
	return dlxretry.Hooks{OnAck: t.onAck, OnRetry: t.onRetry, OnPark: t.onPark}
}

func (t *tracker) onAck(_ context.Context, e dlxretry.AckEvent) {
	m := messageOf(e.Delivery)
	fmt.Fprintf(t.out, "%-17s%s (attempt %d)\n", "ack for message", m, e.Attempt)
	t.update(func() { t.tried[m], t.settled[m] = true, true })
}

func (t *tracker) onRetry(_ context.Context, e dlxretry.RetryEvent) {
	m := messageOf(e.Delivery)
	if e.ParkErr != nil {
		fmt.Fprintf(t.out, "%-17s%s (%v; it goes round the retry path again)\n", "park failed", m, e.ParkErr)
	}
	fmt.Fprintf(t.out, "%-17s%s (attempt %d: %v; next try in %v)\n", "retry", m, e.Attempt, e.Err, e.Delay)
	t.update(func() { t.tried[m] = true })
}

func (t *tracker) onPark(_ context.Context, e dlxretry.ParkEvent) {
	m := messageOf(e.Delivery)
	fmt.Fprintf(t.out, "%-17s%s (after %d attempts: %v)\n", "parked", m, e.Attempt, e.Err)
	t.update(func() { t.tried[m], t.settled[m] = true, true })
}

func (t *tracker) fail(err error) { t.update(func() { t.err = err }) }

func (t *tracker) update(f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f()
	close(t.changed)
	t.changed = make(chan struct{})
}

// waitFirstAttempt returns once the consumer has settled the first attempt at message.
func (t *tracker) waitFirstAttempt(ctx context.Context, message string) error {
	return t.wait(ctx, func() bool { return t.tried[message] })
}

// waitSettled returns once n messages have been acked or parked.
func (t *tracker) waitSettled(ctx context.Context, n int) error {
	return t.wait(ctx, func() bool { return len(t.settled) >= n })
}

func (t *tracker) wait(ctx context.Context, done func() bool) error {
	for {
		t.mu.Lock()
		ok, err, changed := done(), t.err, t.changed
		t.mu.Unlock()
		switch {
		case ok:
			return nil
		case err != nil:
			return err
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// messageOf is the job's message, for printing.
func messageOf(d *dlxretry.Delivery) string {
	var j job
	if json.Unmarshal(d.Body, &j) != nil || j.Message == "" {
		return fmt.Sprintf("%q", d.Body)
	}
	return j.Message
}
