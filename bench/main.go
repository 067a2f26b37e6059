// Command bench measures dlxretry against a hand-written amqp091-go loop and
// against peer libraries, in one program and one run, on one broker, with
// the same message size, prefetch and concurrency, and prints markdown
// tables with ratios to the hand-written loop.
//
//	cd bench && go run .
//
// Scenarios (select with -scenarios):
//
//	S1  consume + ack throughput
//	S2  every message fails once, then succeeds, 100 ms first tier
//	S3  publishing with confirms
//	S4  delay accuracy per tier while 1,000 msg/s fail
//	S5  head-of-line: 100 ms retries mixed with 5 s ones
//	S6  the consumer's memory with 0 and with many messages in a tier
//
// It connects to -url, or RABBITMQ_URL, or amqp://guest:guest@127.0.0.1:5672/.
// Every queue and exchange it declares has a unique name and is deleted
// before it exits, also when interrupted. docs/benchmarks.md has the
// results and what they mean.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type config struct {
	url         string
	n           int           // S1: messages per run
	n2          int           // S2: messages per run
	size        int           // body size in bytes
	prefetch    int           // basic.qos prefetch count of every consumer
	concurrency int           // handler goroutines of every consumer
	inflight    int           // S3: unconfirmed publishes at once of the pipelined contenders
	goroutines  []int         // S3: goroutines of the blocking Publish contenders
	s3Time      time.Duration // S3: how long each run publishes
	rounds      int           // measured runs per contender (median reported)
	scenarios   []string      // which of S1..S6
	s4Rate      int           // S4: new failing messages per second
	s4Time      time.Duration // S4: how long to publish them
	s5Pairs     int           // S5: how many 100 ms and 5 s messages each
	s6Messages  int           // S6: messages left waiting in a tier
	timeout     time.Duration // bound on one measured run
	only        []string      // if set, the contender ids to run beside each scenario's first
	cpuProfile  string        // write a CPU profile of the whole run here
	child       string        // internal: run a probe (S6) in this process
	childQueue  string        // internal: the probe's work queue
}

var allScenarios = []string{"S1", "S2", "S3", "S4", "S5", "S6"}

func parseFlags(args []string) (config, error) {
	var c config
	var scen, goroutines, only string
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.StringVar(&c.url, "url", "", "broker URL (default: RABBITMQ_URL, else amqp://guest:guest@127.0.0.1:5672/)")
	fs.IntVar(&c.n, "n", 50000, "S1: messages per run")
	fs.IntVar(&c.n2, "n2", 10000, "S2: messages per run (each is delivered twice)")
	fs.IntVar(&c.size, "size", 1024, "message body size in bytes")
	fs.IntVar(&c.prefetch, "prefetch", 64, "prefetch count (basic.qos) of every consumer")
	fs.IntVar(&c.concurrency, "concurrency", 8, "handler goroutines of every consumer")
	fs.IntVar(&c.inflight, "inflight", 256, "S3: unconfirmed publishes at once of the raw loop and of PublishAsync")
	fs.StringVar(&goroutines, "goroutines", "1,8,64,256", "S3: comma-separated goroutine counts for Publish (go-rabbitmq runs with the last)")
	fs.DurationVar(&c.s3Time, "s3time", 5*time.Second, "S3: how long each run publishes")
	fs.IntVar(&c.rounds, "rounds", 5, "measured runs per contender in S1-S3; the median is reported")
	fs.StringVar(&scen, "scenarios", strings.Join(allScenarios, ","), "comma-separated scenarios to run")
	fs.IntVar(&c.s4Rate, "s4rate", 1000, "S4: failures per second (new messages arrive at a third of it and fail in each of 3 tiers)")
	fs.DurationVar(&c.s4Time, "s4time", 10*time.Second, "S4: how long to publish")
	fs.IntVar(&c.s5Pairs, "s5pairs", 200, "S5: messages of each kind (100 ms and 5 s)")
	fs.IntVar(&c.s6Messages, "s6n", 100000, "S6: messages left waiting in the retry tier")
	fs.DurationVar(&c.timeout, "timeout", 3*time.Minute, "bound on one measured run")
	fs.StringVar(&only, "only", "", "comma-separated contender ids (raw, dlx, async, dlx8, wag, ...) to run beside each scenario's first; default all")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile of the run to this file (go tool pprof)")
	fs.StringVar(&c.child, "child", "", "internal: run a probe in this process")
	fs.StringVar(&c.childQueue, "childqueue", "", "internal: the probe's work queue")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if c.url == "" {
		c.url = defaultURL()
	}
	c.scenarios = strings.Split(strings.ToUpper(strings.ReplaceAll(scen, " ", "")), ",")
	if only != "" {
		c.only = strings.Split(strings.ReplaceAll(only, " ", ""), ",")
	}
	for _, g := range strings.Split(goroutines, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(g))
		if err != nil || n < 1 {
			return c, fmt.Errorf("-goroutines: %q is not a positive number", g)
		}
		c.goroutines = append(c.goroutines, n)
	}
	return c, c.validate()
}

func (c config) validate() error {
	for _, s := range c.scenarios {
		if !slices.Contains(allScenarios, s) {
			return fmt.Errorf("unknown scenario %q (want some of %s)", s, strings.Join(allScenarios, ","))
		}
	}
	switch {
	case c.n < 10 || c.n2 < 10 || c.s6Messages < 1 || c.s5Pairs < 1:
		return fmt.Errorf("-n and -n2 must be at least 10, -s6n and -s5pairs at least 1")
	case c.size < 1:
		return fmt.Errorf("-size must be positive")
	case c.concurrency < 1 || c.prefetch < c.concurrency:
		return fmt.Errorf("want 1 <= -concurrency <= -prefetch")
	case c.inflight < 1 || c.rounds < 1 || c.s4Rate < 1 || c.s4Time <= 0 || c.s3Time <= 0:
		return fmt.Errorf("-inflight, -rounds, -s3time, -s4rate and -s4time must be positive")
	}
	return nil
}

func defaultURL() string {
	if u := os.Getenv("RABBITMQ_URL"); u != "" {
		return u
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if err == flag.ErrHelp {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cfg.child != "" {
		err = runChild(ctx, cfg, os.Stdout)
	} else {
		err = profiled(cfg.cpuProfile, func() error { return run(ctx, cfg, os.Stdout) })
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		stop()
		os.Exit(1)
	}
}

// scenario runs one scenario and returns its markdown section.
type scenario func(ctx context.Context, e *env) (string, error)

var scenarios = map[string]scenario{
	"S1": runS1, "S2": runS2, "S3": runS3, "S4": runS4, "S5": runS5, "S6": runS6,
}

func run(ctx context.Context, cfg config, out io.Writer) error {
	e, err := newEnv(cfg)
	if err != nil {
		return err
	}
	defer e.close()
	start := time.Now()
	fmt.Fprint(out, e.machine())
	for _, name := range allScenarios {
		if !slices.Contains(cfg.scenarios, name) {
			continue
		}
		progress("== %s", name)
		section, err := scenarios[name](ctx, e)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		fmt.Fprintln(out, section)
	}
	fmt.Fprintf(out, "Finished in %s; load average at the end: %s.\n", time.Since(start).Round(time.Second), loadAverage())
	return nil
}

// profiled runs f, writing a CPU profile of it to path unless path is "".
func profiled(path string, f func() error) error {
	if path == "" {
		return f()
	}
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.StartCPUProfile(out); err != nil {
		out.Close()
		return err
	}
	err = f()
	pprof.StopCPUProfile()
	return errors.Join(err, out.Close())
}

// progress reports on stderr, so that stdout holds only the tables.
func progress(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
}
