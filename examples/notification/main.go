// Notification retells a retry architecture for an SMS service: a
// notification exchange, an SMS queue bound to it with the direct key mobile,
// tiered retries through dead-letter exchanges, a threshold, and parking.
//
// A message can fail for two reasons. Invalid data (a phone number that is
// not one, a body that is not JSON) will fail every time: the handler
// returns a [dlxretry.Permanent] error and the message is parked at once,
// with the reason in its headers, for whoever must be told about it. An
// unavailable resource (the SMS gateway is busy) may be back in
// milliseconds or seconds: the handler returns a plain error and the message
// waits in a retry tier, 100ms after the first failure, 300ms after the
// second and 900ms after each later one, and comes back to SMS. After four
// attempts (the threshold) it is parked too.
//
// It declares the topology, publishes six SMS with publisher confirms, runs
// a [dlxretry.Consumer] until each has been sent or parked, prints the
// parked messages with the headers the library wrote, and deletes the
// topology. It takes about two seconds. Run it from the repository root:
//
//	go run ./examples/notification
//
// It connects to RABBITMQ_URL, or to amqp://guest:guest@localhost:5672/. The
// names are the ones the story uses (exchange notification, queue SMS), so
// two runs at once on one broker get in each other's way. The output looks
// like this; lines of the consumer phase may come in another order:
//
//	exchange notification (direct) -> queue SMS with key mobile
//	  retry tiers 100ms, 300ms, 900ms; parked after 4 attempts in SMS.parking
//	published 6 SMS
//	sent    +4915112345678 "Your code is 4711" (attempt 1)
//	retry   +441632960961 attempt 1 failed: SMS gateway busy -> tier 1, back in 100ms
//	retry   +15555550100 attempt 1 failed: SMS gateway busy -> tier 1, back in 100ms
//	retry   +33612345678 attempt 1 failed: SMS gateway busy -> tier 1, back in 100ms
//	park    "0176 123" after 1 attempt: invalid phone number "0176 123" (permanent)
//	park    "SMS to +4915112345678: Hi" after 1 attempt: unreadable SMS: invalid character 'S' looking for beginning of value (permanent)
//	retry   +441632960961 attempt 2 failed: SMS gateway busy -> tier 2, back in 300ms
//	sent    +33612345678 "Table for two at 8pm" (attempt 2)
//	retry   +15555550100 attempt 2 failed: SMS gateway busy -> tier 2, back in 300ms
//	sent    +441632960961 "Your parcel arrives today" (attempt 3)
//	retry   +15555550100 attempt 3 failed: SMS gateway busy -> tier 3, back in 900ms
//	park    +15555550100 after 4 attempts: SMS gateway busy
//	parked  {"to":"0176 123","text":"Hi"}
//	          x-dlxretry-attempts             1
//	          x-dlxretry-error                invalid phone number "0176 123"
//	          x-dlxretry-original-exchange    notification
//	          x-dlxretry-original-routing-key mobile
//	          x-dlxretry-parked-at            2026-11-23 09:39:09 +0000 UTC
//	          x-dlxretry-permanent            true
//	          x-dlxretry-queue                SMS
//	parked  SMS to +4915112345678: Hi
//	          ...
//	parked  {"to":"+15555550100","text":"Payment received"}
//	          x-dlxretry-attempts             4
//	          x-dlxretry-error                SMS gateway busy
//	          ...
//	          x-dlxretry-permanent            false
//	          x-dlxretry-queue                SMS
//	summary: 6 SMS, 3 sent, 6 retries, 3 parked
//	deleted topology SMS
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dlxretry/dlxretry"
)

const defaultURL = "amqp://guest:guest@localhost:5672/"

// names are the exchange, queue and binding key; tests use their own.
type names struct {
	exchange, queue, key string
}

var storyNames = names{exchange: "notification", queue: "SMS", key: "mobile"}

// bodies are the SMS the example publishes.
var bodies = []string{
	`{"to":"+4915112345678","text":"Your code is 4711"}`,
	`{"to":"+441632960961","text":"Your parcel arrives today"}`,
	`{"to":"+33612345678","text":"Table for two at 8pm"}`,
	`{"to":"+15555550100","text":"Payment received"}`,
	`{"to":"0176 123","text":"Hi"}`,
	`SMS to +4915112345678: Hi`,
}

// busy is how many sends the gateway refuses per number.
var busy = map[string]int{"+441632960961": 2, "+33612345678": 1, "+15555550100": forever}

func topology(n names) dlxretry.Topology {
	return dlxretry.Topology{
		Queue:        n.queue,
		Exchange:     n.exchange,
		ExchangeKind: amqp.ExchangeDirect,
		BindingKeys:  []string{n.key},
		Delays:       []time.Duration{100 * time.Millisecond, 300 * time.Millisecond, 900 * time.Millisecond},
		MaxAttempts:  4,
	}
}

func main() {
	brokerURL := os.Getenv("RABBITMQ_URL")
	if brokerURL == "" {
		brokerURL = defaultURL
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, brokerURL, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "notification:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, brokerURL string, out io.Writer) error {
	_, err := runWith(ctx, brokerURL, storyNames, out)
	return err
}

// result is what a run did, for tests.
type result struct {
	sent, retries, parks int
	parked               []amqp.Delivery
	gatewaySent          map[string]int
}

// runWith declares the topology, publishes the SMS, consumes until each is
// sent or parked, lists the parked ones and deletes the topology.
func runWith(ctx context.Context, brokerURL string, n names, out io.Writer) (res *result, err error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out = &syncWriter{w: out}
	topo := topology(n)
	conn, err := amqp.DialConfig(brokerURL, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		return nil, fmt.Errorf("cannot connect to RabbitMQ (set RABBITMQ_URL, or run one on localhost:5672): %w", err)
	}
	defer conn.Close()
	ch, err := setUp(ctx, conn, topo, out)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, tearDown(ctx, ch, topo, out)) }()
	if err := publish(ctx, brokerURL, n, out); err != nil {
		return nil, err
	}
	gw := newGateway(busy)
	t, err := consume(ctx, brokerURL, topo, gw, out)
	if err != nil {
		return nil, err
	}
	res = &result{sent: t.acks, retries: t.retries, parks: t.parks, gatewaySent: gw.sentTo()}
	if res.parked, err = listParked(ch, topo, out); err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "summary: %d SMS, %d sent, %d retries, %d parked\n", len(bodies), t.acks, t.retries, t.parks)
	return res, nil
}

// setUp deletes what an interrupted run may have left and declares the topology.
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
	delays := make([]string, len(topo.Delays))
	for i, d := range topo.Delays {
		delays[i] = d.String()
	}
	fmt.Fprintf(out, "exchange %s (%s) -> queue %s with key %s\n", topo.Exchange, topo.ExchangeKind, topo.Queue, topo.BindingKeys[0])
	fmt.Fprintf(out, "  retry tiers %s; parked after %d attempts in %s\n", strings.Join(delays, ", "), topo.MaxAttempts, topo.ParkingQueue())
	return ch, nil
}

func tearDown(ctx context.Context, ch *amqp.Channel, topo dlxretry.Topology, out io.Writer) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := topo.Delete(ctx, ch); err != nil {
		return fmt.Errorf("delete topology: %w", err)
	}
	fmt.Fprintf(out, "deleted topology %s\n", topo.Queue)
	return nil
}

// publish sends each SMS to the exchange with the key, persistent, mandatory
// and confirmed.
func publish(ctx context.Context, brokerURL string, n names, out io.Writer) error {
	pub, err := dlxretry.NewPublisher(brokerURL, dlxretry.WithConnectionName("dlxretry-notification-publisher"))
	if err != nil {
		return err
	}
	defer pub.Close()
	for _, b := range bodies {
		msg := amqp.Publishing{ContentType: "application/json", Body: []byte(b)}
		if err := pub.Publish(ctx, n.exchange, n.key, msg); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "published %d SMS\n", len(bodies))
	return nil
}

// consume runs a Consumer until every SMS has been sent or parked.
func consume(ctx context.Context, brokerURL string, topo dlxretry.Topology, gw *gateway, out io.Writer) (*tally, error) {
	t := &tally{out: out, total: len(bodies), done: make(chan struct{})}
	c, err := dlxretry.NewConsumer(brokerURL, topo, gw.handle,
		dlxretry.WithHooks(t.hooks()),
		dlxretry.WithConcurrency(4),
		dlxretry.WithConnectionName("dlxretry-notification"))
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
		return nil, fmt.Errorf("consumer stopped early: %v", err)
	case <-ctx.Done():
		stop()
		<-done
		return nil, fmt.Errorf("gave up (%w) with %d of %d SMS sent or parked", ctx.Err(), t.settled(), t.total)
	}
}

// listParked takes the parked messages off the parking queue and prints the
// headers the library wrote on them.
func listParked(ch *amqp.Channel, topo dlxretry.Topology, out io.Writer) ([]amqp.Delivery, error) {
	var parked []amqp.Delivery
	for {
		m, ok, err := ch.Get(topo.ParkingQueue(), true)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", topo.ParkingQueue(), err)
		}
		if !ok {
			return parked, nil
		}
		parked = append(parked, m)
		fmt.Fprintf(out, "parked  %s\n", m.Body)
		var keys []string
		for k := range m.Headers {
			if strings.HasPrefix(k, "x-dlxretry-") {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(out, "          %-31s %v\n", k, m.Headers[k])
		}
	}
}

// tally prints and counts outcomes as the hooks report them; done is closed
// once every SMS has been sent or parked.
type tally struct {
	out                  io.Writer
	total                int
	done                 chan struct{}
	mu                   sync.Mutex
	acks, retries, parks int
}

func (t *tally) hooks() dlxretry.Hooks {
	return dlxretry.Hooks{OnAck: t.onAck, OnRetry: t.onRetry, OnPark: t.onPark}
}

func (t *tally) onAck(_ context.Context, e dlxretry.AckEvent) {
	var sms SMS
	_ = json.Unmarshal(e.Delivery.Body, &sms)
	fmt.Fprintf(t.out, "sent    %s %q (attempt %d)\n", sms.To, sms.Text, e.Attempt)
	t.count(&t.acks)
}

func (t *tally) onRetry(_ context.Context, e dlxretry.RetryEvent) {
	if e.ParkErr != nil {
		fmt.Fprintf(t.out, "park failed for %s: %v\n", recipient(e.Delivery), e.ParkErr)
	}
	fmt.Fprintf(t.out, "retry   %s attempt %d failed: %v -> tier %d, back in %v\n", recipient(e.Delivery), e.Attempt, e.Err, e.Tier, e.Delay)
	t.count(&t.retries)
}

func (t *tally) onPark(_ context.Context, e dlxretry.ParkEvent) {
	why := e.Err.Error()
	var perm *dlxretry.PermanentError
	if errors.As(e.Err, &perm) {
		why += " (permanent)"
	}
	attempts := "attempts"
	if e.Attempt == 1 {
		attempts = "attempt"
	}
	fmt.Fprintf(t.out, "park    %s after %d %s: %s\n", recipient(e.Delivery), e.Attempt, attempts, why)
	t.count(&t.parks)
}

func (t *tally) count(n *int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	*n++
	if t.acks+t.parks == t.total {
		close(t.done)
	}
}

func (t *tally) settled() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.acks + t.parks
}

// recipient names an SMS by its number, or quotes a body that has none.
func recipient(d *dlxretry.Delivery) string {
	var sms SMS
	if json.Unmarshal(d.Body, &sms) != nil || !phoneNumber.MatchString(sms.To) {
		if sms.To != "" {
			return fmt.Sprintf("%q", sms.To)
		}
		return fmt.Sprintf("%q", d.Body)
	}
	return sms.To
}

// syncWriter serializes writes from the hooks, which run on the consumer's
// goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
