package main

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// meter times a run: from the first delivery a handler sees (touch) to the
// target-th success (hit). Handlers call it from many goroutines.
type meter struct {
	target     int64
	count      atomic.Int64
	start, end atomic.Int64 // unix nanoseconds
	done       chan struct{}
}

func newMeter(target int) *meter {
	return &meter{target: int64(target), done: make(chan struct{})}
}

// touch marks the first delivery.
func (m *meter) touch() {
	if m.start.Load() == 0 {
		m.start.CompareAndSwap(0, time.Now().UnixNano())
	}
}

// hit counts a message done.
func (m *meter) hit() {
	m.touch()
	if m.count.Add(1) == m.target {
		m.end.Store(time.Now().UnixNano())
		close(m.done)
	}
}

func (m *meter) elapsed() time.Duration { return time.Duration(m.end.Load() - m.start.Load()) }

// result is one measured run.
type result struct {
	elapsed time.Duration
	n       int
	cpu     time.Duration // this process's CPU time over the run
	broker  time.Duration // the local broker's CPU time over the run
}

func (r result) rate() float64 { return float64(r.n) / r.elapsed.Seconds() }

// summary is a contender's runs.
type summary struct {
	name string
	runs []result
	note string // "n/a: why", when it did not run
}

func (s summary) medianRate() float64 {
	if len(s.runs) == 0 {
		return 0
	}
	rates := make([]float64, len(s.runs))
	for i, r := range s.runs {
		rates[i] = r.rate()
	}
	return median(rates)
}

func (s summary) rateRange() (lo, hi float64) {
	for i, r := range s.runs {
		if i == 0 || r.rate() < lo {
			lo = r.rate()
		}
		if r.rate() > hi {
			hi = r.rate()
		}
	}
	return lo, hi
}

// medianCPU is the median CPU time per message of this process (the
// client) and of the broker.
func (s summary) medianCPU() (client, broker time.Duration) {
	cs := make([]float64, len(s.runs))
	bs := make([]float64, len(s.runs))
	for i, r := range s.runs {
		cs[i] = float64(r.cpu) / float64(r.n)
		bs[i] = float64(r.broker) / float64(r.n)
	}
	return time.Duration(median(cs)), time.Duration(median(bs))
}

func (s summary) medianElapsed() time.Duration {
	ds := make([]float64, len(s.runs))
	for i, r := range s.runs {
		ds[i] = float64(r.elapsed)
	}
	return time.Duration(median(ds))
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// samples collects durations from many goroutines.
type samples struct {
	mu sync.Mutex
	ds []time.Duration
}

func (s *samples) add(d time.Duration) {
	s.mu.Lock()
	s.ds = append(s.ds, d)
	s.mu.Unlock()
}

// quantile is the q-quantile (nearest rank) of the samples.
func (s *samples) quantile(q float64) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.ds) == 0 {
		return 0
	}
	slices.Sort(s.ds)
	i := int(q*float64(len(s.ds))+0.999999) - 1
	return s.ds[min(max(i, 0), len(s.ds)-1)]
}

func (s *samples) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ds)
}

// stamps maps message ids to a time, for delays measured across deliveries.
type stamps struct {
	mu sync.Mutex
	m  map[string]time.Time
}

func newStamps() *stamps { return &stamps{m: make(map[string]time.Time)} }

func (s *stamps) set(id string, t time.Time) {
	s.mu.Lock()
	s.m[id] = t
	s.mu.Unlock()
}

func (s *stamps) take(id string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.m[id]
	delete(s.m, id)
	return t, ok
}

func micros(d time.Duration) string {
	if d <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f µs", float64(d)/float64(time.Microsecond))
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}

func rate(r float64) string { return fmt.Sprintf("%.0f", r) }

func ratio(x, base float64) string {
	if base == 0 || x == 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f%%", 100*x/base)
}

// times is x as a multiple of base, as in "1.25×".
func times(x, base float64) string {
	if base == 0 || x == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", x/base)
}

// pairedRatio is the median over rounds of s's rate against base's rate in
// the same round.
func pairedRatio(s, base summary) string {
	var rs []float64
	for i, r := range s.runs {
		if i < len(base.runs) && base.runs[i].rate() > 0 {
			rs = append(rs, r.rate()/base.runs[i].rate())
		}
	}
	if len(rs) == 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f%%", 100*median(rs))
}
