package clustertest_test

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"
)

// logCounter is a slog.Handler that counts records by who logged them
// (see logger), level and message, and keeps the attributes of the first
// record of each and when the first and last were logged.
type logCounter struct {
	mu    *sync.Mutex
	start time.Time
	count map[string]int
	first map[string]string
	when  map[string][2]time.Duration // first, last since start
	attrs []slog.Attr
}

func newLogCounter(start time.Time) *logCounter {
	return &logCounter{mu: &sync.Mutex{}, start: start, count: map[string]int{}, first: map[string]string{},
		when: map[string][2]time.Duration{}}
}

func (h *logCounter) Enabled(context.Context, slog.Level) bool { return true }

func (h *logCounter) Handle(_ context.Context, r slog.Record) error {
	key := r.Level.String() + " " + r.Message
	for _, a := range h.attrs {
		key = a.Value.String() + ": " + key
	}
	var b strings.Builder
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s", a)
		return true
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	h.count[key]++
	at := r.Time.Sub(h.start)
	if _, ok := h.first[key]; !ok {
		h.first[key] = b.String()
		h.when[key] = [2]time.Duration{at, at}
	}
	h.when[key] = [2]time.Duration{h.when[key][0], at}
	return nil
}

func (h *logCounter) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr(nil), h.attrs...), attrs...)
	return &c
}

func (h *logCounter) WithGroup(string) slog.Handler { return h }

// logger is a logger that counts into h, its records tagged with who.
func (h *logCounter) logger(who string) *slog.Logger {
	return slog.New(h.WithAttrs([]slog.Attr{slog.String("who", who)}))
}

// summary is one line per distinct record: count, when the first and the
// last were logged (since the start), level, message and the first one's
// attributes.
func (h *logCounter) summary() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	keys := make([]string, 0, len(h.count))
	for k := range h.count {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		w := h.when[k]
		fmt.Fprintf(&b, "  %5d× %5.1fs–%5.1fs %s —%s\n", h.count[k], w[0].Seconds(), w[1].Seconds(), k, h.first[k])
	}
	return b.String()
}
