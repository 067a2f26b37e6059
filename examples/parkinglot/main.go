// Parkinglot uses [parkinglot.Lot] from a program: it parks three
// messages, lists them, replays the ones that failed with a timeout once
// the cause is gone (after a dry run that counts them) and drops the
// malformed one, saving it as a JSON line first.
//
// Operators do the same from a shell with the dlxretry command and its web
// console (see the README's Parking lot section):
//
//	go install github.com/dlxretry/dlxretry/cmd/dlxretry@latest
//	dlxretry parked summary --queue orders
//
// Run the example from the repository root:
//
//	go run ./examples/parkinglot
//
// It connects to RABBITMQ_URL, or to amqp://guest:guest@localhost:5672/,
// declares the work queue parkinglot.orders with one 50ms retry tier and two
// attempts, and deletes it all at the end. It prints:
//
//	parked order-1 after 2 attempts: upstream timeout
//	parked order-2 after 2 attempts: upstream timeout
//	parked order-3 after 1 attempt: malformed order (permanent)
//	dry run: would replay 2 of 3 parked messages
//	replayed 2 of 3 parked messages
//	handled order-1 at attempt 1, replayed 1 time
//	handled order-2 at attempt 1, replayed 1 time
//	dropped 1 parked message, saved as 1 JSON line
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dlxretry/dlxretry"
	"github.com/dlxretry/dlxretry/parkinglot"
)

func main() {
	url := os.Getenv("RABBITMQ_URL")
	if url == "" {
		url = "amqp://guest:guest@localhost:5672/"
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, url, "parkinglot.orders", os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "parkinglot:", err)
		os.Exit(1)
	}
}

// service fails timeouts until it is healthy and malformed orders always.
type service struct {
	healthy atomic.Bool
	parked  chan struct{} // one per parked message
	mu      sync.Mutex
	handled []string
}

func (s *service) handle(_ context.Context, d *dlxretry.Delivery) error {
	switch {
	case string(d.Body) == "malformed":
		return dlxretry.Permanent(errors.New("malformed order"))
	case !s.healthy.Load():
		return errors.New("upstream timeout")
	}
	replays, _ := d.Headers[parkinglot.HeaderReplays].(int64)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handled = append(s.handled, fmt.Sprintf("handled %s at attempt %d, replayed %d time", d.MessageId, d.Attempt, replays))
	return nil
}

// run parks, lists, replays and drops messages of the work queue queue.
func run(ctx context.Context, url, queue string, out io.Writer) (err error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := dlxretry.Dial(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close()
	topo := dlxretry.Topology{Queue: queue, Delays: []time.Duration{50 * time.Millisecond}, MaxAttempts: 2}
	if err := declare(ctx, conn, topo); err != nil {
		return err
	}
	defer func() { err = errors.Join(err, remove(conn, topo)) }()

	svc := &service{parked: make(chan struct{}, 3)}
	onPark := func(context.Context, dlxretry.ParkEvent) { svc.parked <- struct{}{} }
	consumer, err := dlxretry.NewConsumer(conn, topo, svc.handle, dlxretry.WithHooks(dlxretry.Hooks{OnPark: onPark}))
	if err != nil {
		return err
	}
	runCtx, stopConsumer := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- consumer.Run(runCtx) }()
	defer func() { stopConsumer(); <-done }()

	if err := publish(ctx, conn, queue, "order-1", "order-2", "order-3"); err != nil {
		return err
	}
	for range 3 {
		select {
		case <-svc.parked:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	lot, err := parkinglot.New(conn, queue)
	if err != nil {
		return err
	}
	return operate(ctx, lot, svc, out)
}

// operate is what an operator does with the parking lot.
func operate(ctx context.Context, lot *parkinglot.Lot, svc *service, out io.Writer) error {
	parked, err := lot.List(ctx, parkinglot.Filter{})
	if err != nil {
		return err
	}
	slices.SortFunc(parked, func(a, b parkinglot.Message) int { return strings.Compare(a.MessageID, b.MessageID) })
	for _, m := range parked {
		fmt.Fprintf(out, "parked %s after %d %s: %s%s\n", m.MessageID, m.Attempts, plural(m.Attempts, "attempt"), m.Error,
			map[bool]string{true: " (permanent)"}[m.Permanent])
	}
	timeouts := parkinglot.Filter{ErrorContains: "timeout"}
	rep, err := lot.Replay(ctx, timeouts, parkinglot.DryRun())
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "dry run: would replay %d of %d parked messages\n", rep.Matched, rep.Total)

	svc.healthy.Store(true) // the upstream is back
	if rep, err = lot.Replay(ctx, timeouts); err != nil {
		return err
	}
	fmt.Fprintf(out, "replayed %d of %d parked messages\n", rep.Acted, rep.Total)
	for _, line := range svc.await(ctx, rep.Acted) {
		fmt.Fprintln(out, line)
	}

	var saved bytes.Buffer // a file, in a real tool: dlxretry parked restore reads it back
	if rep, err = lot.Drop(ctx, parkinglot.Filter{ErrorContains: "malformed"}, &saved); err != nil {
		return err
	}
	fmt.Fprintf(out, "dropped %d parked message, saved as %d JSON line\n", rep.Acted, bytes.Count(saved.Bytes(), []byte("\n")))
	return nil
}

// await waits until n messages were handled and returns what it saw, sorted.
func (s *service) await(ctx context.Context, n int) []string {
	for ctx.Err() == nil {
		s.mu.Lock()
		got := slices.Clone(s.handled)
		s.mu.Unlock()
		if len(got) >= n {
			slices.Sort(got)
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

func publish(ctx context.Context, conn *dlxretry.Conn, queue string, ids ...string) error {
	pub, err := dlxretry.NewPublisher(conn)
	if err != nil {
		return err
	}
	defer pub.Close()
	for _, id := range ids {
		body := "{}"
		if id == "order-3" {
			body = "malformed"
		}
		if err := pub.Publish(ctx, "", queue, amqp.Publishing{MessageId: id, Body: []byte(body)}); err != nil {
			return err
		}
	}
	return nil
}

func declare(ctx context.Context, conn *dlxretry.Conn, topo dlxretry.Topology) error {
	ch, err := conn.Channel(ctx)
	if err != nil {
		return err
	}
	defer ch.Close()
	return topo.Declare(ctx, ch)
}

// remove deletes the topology, also after ctx ended.
func remove(conn *dlxretry.Conn, topo dlxretry.Topology) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ch, err := conn.Channel(ctx)
	if err != nil {
		return err
	}
	defer ch.Close()
	return topo.Delete(ctx, ch)
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}
