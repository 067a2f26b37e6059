package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	rabbitmq "github.com/wagslane/go-rabbitmq"

	"github.com/dlxretry/dlxretry"
)

// S3: publishing with confirms. Each contender publishes persistent,
// mandatory messages to a fresh queue through the default exchange for a
// fixed time (-s3time), then waits for its last confirm. The reference is
// the raw amqp091-go loop on 8 channels with a window of 64 deferred
// confirmations each; beside it run the raw loop as one window of
// -inflight, as a window of 8, and on 8 channels with one in flight each;
// the dlxretry Publisher as blocking Publish calls from 1, 8, 64 and 256
// goroutines and as PublishAsync with a window of -inflight from one
// goroutine; go-rabbitmq from 256 goroutines. Timed from the first publish
// to the last confirm, after one publish that sets the connection up.

// publishFunc publishes the messages that next hands out to queue; it calls
// ready once set up, which starts the clock (and next's time).
type publishFunc func(ctx context.Context, e *env, queue string, next func() (int, bool), ready func()) error

func publishRun(publish publishFunc) func(context.Context, *env, string, size) (result, error) {
	return func(ctx context.Context, e *env, label string, sz size) (res result, err error) {
		q := e.name(label)
		defer func() {
			if ferr := e.forget(q); ferr != nil && err == nil {
				err = fmt.Errorf("delete: %w", ferr)
			}
		}()
		if err := e.declareQueue(q, nil); err != nil {
			return res, err
		}
		var start time.Time
		var cpu, broker time.Duration
		var handed atomic.Int64
		var end atomic.Int64 // unix nanoseconds: no message is handed out after it
		ready := func() {
			start, cpu, broker = time.Now(), cpuTime(), brokerCPU()
			end.Store(start.Add(sz.d).UnixNano())
		}
		next := func() (int, bool) {
			if time.Now().UnixNano() >= end.Load() {
				return 0, false
			}
			return int(handed.Add(1) - 1), true
		}
		if err := publish(ctx, e, q, next, ready); err != nil {
			return res, err
		}
		n := int(handed.Load())
		return result{elapsed: time.Since(start), n: n, cpu: cpuTime() - cpu, broker: brokerCPU() - broker}, nil
	}
}

func s3Contenders(cfg config) []contender {
	cs := []contender{
		{id: "raw8", name: "amqp091-go pipelined deferred confirms (raw), 8 goroutines with a channel and 64 in flight each", measure: publishRun(s3RawChannels(8, 64))},
		{id: "raw", name: fmt.Sprintf("amqp091-go pipelined, 1 goroutine, %d in flight", cfg.inflight), measure: publishRun(s3Raw)},
		{id: "rawwin8", name: "amqp091-go pipelined, 1 goroutine, 8 in flight (diagnostic: what 8 waiting callers can have)", measure: publishRun(s3RawChannels(1, 8))},
		{id: "rawch8", name: "amqp091-go, 8 goroutines with a channel and 1 in flight each (diagnostic: 8 waiting callers on 8 channels)", measure: publishRun(s3RawChannels(8, 1))},
		{id: "async", name: fmt.Sprintf("dlxretry PublishAsync, 1 goroutine, %d in flight", cfg.inflight), measure: publishRun(s3Async)},
	}
	for _, g := range cfg.goroutines {
		cs = append(cs, contender{id: "dlx" + strconv.Itoa(g), name: "dlxretry Publish, " + goroutinesN(g), measure: publishRun(s3Dlx(g))})
	}
	g := cfg.goroutines[len(cfg.goroutines)-1]
	return append(cs, contender{id: "wag", name: "wagslane/go-rabbitmq Publisher (confirm mode), " + goroutinesN(g), measure: publishRun(s3Wag(g))})
}

func goroutinesN(n int) string {
	if n == 1 {
		return "1 goroutine"
	}
	return strconv.Itoa(n) + " goroutines"
}

func s3Raw(ctx context.Context, e *env, queue string, next func() (int, bool), ready func()) error {
	conn, err := amqp.Dial(e.cfg.url)
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := rawConfirmChannel(conn)
	if err != nil {
		return err
	}
	if err := rawWindow(ctx, e, ch, queue, one(-1), 1); err != nil {
		return err
	}
	ready()
	return rawWindow(ctx, e, ch, queue, next, e.cfg.inflight)
}

// s3RawChannels is the raw loop on several channels of one connection, a
// goroutine each.
func s3RawChannels(channels, window int) publishFunc {
	return func(ctx context.Context, e *env, queue string, next func() (int, bool), ready func()) error {
		conn, err := amqp.Dial(e.cfg.url)
		if err != nil {
			return err
		}
		defer conn.Close()
		chs := make([]*amqp.Channel, channels)
		for i := range chs {
			if chs[i], err = rawConfirmChannel(conn); err != nil {
				return err
			}
		}
		if err := rawWindow(ctx, e, chs[0], queue, one(-1), 1); err != nil {
			return err
		}
		ready()
		errs := make([]error, channels)
		var wg sync.WaitGroup
		for i, ch := range chs {
			wg.Go(func() { errs[i] = rawWindow(ctx, e, ch, queue, next, window) })
		}
		wg.Wait()
		return errors.Join(errs...)
	}
}

func rawConfirmChannel(conn *amqp.Connection) (*amqp.Channel, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, err
	}
	return ch, ch.Confirm(false)
}

// one hands out message i, once.
func one(i int) func() (int, bool) {
	done := false
	return func() (int, bool) {
		if done {
			return 0, false
		}
		done = true
		return i, true
	}
}

// rawWindow publishes what next hands out with up to window deferred
// confirmations outstanding, waiting for the oldest when full.
func rawWindow(ctx context.Context, e *env, ch *amqp.Channel, queue string, next func() (int, bool), window int) error {
	pending := make(chan *amqp.DeferredConfirmation, window)
	publish := func(i int) error {
		if len(pending) == cap(pending) {
			if err := waitAll(ctx, []*amqp.DeferredConfirmation{<-pending}); err != nil {
				return err
			}
		}
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", queue, true, false, e.message(strconv.Itoa(i)))
		if err == nil {
			pending <- dc
		}
		return err
	}
	for i, ok := next(); ok; i, ok = next() {
		if err := publish(i); err != nil {
			return err
		}
	}
	close(pending)
	for dc := range pending {
		if err := waitAll(ctx, []*amqp.DeferredConfirmation{dc}); err != nil {
			return err
		}
	}
	return nil
}

// fanOut runs publish for what next hands out on that many goroutines.
func fanOut(goroutines int, next func() (int, bool), publish func(i int) error) error {
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for i, ok := next(); ok; i, ok = next() {
				if err := publish(i); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func newDlxPublisher(e *env) (*dlxretry.Publisher, error) {
	return dlxretry.NewPublisher(e.cfg.url, dlxretry.WithConnectionName("dlxretry-bench"))
}

func s3Dlx(goroutines int) publishFunc {
	return func(ctx context.Context, e *env, queue string, next func() (int, bool), ready func()) error {
		p, err := newDlxPublisher(e)
		if err != nil {
			return err
		}
		defer p.Close()
		publish := func(i int) error {
			return p.Publish(ctx, "", queue, e.message(strconv.Itoa(i)))
		}
		if err := publish(-1); err != nil {
			return err
		}
		ready()
		return fanOut(goroutines, next, publish)
	}
}

// s3Async keeps a window of PublishAsync's confirmations, waiting for the
// oldest when full, as the raw loop does.
func s3Async(ctx context.Context, e *env, queue string, next func() (int, bool), ready func()) error {
	p, err := newDlxPublisher(e)
	if err != nil {
		return err
	}
	defer p.Close()
	if err := p.Publish(ctx, "", queue, e.message("-1")); err != nil {
		return err
	}
	ready()
	window := make(chan *dlxretry.Confirmation, e.cfg.inflight)
	for i, ok := next(); ok; i, ok = next() {
		if len(window) == cap(window) {
			if err := (<-window).Wait(ctx); err != nil {
				return err
			}
		}
		c, err := p.PublishAsync(ctx, "", queue, e.message(strconv.Itoa(i)))
		if err != nil {
			return err
		}
		window <- c
	}
	close(window)
	for c := range window {
		if err := c.Wait(ctx); err != nil {
			return err
		}
	}
	return nil
}

func s3Wag(goroutines int) publishFunc {
	return func(ctx context.Context, e *env, queue string, next func() (int, bool), ready func()) error {
		conn, err := rabbitmq.NewConn(e.cfg.url, rabbitmq.WithConnectionOptionsLogger(quiet{}))
		if err != nil {
			return err
		}
		defer conn.Close()
		p, err := rabbitmq.NewPublisher(conn, rabbitmq.WithPublisherOptionsConfirm, rabbitmq.WithPublisherOptionsLogger(quiet{}))
		if err != nil {
			return err
		}
		defer p.Close()
		publish := func(i int) error {
			confs, err := p.PublishWithDeferredConfirmWithContext(ctx, e.body, []string{queue},
				rabbitmq.WithPublishOptionsMandatory,
				rabbitmq.WithPublishOptionsPersistentDelivery,
				rabbitmq.WithPublishOptionsMessageID(strconv.Itoa(i)))
			if err != nil {
				return err
			}
			if len(confs) != 1 || confs[0] == nil {
				return errors.New("go-rabbitmq: no confirmation returned")
			}
			ok, err := confs[0].WaitContext(ctx)
			if err == nil && !ok {
				err = errors.New("go-rabbitmq: publish nacked")
			}
			return err
		}
		if err := publish(-1); err != nil {
			return err
		}
		ready()
		return fanOut(goroutines, next, publish)
	}
}

func runS3(ctx context.Context, e *env) (string, error) {
	sums, err := runRounds(ctx, e, "S3", s3Contenders(e.cfg), size{d: e.cfg.s3Time}, size{d: min(e.cfg.s3Time, time.Second)})
	if err != nil {
		return "", err
	}
	title := fmt.Sprintf("S3 publishing with confirms (%s per run)", e.cfg.s3Time)
	return throughputTable(title, sums, false), nil
}
