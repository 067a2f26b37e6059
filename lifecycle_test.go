package dlxretry_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dlxretry/dlxretry"
	"github.com/dlxretry/dlxretry/internal/brokertest"
	amqp "github.com/rabbitmq/amqp091-go"
)

// logBuffer is a slog destination safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newLog() (*slog.Logger, *logBuffer) {
	b := &logBuffer{}
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

// startRun runs c until the returned cancel; Run's error arrives on done.
func startRun(t *testing.T, c *dlxretry.Consumer) (cancel context.CancelFunc, done <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan error, 1)
	go func() { ch <- c.Run(ctx) }()
	t.Cleanup(cancel)
	return cancel, ch
}

// When the connection dies while a handler runs, the handler's context is
// cancelled and the next connection does not wait for it: a later message is
// handled while the first handler still runs. When Run is then cancelled
// with that handler still running past the shutdown timeout, Run returns a
// *ShutdownError naming it, and what the handler returns afterwards settles
// nothing and reaches no hook.
func TestRunDoesNotWaitForHandlersOfADeadConnection(t *testing.T) {
	long(t)
	t.Parallel()
	topo := declare(t, dlxretry.Classic, delaysMS(50), 3)
	name := brokertest.Name(t, "conn")
	started := make(chan struct{})
	cancelled := make(chan struct{})
	release := make(chan struct{})
	var mu sync.Mutex
	var outcomes []string
	h := func(ctx context.Context, d *dlxretry.Delivery) error {
		if string(d.Body) != "slow" || d.Redelivered {
			return nil
		}
		close(started)
		<-ctx.Done()
		close(cancelled)
		<-release // ignores its context from here on
		return nil
	}
	record := func(what string) {
		mu.Lock()
		outcomes = append(outcomes, what)
		mu.Unlock()
	}
	acks := make(chan string, 10)
	c, err := dlxretry.NewConsumer(brokertest.URL(t), topo, h, dlxretry.WithConnectionName(name),
		dlxretry.WithConcurrency(2), dlxretry.WithShutdownTimeout(300*time.Millisecond),
		dlxretry.WithReconnectDelay(10*time.Millisecond, 100*time.Millisecond),
		dlxretry.WithHooks(dlxretry.Hooks{
			OnAck: func(_ context.Context, e dlxretry.AckEvent) {
				record("ack " + string(e.Delivery.Body))
				acks <- string(e.Delivery.Body)
			},
			OnRetry: func(_ context.Context, e dlxretry.RetryEvent) { record("retry " + string(e.Delivery.Body)) },
			OnPark:  func(_ context.Context, e dlxretry.ParkEvent) { record("park " + string(e.Delivery.Body)) },
		}))
	if err != nil {
		t.Fatal(err)
	}
	cancel, done := startRun(t, c)
	publish(t, topo.Exchange, "k", "slow")
	<-started
	if n, err := brokertest.CloseConnections(name); err != nil || n == 0 {
		t.Fatalf("closed %d connections: %v", n, err)
	}
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the handler's context was not cancelled when its connection died")
	}
	// "slow" comes back redelivered on the new connection and is acked;
	// "fast" too, while the first handler still runs.
	publish(t, topo.Exchange, "k", "fast")
	got := waitN(t, acks, 2, 10*time.Second)
	cancel()
	var err2 error
	select {
	case err2 = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its shutdown timeout")
	}
	var se *dlxretry.ShutdownError
	if !errors.As(err2, &se) || !errors.Is(err2, dlxretry.ErrShutdownTimeout) || len(se.Running) != 1 || se.Running[0].MessageID != "slow" {
		t.Fatalf("Run returned %v (%+v), want a ShutdownError naming slow", err2, se)
	}
	close(release)
	time.Sleep(200 * time.Millisecond) // room for a late settle or hook, which must not come
	mu.Lock()
	defer mu.Unlock()
	if len(outcomes) != 2 {
		t.Errorf("outcomes %v, want the two acks only (got acks %v)", outcomes, got)
	}
	assertEmpty(t, topo)
}

// Cancelling Run stops a connection attempt in progress: here to a port
// that accepts TCP and never speaks AMQP.
func TestRunCancelStopsADial(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c) // held open, silent
		}
	}()
	defer func() { ln.Close(); <-accepted }()
	topo := dlxretry.Topology{Queue: "never.declared", Delays: delaysMS(50), MaxAttempts: 1}
	c, err := dlxretry.NewConsumer("amqp://guest:guest@"+ln.Addr().String()+"/", topo,
		func(context.Context, *dlxretry.Delivery) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	cancel, done := startRun(t, c)
	time.Sleep(300 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run returned %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run still dialing 5s after cancel")
	}
}

// A zero Consumer says so instead of panicking.
func TestZeroConsumerRun(t *testing.T) {
	var c dlxretry.Consumer
	var ce *dlxretry.ConfigError
	if err := c.Run(context.Background()); !errors.As(err, &ce) {
		t.Errorf("Run on a zero Consumer returned %v, want a *ConfigError", err)
	}
}

// A message that breaks the client's connection on every delivery (a table
// nested deeper than amqp091-go reads) does not make Run reconnect in a
// tight loop: the backoff grows, since no connection stays up.
func TestPoisonFrameBacksOff(t *testing.T) {
	t.Parallel()
	topo := declare(t, dlxretry.Classic, delaysMS(50), 3)
	nested := amqp.Table{}
	for range 40 {
		nested = amqp.Table{"n": nested}
	}
	publishMsg(t, topo.Exchange, "k", amqp.Publishing{Body: []byte("poison"), Headers: amqp.Table{"deep": nested}})
	waits := make(chan time.Duration, 100)
	c, err := dlxretry.NewConsumer(brokertest.URL(t), topo, func(context.Context, *dlxretry.Delivery) error { return nil },
		dlxretry.WithReconnectDelay(20*time.Millisecond, 5*time.Second),
		dlxretry.WithHooks(dlxretry.Hooks{OnDisconnect: func(e dlxretry.DisconnectEvent) { waits <- e.RetryIn }}))
	if err != nil {
		t.Fatal(err)
	}
	startRun(t, c)
	var longest time.Duration
	for i := range 8 {
		select {
		case w := <-waits:
			longest = max(longest, w)
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d reconnects", i)
		}
	}
	// Starting over at 20ms every time, no wait would pass 30ms (jitter is
	// ±50%); growing by 1.5 each time, the eighth is at least 170ms.
	if longest < 100*time.Millisecond {
		t.Errorf("longest wait over 8 reconnects was %v: the backoff starts over on every connect", longest)
	}
}

// A message whose headers nearly fill a frame still parks: the parked copy
// leaves off what does not fit and says so, instead of breaking the
// connection with a frame too large, again and again.
func TestParkedCopyFitsInAFrame(t *testing.T) {
	t.Parallel()
	topo := declare(t, dlxretry.Classic, delaysMS(50), 1)
	big := strings.Repeat("b", 130_800) // fits as published, not with the parking headers
	publishMsg(t, topo.Exchange, "k", amqp.Publishing{Body: []byte("big"), DeliveryMode: amqp.Persistent,
		Headers: amqp.Table{"big": big, "small": "kept"}})
	c := newCounter(func(string) bool { return true })
	connects := make(chan string, 10)
	hooks := c.hooks()
	hooks.OnConnect = func(e dlxretry.ConnectEvent) { connects <- e.Broker }
	run(t, topo, c.handle, dlxretry.WithHooks(hooks), dlxretry.WithErrorTextLimit(60_000))
	waitN(t, c.outcomes, 1, 10*time.Second)
	p := getAll(t, topo.ParkingQueue(), 1, 5*time.Second)[0]
	if p.Headers["small"] != "kept" || p.Headers["big"] != nil || p.Headers[dlxretry.HeaderTrimmed] != "big" {
		t.Errorf("parked headers: small=%v, big present=%v, trimmed=%v", p.Headers["small"], p.Headers["big"] != nil, p.Headers[dlxretry.HeaderTrimmed])
	}
	if len(connects) != 1 {
		t.Errorf("%d connects, want 1", len(connects))
	}
	assertEmpty(t, topo)
}

// A panic is logged at Error with its stack, and the parked copy carries the
// stack; a handler that runs far past its timeout is reported.
func TestPanicIsLoggedAndOverrunWarned(t *testing.T) {
	t.Parallel()
	topo := declare(t, dlxretry.Classic, delaysMS(20), 1)
	logger, logs := newLog()
	h := func(ctx context.Context, d *dlxretry.Delivery) error {
		if string(d.Body) == "slow" {
			time.Sleep(1300 * time.Millisecond) // ignores ctx
			return nil
		}
		panic("boom")
	}
	c := newCounter(nil)
	run(t, topo, h, dlxretry.WithHooks(c.hooks()), dlxretry.WithLogger(logger),
		dlxretry.WithHandlerTimeout(100*time.Millisecond))
	publish(t, topo.Exchange, "k", "p", "slow")
	waitN(t, c.outcomes, 2, 10*time.Second)
	p := getAll(t, topo.ParkingQueue(), 1, 5*time.Second)[0]
	if s, _ := p.Headers[dlxretry.HeaderStack].(string); !strings.Contains(s, "panic") || len(s) > 4096 {
		t.Errorf("parked stack header: %d bytes, %.80q", len(s), s)
	}
	out := logs.String()
	if !strings.Contains(out, "level=ERROR msg=\"handler panicked\"") || !strings.Contains(out, "goroutine") {
		t.Errorf("no Error record with a stack for the panic:\n%s", out)
	}
	if !strings.Contains(out, "far past WithHandlerTimeout") {
		t.Errorf("no warning about the overrunning handler:\n%s", out)
	}
}
