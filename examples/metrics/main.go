// Metrics serves dlxretry's Prometheus series on /metrics with the
// collector of github.com/dlxretry/dlxretry/prometheus (dlxprom): one
// Collector, registered in one line, fed by the hooks it gives to the
// Publisher and the Consumer, and reading the parking queue's depth at
// scrape time.
//
// It is a module of its own, so that the library does not depend on the
// Prometheus client. It declares a small topology, publishes 60 messages
// with a [dlxretry.Publisher], and consumes them with a handler that takes a
// few milliseconds and fails some of them: some once, some every time (they
// are parked after three attempts), some permanently. Once every message is
// acked or parked it scrapes its own /metrics over HTTP, prints the
// dlxretry samples (without the histogram buckets), stops the consumer and
// deletes the topology. Run it from this directory:
//
//	cd examples/metrics && go run .
//
// With -listen 127.0.0.1:2112 -serve it keeps consuming and serving /metrics
// on that address after the load, until Ctrl-C, for a Prometheus to scrape.
// It connects to RABBITMQ_URL, or to amqp://guest:guest@localhost:5672/. The
// output looks like this (the latencies vary):
//
//	metrics on http://127.0.0.1:46699/metrics
//	published 60 messages; consuming
//	dlxretry_connection_failures_total 0
//	dlxretry_connections_up 2
//	dlxretry_deliveries_total{outcome="ack",queue="metrics.jobs"} 46
//	dlxretry_deliveries_total{outcome="park",queue="metrics.jobs"} 14
//	dlxretry_deliveries_total{outcome="retry",queue="metrics.jobs"} 22
//	dlxretry_handler_duration_seconds_sum{outcome="ack",queue="metrics.jobs"} 0.276704345
//	dlxretry_handler_duration_seconds_count{outcome="ack",queue="metrics.jobs"} 46
//	dlxretry_handler_duration_seconds_sum{outcome="park",queue="metrics.jobs"} 0.111095384
//	dlxretry_handler_duration_seconds_count{outcome="park",queue="metrics.jobs"} 14
//	dlxretry_handler_duration_seconds_sum{outcome="retry",queue="metrics.jobs"} 0.17692930399999995
//	dlxretry_handler_duration_seconds_count{outcome="retry",queue="metrics.jobs"} 22
//	dlxretry_handlers_in_flight{queue="metrics.jobs"} 0
//	dlxretry_parking_queue_messages{queue="metrics.jobs"} 14
//	dlxretry_parks_total{queue="metrics.jobs",reason="exhausted"} 6
//	dlxretry_parks_total{queue="metrics.jobs",reason="permanent"} 8
//	dlxretry_publish_duration_seconds_sum{exchange="metrics"} 0.07196126
//	dlxretry_publish_duration_seconds_count{exchange="metrics"} 60
//	dlxretry_publishes_total{exchange="metrics",result="confirmed"} 60
//	dlxretry_reconnects_total 0
//	dlxretry_retries_total{delay="100ms",queue="metrics.jobs",tier="2"} 6
//	dlxretry_retries_total{delay="50ms",queue="metrics.jobs",tier="1"} 16
//	(49 histogram bucket lines left out)
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
	dlxprom "github.com/dlxretry/dlxretry/prometheus"
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
	err := runWith(ctx, config{brokerURL: brokerURL, prefix: "metrics", listen: *listen, serve: *serve}, os.Stdout)
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

// runWith declares the topology, serves /metrics, runs the load, prints a
// scrape and deletes the topology.
func runWith(ctx context.Context, cfg config, out io.Writer) (err error) {
	topo := topology(cfg.prefix)
	if err := withChannel(ctx, cfg.brokerURL, func(ch *amqp.Channel) error { return declare(ctx, ch, topo) }); err != nil {
		return err
	}
	defer func() { err = errors.Join(err, deleteTopology(cfg.brokerURL, topo, out)) }()

	// The collector reads the parking queue's depth on a connection of its own.
	conn, err := dlxretry.NewConn(cfg.brokerURL, dlxretry.WithConnectionName("metrics"))
	if err != nil {
		return err
	}
	defer conn.Close()
	metrics, err := dlxprom.New(dlxprom.WithParkingDepth(conn, topo.Queue))
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics)
	url, stopServing, err := serveMetrics(cfg.listen, reg)
	if err != nil {
		return err
	}
	defer stopServing()
	fmt.Fprintf(out, "metrics on %s\n", url)

	loadCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	stopConsumer, err := load(loadCtx, cfg.brokerURL, topo, metrics, out)
	if err != nil {
		return err
	}
	if err := printScrape(ctx, url, out); err != nil {
		return errors.Join(err, stopConsumer())
	}
	if cfg.serve {
		fmt.Fprintln(out, "serving /metrics until Ctrl-C")
		<-ctx.Done()
	}
	return stopConsumer()
}

func serveMetrics(listen string, reg *prometheus.Registry) (url string, stop func(), err error) {
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	return "http://" + l.Addr().String() + "/metrics", func() { _ = srv.Close() }, nil
}

// load publishes the messages and consumes until each is acked or parked.
// The consumer keeps running, for the scrape to see it connected, until
// stop is called.
func load(ctx context.Context, brokerURL string, topo dlxretry.Topology, m *dlxprom.Collector, out io.Writer) (stop func() error, err error) {
	// Each Hooks value follows the connection of the one it is given to.
	pub, err := dlxretry.NewPublisher(brokerURL, dlxretry.WithHooks(m.Hooks()))
	if err != nil {
		return nil, err
	}
	defer pub.Close()
	for i := range messages {
		body := fmt.Sprintf("job-%02d", i)
		if err := pub.Publish(ctx, topo.Exchange, routingKey, amqp.Publishing{Body: []byte(body)}); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(out, "published %d messages; consuming\n", messages)

	var settled atomic.Int64
	done := make(chan struct{})
	hooks := withProgress(m.Hooks(), func() {
		if settled.Add(1) == messages {
			close(done)
		}
	})
	c, err := dlxretry.NewConsumer(brokerURL, topo, work, dlxretry.WithHooks(hooks), dlxretry.WithConcurrency(8))
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	ran := make(chan error, 1)
	go func() { ran <- c.Run(runCtx) }()
	stop = func() error {
		cancel()
		return <-ran
	}
	select {
	case <-done:
		return stop, nil
	case err := <-ran:
		cancel()
		return nil, fmt.Errorf("consumer stopped early: %v", err)
	case <-ctx.Done():
		return nil, errors.Join(fmt.Errorf("gave up with %d of %d messages settled: %w", settled.Load(), messages, ctx.Err()), stop())
	}
}

// withProgress adds a call of settled to the hooks that end a message's
// life, after the collector has counted it.
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

// printScrape fetches /metrics and prints the dlxretry samples, without the
// histogram buckets and the HELP and TYPE lines.
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
		case !strings.HasPrefix(line, "dlxretry_"):
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
