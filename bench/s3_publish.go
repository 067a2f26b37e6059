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

// S3: publishing with confirms. Each contender publishes n persistent,
// mandatory messages to a fresh queue through the default exchange, with at
// most -inflight unconfirmed at once: the raw loop as a window of deferred
// confirmations in one goroutine, the libraries' blocking publishes from
// that many goroutines. Timed from the first publish to the last confirm,
// after one publish that sets the connection up.

// publishFunc publishes n messages to queue; it calls ready once set up.
type publishFunc func(ctx context.Context, e *env, queue string, n int, ready func()) error

func publishRun(publish publishFunc) func(context.Context, *env, string, int) (result, error) {
	return func(ctx context.Context, e *env, label string, n int) (res result, err error) {
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
		ready := func() { start, cpu, broker = time.Now(), cpuTime(), brokerCPU() }
		if err := publish(ctx, e, q, n, ready); err != nil {
			return res, err
		}
		return result{elapsed: time.Since(start), n: n, cpu: cpuTime() - cpu, broker: brokerCPU() - broker}, nil
	}
}

func s3Contenders() []contender {
	return []contender{
		{id: "raw", name: "amqp091-go pipelined deferred confirms (raw)", measure: publishRun(s3Raw)},
		{id: "dlx", name: "dlxretry Publisher", measure: publishRun(s3Dlx)},
		{id: "wag", name: "wagslane/go-rabbitmq Publisher (confirm mode)", measure: publishRun(s3Wag)},
	}
}

func s3Raw(ctx context.Context, e *env, queue string, n int, ready func()) error {
	conn, err := amqp.Dial(e.cfg.url)
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	if err := ch.Confirm(false); err != nil {
		return err
	}
	publish := func(i int) (*amqp.DeferredConfirmation, error) {
		return ch.PublishWithDeferredConfirmWithContext(ctx, "", queue, true, false, e.message(strconv.Itoa(i)))
	}
	if err := publishAndWait(ctx, publish); err != nil {
		return err
	}
	ready()
	pending := make(chan *amqp.DeferredConfirmation, e.cfg.inflight)
	for i := range n {
		if len(pending) == cap(pending) {
			if err := waitAll(ctx, []*amqp.DeferredConfirmation{<-pending}); err != nil {
				return err
			}
		}
		dc, err := publish(i)
		if err != nil {
			return err
		}
		pending <- dc
	}
	close(pending)
	for dc := range pending {
		if err := waitAll(ctx, []*amqp.DeferredConfirmation{dc}); err != nil {
			return err
		}
	}
	return nil
}

func publishAndWait(ctx context.Context, publish func(int) (*amqp.DeferredConfirmation, error)) error {
	dc, err := publish(-1)
	if err != nil {
		return err
	}
	return waitAll(ctx, []*amqp.DeferredConfirmation{dc})
}

// fanOut runs publish for message indexes 0..n-1 on -inflight goroutines.
func fanOut(e *env, n int, publish func(i int) error) error {
	var next atomic.Int64
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for range e.cfg.inflight {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
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

func s3Dlx(ctx context.Context, e *env, queue string, n int, ready func()) error {
	p, err := dlxretry.NewPublisher(e.cfg.url, dlxretry.WithConnectionName("dlxretry-bench"))
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
	return fanOut(e, n, publish)
}

func s3Wag(ctx context.Context, e *env, queue string, n int, ready func()) error {
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
	return fanOut(e, n, publish)
}

func runS3(ctx context.Context, e *env) (string, error) {
	sums, err := runRounds(ctx, e, "S3", s3Contenders(), e.cfg.n, min(e.cfg.n, 2000))
	if err != nil {
		return "", err
	}
	title := fmt.Sprintf("S3 publishing with confirms (%d in flight)", e.cfg.inflight)
	return throughputTable(title, sums, false), nil
}
