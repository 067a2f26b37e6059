// Metrics feeds Prometheus from dlxretry's [dlxretry.Hooks]: counters of
// acks, retries (by tier), parks (by reason) and publishes (by result), and
// a histogram of handler latency by outcome, served on /metrics.
//
// It is a module of its own, so that the library does not depend on the
// Prometheus client. It declares a small topology, publishes 60 messages
// with a [dlxretry.Publisher], and consumes them with a handler that takes a
// few milliseconds and fails some of them: some once, some every time (they
// are parked after three attempts), some permanently. Once every message is
// acked or parked it scrapes its own /metrics over HTTP, prints the
// dlxretry series (without the histogram buckets), and deletes the topology.
// Run it from this directory:
//
//	cd examples/metrics && go run .
//
// With -listen 127.0.0.1:2112 -serve it keeps serving /metrics on that
// address after the load, until Ctrl-C, for a Prometheus to scrape. It
// connects to RABBITMQ_URL, or to amqp://guest:guest@localhost:5672/. The
// output looks like this (the latencies vary):
//
//	metrics on http://127.0.0.1:36415/metrics
//	published 60 messages; consuming
//	# HELP dlxretry_acks_total Deliveries the handler succeeded with.
//	# TYPE dlxretry_acks_total counter
//	dlxretry_acks_total{queue="metrics.jobs"} 46
//	# HELP dlxretry_handler_duration_seconds How long the handler ran, by outcome.
//	# TYPE dlxretry_handler_duration_seconds histogram
//	dlxretry_handler_duration_seconds_sum{outcome="ack",queue="metrics.jobs"} 0.290404079
//	dlxretry_handler_duration_seconds_count{outcome="ack",queue="metrics.jobs"} 46
//	dlxretry_handler_duration_seconds_sum{outcome="park",queue="metrics.jobs"} 0.110292214
//	dlxretry_handler_duration_seconds_count{outcome="park",queue="metrics.jobs"} 14
//	dlxretry_handler_duration_seconds_sum{outcome="retry",queue="metrics.jobs"} 0.1819027
//	dlxretry_handler_duration_seconds_count{outcome="retry",queue="metrics.jobs"} 22
//	# HELP dlxretry_parks_total Messages parked, by reason: permanent error or attempts used up.
//	# TYPE dlxretry_parks_total counter
//	dlxretry_parks_total{queue="metrics.jobs",reason="attempts"} 6
//	dlxretry_parks_total{queue="metrics.jobs",reason="permanent"} 8
//	# HELP dlxretry_publishes_total Publishes, by whether the broker confirmed them.
//	# TYPE dlxretry_publishes_total counter
//	dlxretry_publishes_total{exchange="metrics",result="confirmed"} 60
//	# HELP dlxretry_retries_total Failed deliveries sent to a retry tier, by tier.
//	# TYPE dlxretry_retries_total counter
//	dlxretry_retries_total{queue="metrics.jobs",tier="1"} 16
//	dlxretry_retries_total{queue="metrics.jobs",tier="2"} 6
//	(21 histogram bucket lines left out)
//	deleted topology metrics.jobs
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dlxretry/dlxretry"
)

const (
	defaultURL = "amqp://guest:guest@localhost:5672/"
	messages   = 60
	routingKey = "job.created"
)

// config is one run's settings; tests use a prefix of their own.
type config struct {
	brokerURL string
	prefix    string // names the queue and the exchange
	listen    string // where /metrics is served
	serve     bool   // keep serving after the load until ctx is done
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to serve /metrics on")
	serve := flag.Bool("serve", false, "keep serving /metrics after the load, until Ctrl-C")
	flag.Parse()
	brokerURL := os.Getenv("RABBITMQ_URL")
	if brokerURL == "" {
		brokerURL = defaultURL
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	_, err := runWith(ctx, config{brokerURL: brokerURL, prefix: "metrics", listen: *listen, serve: *serve}, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "metrics:", err)
		os.Exit(1)
	}
}

func topology(prefix string) dlxretry.Topology {
	return dlxretry.Topology{
		Queue:       prefix + ".jobs",
		Exchange:    prefix,
		Delays:      []time.Duration{50 * time.Millisecond, 100 * time.Millisecond},
		MaxAttempts: 3,
	}
}

// runWith serves /metrics, runs the load, prints a scrape and deletes the
// topology. It returns the collectors, for tests.
func runWith(ctx context.Context, cfg config, out io.Writer) (m *metrics, err error) {
	reg := prometheus.NewRegistry()
	m = newMetrics(reg)
	l, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	url := "http://" + l.Addr().String() + "/metrics"
	fmt.Fprintf(out, "metrics on %s\n", url)

	topo := topology(cfg.prefix)
	if err := withChannel(ctx, cfg.brokerURL, func(ch *amqp.Channel) error { return declare(ctx, ch, topo) }); err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, deleteTopology(cfg.brokerURL, topo, out)) }()
	loadCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := load(loadCtx, cfg.brokerURL, topo, m, out); err != nil {
		return nil, err
	}
	if err := printScrape(ctx, url, out); err != nil {
		return nil, err
	}
	if cfg.serve {
		fmt.Fprintln(out, "serving /metrics until Ctrl-C")
		<-ctx.Done()
	}
	return m, nil
}

// load publishes the messages and consumes until each is acked or parked.
func load(ctx context.Context, brokerURL string, topo dlxretry.Topology, m *metrics, out io.Writer) error {
	pub, err := dlxretry.NewPublisher(brokerURL, dlxretry.WithHooks(m.hooks()))
	if err != nil {
		return err
	}
	defer pub.Close()
	for i := range messages {
		body := fmt.Sprintf("job-%02d", i)
		if err := pub.Publish(ctx, topo.Exchange, routingKey, amqp.Publishing{Body: []byte(body)}); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "published %d messages; consuming\n", messages)

	var settled atomic.Int64
	done := make(chan struct{})
	hooks := withProgress(m.hooks(), func() {
		if settled.Add(1) == messages {
			close(done)
		}
	})
	c, err := dlxretry.NewConsumer(brokerURL, topo, work, dlxretry.WithHooks(hooks), dlxretry.WithConcurrency(8))
	if err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	ran := make(chan error, 1)
	go func() { ran <- c.Run(runCtx) }()
	select {
	case <-done:
		stop()
		return <-ran
	case err := <-ran:
		return fmt.Errorf("consumer stopped early: %v", err)
	case <-ctx.Done():
		stop()
		<-ran
		return fmt.Errorf("gave up with %d of %d messages settled: %w", settled.Load(), messages, ctx.Err())
	}
}

// withProgress adds a call of settled to the hooks that end a message's life.
func withProgress(h dlxretry.Hooks, settled func()) dlxretry.Hooks {
	ack, park := h.OnAck, h.OnPark
	h.OnAck = func(ctx context.Context, e dlxretry.AckEvent) { ack(ctx, e); settled() }
	h.OnPark = func(ctx context.Context, e dlxretry.ParkEvent) { park(ctx, e); settled() }
	return h
}

// fate is what the handler does with job i: fail its first failures
// attempts (forever: all of them), or fail it permanently.
func fate(i int) (failures int, permanent bool) {
	switch {
	case i%10 == 9:
		return forever, false
	case i%7 == 6:
		return 0, true
	case i%4 == 1:
		return 1, false
	}
	return 0, false
}

const forever = -1

var errDownstream = errors.New("downstream unavailable")

// work is the handler: a few milliseconds of work, then the job's fate.
func work(ctx context.Context, d *dlxretry.Delivery) error {
	var i int
	if _, err := fmt.Sscanf(string(d.Body), "job-%d", &i); err != nil {
		return dlxretry.Permanent(fmt.Errorf("unknown job %q", d.Body))
	}
	select {
	case <-time.After(time.Duration(1+i%5) * 2 * time.Millisecond):
	case <-ctx.Done():
		return ctx.Err()
	}
	failures, permanent := fate(i)
	switch {
	case permanent:
		return dlxretry.Permanent(errors.New("malformed job"))
	case failures == forever || d.Attempt <= failures:
		return errDownstream
	}
	return nil
}

// printScrape fetches /metrics and prints the dlxretry series without the
// histogram buckets.
func printScrape(ctx context.Context, url string, out io.Writer) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	buckets := 0
	for _, line := range strings.Split(strings.TrimSpace(string(body)), "\n") {
		switch {
		case !strings.Contains(line, "dlxretry_"):
		case strings.Contains(line, "_bucket{"):
			buckets++
		default:
			fmt.Fprintln(out, line)
		}
	}
	fmt.Fprintf(out, "(%d histogram bucket lines left out)\n", buckets)
	return nil
}

func withChannel(ctx context.Context, brokerURL string, f func(*amqp.Channel) error) error {
	conn, err := amqp.DialConfig(brokerURL, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		return fmt.Errorf("cannot connect to RabbitMQ (set RABBITMQ_URL, or run one on localhost:5672): %w", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	return f(ch)
}

// declare deletes what an interrupted run may have left and declares the topology.
func declare(ctx context.Context, ch *amqp.Channel, topo dlxretry.Topology) error {
	if err := topo.Delete(ctx, ch); err != nil {
		return fmt.Errorf("clear leftovers: %w", err)
	}
	return topo.Declare(ctx, ch)
}

func deleteTopology(brokerURL string, topo dlxretry.Topology, out io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := withChannel(ctx, brokerURL, func(ch *amqp.Channel) error { return topo.Delete(ctx, ch) })
	if err != nil {
		return fmt.Errorf("delete topology: %w", err)
	}
	fmt.Fprintf(out, "deleted topology %s\n", topo.Queue)
	return nil
}
