package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dlxretry/dlxretry"
)

// contender is one way of doing a scenario's job, measured on a size of
// work.
type contender struct {
	id      string // short, for entity names
	name    string
	once    bool   // sleep-bound, so stable: measured in the first round only
	maxN    int    // if set, a run does at most this many messages
	note    string // set when it cannot run: why
	measure func(ctx context.Context, e *env, label string, sz size) (result, error)
}

// size is how much one run does: n messages, or as many as it can in d
// (then n is 0).
type size struct {
	n int
	d time.Duration
}

func (s size) String() string {
	if s.d > 0 {
		return s.d.String()
	}
	return fmt.Sprintf("%d messages", s.n)
}

// of is s for contender c.
func (s size) of(c contender) size {
	if c.maxN > 0 && s.n > c.maxN {
		s.n = c.maxN
	}
	return s
}

// runRounds warms every contender up on warm, then measures each one
// e.cfg.rounds times on sz, rotating the order every round so that no
// contender always runs first or last.
func runRounds(ctx context.Context, e *env, scen string, cs []contender, sz, warm size) ([]summary, error) {
	if e.cfg.only != nil {
		cs = slices.DeleteFunc(slices.Clone(cs), func(c contender) bool { return c.id != cs[0].id && !slices.Contains(e.cfg.only, c.id) })
	}
	sums := make([]summary, len(cs))
	for i, c := range cs {
		sums[i] = summary{name: c.name, note: c.note}
	}
	for _, c := range cs {
		if c.note != "" {
			continue
		}
		progress("%s warm-up: %s (%s)", scen, c.name, warm.of(c))
		if _, err := c.measure(ctx, e, scen+".warm."+c.id, warm.of(c)); err != nil {
			return nil, fmt.Errorf("%s warm-up: %w", c.name, err)
		}
	}
	for r := range e.cfg.rounds {
		for k := range cs {
			i := (k + r) % len(cs)
			c := cs[i]
			if c.note != "" || (c.once && r > 0) {
				continue
			}
			res, err := c.measure(ctx, e, fmt.Sprintf("%s.%d.%s", scen, r+1, c.id), sz.of(c))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", c.name, err)
			}
			progress("%s round %d/%d: %-42s %7.0f msg/s (%s; CPU/msg: client %s, broker %s)", scen, r+1, e.cfg.rounds, c.name,
				res.rate(), res.elapsed.Round(time.Millisecond), micros(res.cpu/time.Duration(res.n)), micros(res.broker/time.Duration(res.n)))
			sums[i].runs = append(sums[i].runs, res)
		}
	}
	return sums, nil
}

// target is what a consume contender consumes from.
type target struct {
	queue string
	topo  dlxretry.Topology // dlxretry contenders
	retry string            // the republishing contender's retry queue
	names []string          // what to delete afterwards
}

type declareFunc func(ctx context.Context, e *env, name string) (target, error)
type consumeFunc func(e *env, t target, m *meter) (*consumer, error)

// consumeRun measures a consumer on a queue filled with n messages
// beforehand: from its first delivery to its n-th success.
func consumeRun(declare declareFunc, consume consumeFunc) func(context.Context, *env, string, size) (result, error) {
	return func(ctx context.Context, e *env, label string, sz size) (res result, err error) {
		n := sz.n
		t, err := declare(ctx, e, e.name(label))
		defer func() {
			if ferr := e.forget(t.names...); ferr != nil && err == nil {
				err = fmt.Errorf("delete: %w", ferr)
			}
		}()
		if err != nil {
			return res, err
		}
		if err := e.fill(ctx, t.queue, "m", n); err != nil {
			return res, fmt.Errorf("fill: %w", err)
		}
		m := newMeter(n)
		cpu, broker := cpuTime(), brokerCPU()
		c, err := consume(e, t, m)
		if err != nil {
			return res, err
		}
		err = waitFor(ctx, m, c, e.cfg.timeout)
		cpu, broker = cpuTime()-cpu, brokerCPU()-broker
		if serr := c.stop(); serr != nil {
			progress("stopping %s: %v", label, serr)
		}
		return result{elapsed: m.elapsed(), n: n, cpu: cpu, broker: broker}, err
	}
}

// plainQueue declares a durable classic queue without arguments.
func plainQueue(_ context.Context, e *env, name string) (target, error) {
	t := target{queue: name, names: []string{name}}
	return t, e.declareQueue(name, nil)
}

// dlxTopology declares a dlxretry topology with the given delays.
func dlxTopology(delays ...time.Duration) declareFunc {
	return func(ctx context.Context, e *env, name string) (target, error) {
		topo := dlxretry.Topology{Queue: name, Delays: delays, MaxAttempts: 10}
		t := target{queue: name, topo: topo, names: []string{name}}
		e.remember(name, func(ch *amqp.Channel) error { return topo.Delete(context.Background(), ch) })
		return t, e.do(func(ch *amqp.Channel) error { return topo.Declare(ctx, ch) })
	}
}

// throughputTable renders contenders' rates, and their client CPU per
// message, against the first one's. "paired" is the median over rounds of
// the rate against the first one's in the same round, which a slow spell
// of the machine moves less than the ratio of medians.
func throughputTable(title string, sums []summary, withDrain bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "### %s\n\n", title)
	head := "| contender | msg/s (median) | min – max |"
	if withDrain {
		head += " time to drain |"
	}
	head += " vs " + sums[0].name + " | paired | CPU/msg: client | client vs first | broker | runs |"
	cols := strings.Count(head, "|") - 1
	b.WriteString(head + "\n|---|" + strings.Repeat("--:|", cols-1) + "\n")
	base := sums[0].medianRate()
	baseCPU, _ := sums[0].medianCPU()
	for _, s := range sums {
		if s.note != "" {
			fmt.Fprintf(&b, "| %s | %s |%s\n", s.name, s.note, strings.Repeat(" |", cols-2))
			continue
		}
		lo, hi := s.rateRange()
		drain := ""
		if withDrain {
			drain = " " + s.medianElapsed().Round(time.Millisecond).String() + " |"
		}
		client, broker := s.medianCPU()
		fmt.Fprintf(&b, "| %s | %s | %s – %s |%s %s | %s | %s | %s | %s | %d |\n", s.name, rate(s.medianRate()), rate(lo), rate(hi), drain,
			ratio(s.medianRate(), base), pairedRatio(s, sums[0]), micros(client), times(float64(client), float64(baseCPU)), micros(broker), len(s.runs))
	}
	return b.String()
}
