package dlxretry_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlxretry/dlxretry"
	"github.com/dlxretry/dlxretry/internal/brokertest"
	amqp "github.com/rabbitmq/amqp091-go"
)

// Connections reset under many publishing goroutines (the peer gone
// mid-write, "connection reset by peer"): every error Publish,
// PublishAsync and Wait return wraps one the docs name, so that a caller
// can tell what happened to its message; and every message confirmed is
// in the queue.
func TestPublishErrorsAcrossResets(t *testing.T) {
	long(t)
	t.Parallel()
	q := brokertest.Queue(t, "q", nil)
	proxy := startGateProxy(t)
	pub, err := dlxretry.NewPublisher(proxy.URL(t), dlxretry.WithReconnectDelay(10*time.Millisecond, 100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	var (
		published, failed atomic.Int32
		mu                sync.Mutex
		strange           []error
		wg                sync.WaitGroup
	)
	var confirmed sync.Map
	record := func(body string, err error) {
		if err == nil {
			published.Add(1)
			confirmed.Store(body, true)
			return
		}
		failed.Add(1)
		if !documented(err) {
			mu.Lock()
			strange = append(strange, err)
			mu.Unlock()
		}
	}
	end := time.Now().Add(3 * time.Second)
	for g := range 16 {
		wg.Go(func() {
			for i := 0; time.Now().Before(end); i++ {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				body := fmt.Sprintf("g%d-%d", g, i)
				if g%4 == 0 {
					record(body, publishAsync(ctx, pub, q, amqpMsg(body)))
				} else {
					record(body, pub.Publish(ctx, "", q, amqpMsg(body)))
				}
				cancel()
			}
		})
	}
	resets := 0
	for time.Now().Before(end) {
		time.Sleep(time.Duration(20+resets%5*20) * time.Millisecond)
		proxy.reset()
		resets++
	}
	wg.Wait()
	t.Logf("%d resets: %d published, %d failed", resets, published.Load(), failed.Load())
	if failed.Load() == 0 || published.Load() == 0 {
		t.Fatalf("want both failures and successes under resets, got %d and %d", failed.Load(), published.Load())
	}
	queued := map[string]bool{}
	for _, d := range getAll(t, q, messageCount(t, q), 10*time.Second) {
		queued[string(d.Body)] = true
	}
	confirmed.Range(func(body, _ any) bool {
		if !queued[body.(string)] {
			t.Errorf("%s was confirmed but is not in the queue", body)
		}
		return true
	})
	for i, err := range strange {
		if i == 5 {
			t.Errorf("... and %d more", len(strange)-5)
			break
		}
		t.Errorf("a publish returned %q (%T), which wraps none of the errors the docs name", err, errors.Unwrap(err))
	}
}

// publishAsync publishes msg with PublishAsync and waits for its outcome.
func publishAsync(ctx context.Context, pub *dlxretry.Publisher, queue string, msg amqp.Publishing) error {
	c, err := pub.PublishAsync(ctx, "", queue, msg)
	if err != nil {
		return err
	}
	return c.Wait(ctx)
}

// documented reports whether err wraps an error the Publish docs name.
func documented(err error) bool {
	var ae *amqp.Error
	var ce *dlxretry.ConfigError
	var cn *dlxretry.ConnectError
	for _, e := range []error{dlxretry.ErrUnconfirmed, dlxretry.ErrNacked, dlxretry.ErrUnroutable, dlxretry.ErrClosed,
		context.Canceled, context.DeadlineExceeded} {
		if errors.Is(err, e) {
			return true
		}
	}
	switch {
	case errors.As(err, &ce), errors.As(err, &cn):
		return true
	case errors.As(err, &ae):
		return ae.Server // the broker's refusal; amqp091-go's own (a closed channel) is not
	}
	return false
}

// reset closes every connection the proxy relays with a TCP RST, as a peer
// that crashed would: the client's next write fails with "connection reset
// by peer".
func (p *gateProxy) reset() {
	p.mu.Lock()
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	for _, c := range conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		c.Close()
	}
}

// A write that the broker stops reading (its socket buffers full) does not
// hold Publish past its ctx: the write cannot be interrupted, so the
// connection is closed under it, and the next Publish connects again.
func TestPublishStuckWriteEndsWithCtx(t *testing.T) {
	long(t)
	t.Parallel()
	q := brokertest.Queue(t, "q", nil)
	proxy := startGateProxy(t)
	pub, err := dlxretry.NewPublisher(proxy.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	ctx := context.Background()
	if err := pub.Publish(ctx, "", q, amqpMsg("before")); err != nil {
		t.Fatal(err)
	}
	proxy.Close()
	big := amqp.Publishing{Body: make([]byte, 900<<10)} // under the 1 MiB that goes on a channel of its own
	for i := range 20 {
		short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		err := returnsWithin(t, 3*time.Second, "Publish while the broker reads nothing", func() error {
			return pub.Publish(short, "", q, big)
		})
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("publish %d while the broker reads nothing: %v, want the deadline", i, err)
		}
	}
	proxy.Open()
	long, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pub.Publish(long, "", q, amqpMsg("after")); err != nil {
		t.Errorf("publish once the broker reads again: %v", err)
	}
}
