package console

import (
	"context"
	"sync"
	"time"

	"github.com/dlxretry/dlxretry"
	"github.com/dlxretry/dlxretry/internal/parked"
)

// lot is what the console knows of one parking lot. One walk of its queue
// runs at a time (a second one would not see the messages the first
// holds): busy is held for each.
type lot struct {
	queue string
	conn  *dlxretry.Conn
	busy  chan struct{}

	mu   sync.Mutex
	scan scan
}

// scan is the state of the lot's last background summary.
type scan struct {
	Running  bool
	Progress parked.Report // of the running scan
	Summary  *parked.Summary
	Err      error
	Started  time.Time
}

func newLot(conn *dlxretry.Conn, queue string) *lot {
	return &lot{queue: queue, conn: conn, busy: make(chan struct{}, 1)}
}

// parked is the lot's parked.Lot; progress, when not nil, hears each
// hundredth message of a walk.
func (l *lot) parked(progress func(parked.Report)) parked.Lot {
	return parked.Lot{Conn: l.conn, Queue: l.queue, Progress: progress, Every: 100}
}

// acquire waits until no walk runs on the lot and returns the function that
// ends the caller's.
func (l *lot) acquire(ctx context.Context) (release func(), err error) {
	select {
	case l.busy <- struct{}{}:
		return func() { <-l.busy }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// tryAcquire is acquire without the wait.
func (l *lot) tryAcquire() (release func(), ok bool) {
	select {
	case l.busy <- struct{}{}:
		return func() { <-l.busy }, true
	default:
		return nil, false
	}
}

// state returns a copy of the scan state.
func (l *lot) state() scan {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.scan
}

// startScan starts a background summary unless one runs; it runs within
// life and counts in wg.
func (l *lot) startScan(life context.Context, wg *sync.WaitGroup) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.scan.Running {
		return
	}
	l.scan.Running, l.scan.Progress, l.scan.Started = true, parked.Report{}, time.Now()
	wg.Go(func() { l.runScan(life) })
}

func (l *lot) runScan(ctx context.Context) {
	var sum parked.Summary
	release, err := l.acquire(ctx)
	if err == nil {
		sum, err = l.parked(l.setProgress).Summarize(ctx, parked.Selection{})
		release()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.scan.Running, l.scan.Err = false, err
	if err == nil {
		l.scan.Summary = &sum
	}
}

func (l *lot) setProgress(r parked.Report) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.scan.Progress = r
}
