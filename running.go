package dlxretry

import (
	"context"
	"fmt"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// ShutdownError names the handlers still running when [Consumer.Run]
// returned at its shutdown timeout. Their contexts are cancelled and the
// connection is closed: their messages go back to the queue, and whatever
// they return is discarded. It wraps [ErrShutdownTimeout].
type ShutdownError struct {
	Running []RunningHandler
}

// RunningHandler is a handler still running when Run returned.
type RunningHandler struct {
	MessageID   string
	DeliveryTag uint64
	Since       time.Time // when it started
}

func (e *ShutdownError) Error() string {
	return fmt.Sprintf("%v: %d still running", ErrShutdownTimeout, len(e.Running))
}

func (e *ShutdownError) Unwrap() error { return ErrShutdownTimeout }

// running tracks the handlers one Run started, across its connections.
type running struct {
	base      context.Context // parent of every handler's context
	cancelAll context.CancelFunc
	timeout   time.Duration
	wg        sync.WaitGroup

	mu      sync.Mutex
	next    uint64
	handles map[uint64]RunningHandler

	drainOnce sync.Once
	drained   error
}

func newRunning(ctx context.Context, timeout time.Duration) *running {
	base, cancel := context.WithCancel(context.WithoutCancel(ctx))
	return &running{base: base, cancelAll: cancel, timeout: timeout, handles: make(map[uint64]RunningHandler)}
}

// started records a handler starting on d; call the result when it returns.
func (r *running) started(d amqp.Delivery) func() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.next++
	id := r.next
	r.handles[id] = RunningHandler{MessageID: d.MessageId, DeliveryTag: d.DeliveryTag, Since: time.Now()}
	return func() {
		r.mu.Lock()
		delete(r.handles, id)
		r.mu.Unlock()
	}
}

// drain waits up to the timeout for every handler to return, then cancels
// those left and names them. Later calls return the first call's result.
func (r *running) drain() error {
	r.drainOnce.Do(func() { r.drained = r.wait() })
	return r.drained
}

func (r *running) wait() error {
	done := make(chan struct{})
	go func() {
		r.wg.Wait()
		close(done)
	}()
	t := time.NewTimer(r.timeout)
	defer t.Stop()
	select {
	case <-done:
		r.cancelAll()
		return nil
	case <-t.C:
	}
	r.cancelAll()
	r.mu.Lock()
	defer r.mu.Unlock()
	e := &ShutdownError{}
	for _, h := range r.handles {
		e.Running = append(e.Running, h)
	}
	return e
}
