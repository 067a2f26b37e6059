package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dlxretry/dlxretry"
)

// S6: the consumer's memory with no message waiting and with -s6n messages
// waiting in a retry tier (10 min delay, created by nacking them). It runs
// in a child process that holds nothing but a dlxretry Consumer (and, while
// filling, a publishing connection, closed before measuring), so the
// numbers are the consumer's, not this harness's.

const s6Delay = 10 * time.Minute

// memSnapshot is one measurement, taken after a GC.
type memSnapshot struct {
	State      string `json:"state"`
	HeapInuse  uint64 `json:"heap_inuse"`
	HeapAlloc  uint64 `json:"heap_alloc"`
	RSS        uint64 `json:"rss"`
	Goroutines int    `json:"goroutines"`
	Waiting    int    `json:"waiting"`
}

func s6Topology(queue string) dlxretry.Topology {
	return dlxretry.Topology{Queue: queue, Delays: []time.Duration{s6Delay}, MaxAttempts: 10}
}

func runS6(ctx context.Context, e *env) (string, error) {
	name := e.name("S6")
	topo := s6Topology(name)
	e.remember(name, func(ch *amqp.Channel) error { return topo.Delete(context.Background(), ch) })
	defer func() {
		if err := e.forget(name); err != nil {
			progress("S6: delete: %v", err)
		}
	}()
	progress("S6: consumer in a child process; %d messages into the %s tier", e.cfg.s6Messages, s6Delay)
	snaps, err := s6RunChild(ctx, e, name)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "### S6 memory of a dlxretry Consumer (prefetch %d, concurrency %d)\n\n", e.cfg.prefetch, e.cfg.concurrency)
	b.WriteString("| messages waiting in the retry tier | HeapInuse after GC | HeapAlloc after GC | RSS | goroutines |\n|--:|--:|--:|--:|--:|\n")
	for _, s := range snaps {
		fmt.Fprintf(&b, "| %d | %s | %s | %s | %d |\n", s.Waiting, mib(s.HeapInuse), mib(s.HeapAlloc), mib(s.RSS), s.Goroutines)
	}
	return b.String(), nil
}

func mib(n uint64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// s6RunChild runs this program again as the S6 probe and reads its snapshots.
func s6RunChild(ctx context.Context, e *env, queue string) ([]memSnapshot, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	c := e.cfg
	cmd := exec.CommandContext(ctx, exe, "-child", "s6", "-childqueue", queue, "-url", c.url,
		"-s6n", strconv.Itoa(c.s6Messages), "-size", strconv.Itoa(c.size),
		"-prefetch", strconv.Itoa(c.prefetch), "-concurrency", strconv.Itoa(c.concurrency),
		"-timeout", c.timeout.String())
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("S6 probe: %w", err)
	}
	var snaps []memSnapshot
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		var s memSnapshot
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			return nil, fmt.Errorf("S6 probe output %q: %w", sc.Text(), err)
		}
		snaps = append(snaps, s)
	}
	return snaps, nil
}

func runChild(ctx context.Context, cfg config, out io.Writer) error {
	if cfg.child != "s6" {
		return fmt.Errorf("unknown probe %q", cfg.child)
	}
	return s6Probe(ctx, cfg, out)
}

// s6Probe is the child: start the consumer, measure, nack s6n messages into
// the tier, measure again. The parent deletes the topology.
func s6Probe(ctx context.Context, cfg config, out io.Writer) error {
	e, err := newEnv(cfg)
	if err != nil {
		return err
	}
	defer func() { _ = e.conn.Close() }()
	topo := s6Topology(cfg.childQueue)
	up := make(chan struct{}, 1)
	m := newMeter(cfg.s6Messages)
	hooks := dlxretry.Hooks{OnConnect: func(dlxretry.ConnectEvent) {
		select {
		case up <- struct{}{}:
		default:
		}
	}}
	c, err := dlxConsume(e, topo, func(context.Context, *dlxretry.Delivery) error {
		m.hit()
		return errFail
	}, hooks)
	if err != nil {
		return err
	}
	defer c.stop()
	select {
	case <-up:
	case err := <-c.failed:
		return fmt.Errorf("consumer: %w", err)
	case <-time.After(30 * time.Second):
		return fmt.Errorf("consumer not connected after 30s")
	}
	enc := json.NewEncoder(out)
	if err := enc.Encode(snapshot(e, "idle", 0)); err != nil {
		return err
	}
	if err := e.fill(ctx, topo.Queue, "m", cfg.s6Messages); err != nil {
		return fmt.Errorf("fill: %w", err)
	}
	if err := waitFor(ctx, m, c, cfg.timeout); err != nil {
		return err
	}
	if err := e.waitDepth(ctx, topo.TierQueue(1), cfg.s6Messages, time.Minute); err != nil {
		return err
	}
	return enc.Encode(snapshot(e, "waiting", cfg.s6Messages))
}

// snapshot closes the admin connection (the harness's, not the consumer's),
// lets the consumer settle, collects garbage and reads the numbers.
func snapshot(e *env, state string, waiting int) memSnapshot {
	_ = e.conn.Close()
	time.Sleep(time.Second)
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memSnapshot{
		State: state, HeapInuse: ms.HeapInuse, HeapAlloc: ms.HeapAlloc,
		RSS: rss(), Goroutines: runtime.NumGoroutine(), Waiting: waiting,
	}
}

// rss is the resident set size from /proc/self/status, in bytes.
func rss() uint64 {
	kb, err := strconv.ParseUint(strings.TrimSuffix(fieldOf(readFile("/proc/self/status"), "VmRSS", ":"), " kB"), 10, 64)
	if err != nil {
		return 0
	}
	return kb << 10
}
