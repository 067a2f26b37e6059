// Quickstart runs dlxretry's retry path end to end against a RabbitMQ broker.
//
// It declares a [dlxretry.Topology] for the work queue quickstart.orders,
// fed by the topic exchange quickstart, with three retry tiers of 200ms,
// 400ms and 800ms and at most four attempts per message. It publishes seven
// messages with publisher confirms, then runs a [dlxretry.Consumer] whose
// handler follows a script: some messages succeed at once, some fail ("callback
// down") a few times before they succeed, one fails every time and one is
// malformed, which the handler marks [dlxretry.Permanent]. Every outcome is
// printed as the consumer's [dlxretry.Hooks] report it. Once every message has
// been acked or parked it stops the consumer, lists the parked messages with
// the headers the library added, prints a summary and deletes everything it
// declared, so the broker is left as it was. It takes about two seconds.
//
// Run it from the repository root:
//
//	go run ./examples/quickstart
//
// It connects to RABBITMQ_URL, or to amqp://guest:guest@localhost:5672/ when
// that is unset. The topology is deleted before it starts, too, so a run that
// was interrupted leaves nothing behind that changes the next one.
//
// The output looks like this; lines of the consumer phase may come in another
// order, their content does not change:
//
//	topology quickstart.orders (exchange quickstart, parks after 4 attempts)
//	  tier 1   quickstart.orders.retry.1.200ms.beff2a53
//	  tier 2   quickstart.orders.retry.2.400ms.50b5c8c1
//	  tier 3   quickstart.orders.retry.3.800ms.d481d6e0
//	  parking  quickstart.orders.parking
//	published 7 messages with key order.created
//	ack     hello11 (attempt 1)
//	retry   hello12 attempt 1 failed: callback down -> tier 1 (200ms)
//	park    hello77 after 1 attempt: malformed order (permanent)
//	...
//	ack     hello55 (attempt 4)
//	park    hello99 after 4 attempts: callback down
//	parked  hello77: attempts=1 permanent=true original-key=order.created error="malformed order"
//	parked  hello99: attempts=4 permanent=false original-key=order.created error="callback down"
//	summary: 7 messages, 5 acked, 9 retries, 2 parked
//	deleted topology quickstart.orders
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dlxretry/dlxretry"
)

const (
	defaultURL = "amqp://guest:guest@localhost:5672/"
	routingKey = "order.created"
	// timeout bounds a whole run; a healthy one takes about two seconds.
	timeout = 30 * time.Second
)

func main() {
	brokerURL := os.Getenv("RABBITMQ_URL")
	if brokerURL == "" {
		brokerURL = defaultURL
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, brokerURL, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

// step is what the handler does with one message.
type step struct {
	body      string
	failures  int  // attempts that fail before one succeeds; forever fails them all
	permanent bool // the message is malformed: park it at once
}

const forever = -1

// script is the handler's behaviour, in publishing order.
var script = []step{
	{body: "hello11"},
	{body: "hello12", failures: 1},
	{body: "hello33", failures: 2},
	{body: "hello40"},
	{body: "hello55", failures: 3},
	{body: "hello77", permanent: true},
	{body: "hello99", failures: forever},
}

var errCallbackDown = errors.New("callback down")

// handle is the dlxretry.Handler: nil acks, an error retries, Permanent parks.
func handle(_ context.Context, d *dlxretry.Delivery) error {
	s, ok := lookup(string(d.Body))
	switch {
	case !ok:
		return dlxretry.Permanent(fmt.Errorf("unknown message %q", d.Body))
	case s.permanent:
		return dlxretry.Permanent(errors.New("malformed order"))
	case s.failures == forever || d.Attempt <= s.failures:
		return errCallbackDown
	}
	return nil
}

func lookup(body string) (step, bool) {
	for _, s := range script {
		if s.body == body {
			return s, true
		}
	}
	return step{}, false
}

// topology is the example's topology; prefix namespaces every name in it.
func topology(prefix string) dlxretry.Topology {
	return dlxretry.Topology{
		Queue:       prefix + ".orders",
		Exchange:    prefix,
		Delays:      []time.Duration{200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond},
		MaxAttempts: 4,
	}
}

// run is the whole example under the names main uses.
func run(ctx context.Context, brokerURL string, out io.Writer) error {
	return runWith(ctx, brokerURL, "quickstart", out)
}

// runWith declares the topology named after prefix, publishes the script's
// messages, consumes until each is acked or parked, and deletes the topology.
func runWith(ctx context.Context, brokerURL, prefix string, out io.Writer) (err error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out = &syncWriter{w: out}
	topo := topology(prefix)
	conn, err := dial(brokerURL)
	if err != nil {
		return err
	}
	defer conn.Close()
	defer func() { err = errors.Join(err, tearDown(ctx, conn, topo, out)) }()
	ch, err := setUp(ctx, conn, topo, out)
	if err != nil {
		return err
	}
	if err := publish(ctx, brokerURL, topo.Exchange, out); err != nil {
		return err
	}
	t, err := consume(ctx, brokerURL, topo, out)
	if err != nil {
		return err
	}
	if err := listParked(ch, topo, out); err != nil {
		return err
	}
	fmt.Fprintf(out, "summary: %d messages, %d acked, %d retries, %d parked\n", len(script), t.acks, t.retries, t.parks)
	return nil
}

func dial(brokerURL string) (*amqp.Connection, error) {
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName("dlxretry-quickstart")
	conn, err := amqp.DialConfig(brokerURL, amqp.Config{Properties: props, Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		return nil, fmt.Errorf("cannot connect to RabbitMQ at %s: %w\n"+
			"start a local broker (for example: docker run --rm -d -p 5672:5672 rabbitmq:4,\n"+
			"or apt-get install rabbitmq-server), or point RABBITMQ_URL at yours", redact(brokerURL), err)
	}
	return conn, nil
}

// redact hides the password in a broker URL.
func redact(brokerURL string) string {
	u, err := url.Parse(brokerURL)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// setUp deletes what an interrupted run may have left, declares the
// topology and returns the channel, for reading the parking queue later.
func setUp(ctx context.Context, conn *amqp.Connection, topo dlxretry.Topology, out io.Writer) (*amqp.Channel, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, err
	}
	if err := topo.Delete(ctx, ch); err != nil {
		return nil, fmt.Errorf("clear leftovers: %w", err)
	}
	if err := topo.Declare(ctx, ch); err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "topology %s (exchange %s, parks after %d attempts)\n", topo.Queue, topo.Exchange, topo.MaxAttempts)
	for i := 1; i <= topo.Tiers(); i++ {
		fmt.Fprintf(out, "  tier %d   %s\n", i, topo.TierQueue(i))
	}
	fmt.Fprintf(out, "  parking  %s\n", topo.ParkingQueue())
	return ch, nil
}

// tearDown deletes the topology on a fresh channel (an error may have closed
// the first), with time of its own should ctx have run out.
func tearDown(ctx context.Context, conn *amqp.Connection, topo dlxretry.Topology, out io.Writer) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("delete topology: %w", err)
	}
	defer ch.Close()
	if err := topo.Delete(ctx, ch); err != nil {
		return fmt.Errorf("delete topology: %w", err)
	}
	fmt.Fprintf(out, "deleted topology %s\n", topo.Queue)
	return nil
}

// publish sends the script's messages with a Publisher: each Publish
// returns once the broker has confirmed the message and routed it to a queue.
func publish(ctx context.Context, brokerURL, exchange string, out io.Writer) error {
	pub, err := dlxretry.NewPublisher(brokerURL, dlxretry.WithConnectionName("dlxretry-quickstart-publisher"))
	if err != nil {
		return err
	}
	defer pub.Close()
	for _, s := range script {
		msg := amqp.Publishing{ContentType: "text/plain", MessageId: s.body, Body: []byte(s.body)}
		if err := pub.Publish(ctx, exchange, routingKey, msg); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "published %d messages with key %s\n", len(script), routingKey)
	return nil
}

// consume runs a Consumer until every message has been acked or parked.
func consume(ctx context.Context, brokerURL string, topo dlxretry.Topology, out io.Writer) (*tally, error) {
	t := newTally(out, len(script))
	c, err := dlxretry.NewConsumer(brokerURL, topo, handle,
		dlxretry.WithHooks(t.hooks()),
		dlxretry.WithConcurrency(4),
		dlxretry.WithConnectionName("dlxretry-quickstart"),
		dlxretry.WithLogger(slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelWarn}))),
	)
	if err != nil {
		return nil, err
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	select {
	case <-t.done:
		stop()
		return t, <-done
	case err := <-done:
		if err == nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("consumer stopped early: %w", err)
	case <-ctx.Done():
		stop()
		<-done
		return nil, fmt.Errorf("gave up (%w) with %d of %d messages acked or parked", ctx.Err(), t.settled(), len(script))
	}
}

// listParked takes the parked messages off the parking queue and prints the
// headers the library wrote on them.
func listParked(ch *amqp.Channel, topo dlxretry.Topology, out io.Writer) error {
	for {
		m, ok, err := ch.Get(topo.ParkingQueue(), true)
		if err != nil {
			return fmt.Errorf("read %s: %w", topo.ParkingQueue(), err)
		}
		if !ok {
			return nil
		}
		h := m.Headers
		fmt.Fprintf(out, "parked  %s: attempts=%v permanent=%v original-key=%v error=%q\n", m.Body,
			h[dlxretry.HeaderAttempts], h[dlxretry.HeaderPermanent],
			h[dlxretry.HeaderOriginalRoutingKey], fmt.Sprint(h[dlxretry.HeaderError]))
	}
}

// tally prints and counts outcomes as the hooks report them; done is closed
// once every message has been acked or parked.
type tally struct {
	out                  io.Writer
	total                int
	done                 chan struct{}
	mu                   sync.Mutex
	acks, retries, parks int
	finished             bool
}

func newTally(out io.Writer, total int) *tally {
	return &tally{out: out, total: total, done: make(chan struct{})}
}

func (t *tally) hooks() dlxretry.Hooks {
	return dlxretry.Hooks{OnAck: t.onAck, OnRetry: t.onRetry, OnPark: t.onPark}
}

func (t *tally) onAck(_ context.Context, e dlxretry.AckEvent) {
	fmt.Fprintf(t.out, "ack     %s (attempt %d)\n", e.Delivery.Body, e.Attempt)
	t.count(&t.acks)
}

func (t *tally) onRetry(_ context.Context, e dlxretry.RetryEvent) {
	if e.ParkErr != nil {
		// Parking failed: it goes round the retry path and is parked later.
		fmt.Fprintf(t.out, "park failed for %s: %v\n", e.Delivery.Body, e.ParkErr)
	}
	fmt.Fprintf(t.out, "retry   %s attempt %d failed: %v -> tier %d (%v)\n", e.Delivery.Body, e.Attempt, e.Err, e.Tier, e.Delay)
	t.count(&t.retries)
}

func (t *tally) onPark(_ context.Context, e dlxretry.ParkEvent) {
	why := e.Err.Error()
	var perm *dlxretry.PermanentError
	if errors.As(e.Err, &perm) {
		why += " (permanent)"
	}
	fmt.Fprintf(t.out, "park    %s after %d %s: %s\n", e.Delivery.Body, e.Attempt, plural(e.Attempt, "attempt"), why)
	t.count(&t.parks)
}

func (t *tally) count(n *int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	*n++
	if t.acks+t.parks == t.total && !t.finished {
		t.finished = true
		close(t.done)
	}
}

func (t *tally) settled() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.acks + t.parks
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

// syncWriter serializes writes from the hooks (which run on the consumer's
// handler goroutines) and the logger.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
