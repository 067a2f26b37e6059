package clustertest_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dlxretry/dlxretry"
	amqp "github.com/rabbitmq/amqp091-go"
)

// The workload: message "m-<i>" fails once when i%5 == 0 (20%) and always
// when i%100 == 1 (1%), on a schedule of 200 and 400 ms with 3 attempts.
const (
	maxAttempts = 3
	concurrency = 8
	prefetch    = 32
	publishers  = 8
	perSecond   = 600 // publishes a second, all publishers together
)

var delays = []time.Duration{200 * time.Millisecond, 400 * time.Millisecond}

func alwaysFails(i int) bool { return i%100 == 1 }
func failsOnce(i int) bool   { return i%5 == 0 }

// wantAttempt is the attempt on which message i succeeds.
func wantAttempt(i int) int {
	if failsOnce(i) {
		return 2
	}
	return 1
}

var errScripted = errors.New("scripted failure")

func messages(t *testing.T) int {
	if s := os.Getenv(messagesEnv); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 100 {
			t.Fatalf("%s=%q: want a number of messages, at least 100", messagesEnv, s)
		}
		return n
	}
	return 3000
}

func downtime(t *testing.T) time.Duration {
	if s := os.Getenv(downEnv); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			t.Fatalf("%s=%q: want a duration", downEnv, s)
		}
		return d
	}
	return 5 * time.Second
}

// load publishes n messages and counts, by id, what became of each.
type load struct {
	n     int
	topo  dlxretry.Topology
	start time.Time
	log   *logCounter

	mu           sync.Mutex
	published    []int          // id -> times Publish returned nil
	pubErrs      map[string]int // kind of error -> count
	pubErrSample map[string]string
	maybeRouted  int             // failed publishes that may have been routed all the same
	nackRun      span            // the current run of nacks, from the first to the next success
	longestNacks time.Duration   // the longest run of nacks
	succeeded    []int           // id -> times the handler returned nil
	calls        []int           // id -> handler calls
	wrongAttempt map[int]int     // id -> the attempt it succeeded on, if not the expected one
	handled      []time.Duration // when each handler call started, since start
	retried      []time.Duration // the same for calls with Attempt >= 2
	parkFailures int             // parkings that failed (the message went round again)
	parkFailed   map[int]int     // id -> its parkings that failed
	parkFailErr  string
	consumerDown []string       // the errors of the consumer's ended sessions
	publisherEvt map[string]int // the Publisher's OnConnect and OnDisconnect counts
	pubDownErr   []string
	parkedSeen   int // what the parking queue held when last counted
}

type span struct{ from, to time.Time }

func newLoad(n int, topo dlxretry.Topology) *load {
	start := time.Now()
	return &load{
		n: n, topo: topo, start: start, log: newLogCounter(start),
		published: make([]int, n), succeeded: make([]int, n), calls: make([]int, n),
		pubErrs: map[string]int{}, pubErrSample: map[string]string{},
		wrongAttempt: map[int]int{}, publisherEvt: map[string]int{}, parkFailed: map[int]int{},
	}
}

func msgID(i int) string { return "m-" + strconv.Itoa(i) }

func parseID(body []byte) int {
	i, err := strconv.Atoi(strings.TrimPrefix(string(body), "m-"))
	if err != nil {
		return -1
	}
	return i
}

func (l *load) handle(ctx context.Context, d *dlxretry.Delivery) error {
	i := parseID(d.Body)
	l.mu.Lock()
	defer l.mu.Unlock()
	since := time.Since(l.start)
	l.handled = append(l.handled, since)
	if d.Attempt >= 2 {
		l.retried = append(l.retried, since)
	}
	if i < 0 || i >= l.n {
		return dlxretry.Permanent(fmt.Errorf("not a message of this test: %q", d.Body))
	}
	l.calls[i]++
	if alwaysFails(i) || (failsOnce(i) && d.Attempt == 1) {
		return errScripted
	}
	l.succeeded[i]++
	if d.Attempt != wantAttempt(i) {
		l.wrongAttempt[i] = d.Attempt
	}
	return nil
}

func (l *load) consumerHooks() dlxretry.Hooks {
	return dlxretry.Hooks{
		OnRetry: func(_ context.Context, e dlxretry.RetryEvent) {
			if e.ParkErr != nil {
				l.mu.Lock()
				l.parkFailures++
				l.parkFailed[parseID(e.Delivery.Body)]++
				l.parkFailErr = e.ParkErr.Error()
				l.mu.Unlock()
			}
		},
		OnDisconnect: func(e dlxretry.DisconnectEvent) {
			l.mu.Lock()
			l.consumerDown = append(l.consumerDown, fmt.Sprint(e.Err))
			l.mu.Unlock()
		},
	}
}

func (l *load) publisherHooks() dlxretry.Hooks {
	return dlxretry.Hooks{
		OnConnect: func(dlxretry.ConnectEvent) {
			l.mu.Lock()
			l.publisherEvt["connect"]++
			l.mu.Unlock()
		},
		OnDisconnect: func(e dlxretry.DisconnectEvent) {
			l.mu.Lock()
			l.publisherEvt["disconnect"]++
			l.pubDownErr = append(l.pubDownErr, fmt.Sprint(e.Err))
			l.mu.Unlock()
		},
	}
}

// publishAll publishes every message, perSecond a second from several
// goroutines, and returns when each has been confirmed once.
func (l *load) publishAll(t *testing.T, p *dlxretry.Publisher) {
	var wg sync.WaitGroup
	for w := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(time.Second * publishers / perSecond)
			defer tick.Stop()
			for i := w; i < l.n; i += publishers {
				<-tick.C
				l.publishOne(t, p, i)
			}
		}()
	}
	wg.Wait()
}

// publishOne publishes message i until the broker confirms it, as a user
// would: each failed Publish is tried again after a short pause, whatever
// the error, for up to three minutes.
func (l *load) publishOne(t *testing.T, p *dlxretry.Publisher, i int) {
	deadline := time.Now().Add(3 * time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := p.Publish(ctx, l.topo.Exchange, "load", amqp.Publishing{Body: []byte(msgID(i)), MessageId: msgID(i)})
		cancel()
		l.published1(i, err)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("publish %s: still failing after 3 minutes: %v", msgID(i), err)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (l *load) published1(i int, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if err == nil {
		l.published[i]++
		if !l.nackRun.from.IsZero() {
			l.longestNacks = max(l.longestNacks, now.Sub(l.nackRun.from))
			l.nackRun = span{}
		}
		return
	}
	kind := errKind(err)
	l.pubErrs[kind]++
	if _, ok := l.pubErrSample[kind]; !ok {
		l.pubErrSample[kind] = err.Error()
	}
	if kind == "nacked" && l.nackRun.from.IsZero() {
		l.nackRun.from = now
	}
	if kind != "nacked" && kind != "unroutable" {
		l.maybeRouted++ // unconfirmed, timed out or unknown: it may be in the queue
	}
}

// errKind sorts a publish error by the library error it wraps; "other"
// wraps none of them.
func errKind(err error) string {
	var ce *dlxretry.ConnectError
	switch {
	case errors.Is(err, dlxretry.ErrNacked):
		return "nacked"
	case errors.Is(err, dlxretry.ErrUnconfirmed):
		return "unconfirmed"
	case errors.Is(err, dlxretry.ErrUnroutable):
		return "unroutable"
	case errors.Is(err, dlxretry.ErrClosed):
		return "closed"
	case errors.As(err, &ce):
		return "connect"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return "other"
}

// settled reports whether every message that should succeed has, and how
// many that should be parked are not yet.
func (l *load) settledOK() (ok bool, missing int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range l.n {
		if !alwaysFails(i) && l.succeeded[i] == 0 {
			missing++
		}
	}
	return missing == 0, missing
}

// progress says how far the messages got.
func (l *load) progress() string {
	_, missing := l.settledOK()
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprintf("%d messages not yet succeeded, %d of %d parked", missing, l.parkedSeen, l.wantParked())
}

func (l *load) wantParked() int {
	n := 0
	for i := range l.n {
		if alwaysFails(i) {
			n++
		}
	}
	return n
}

// counts is one test's accounting, a row of the closing table.
type counts struct {
	Fault          string
	Published      int
	PublishErrors  map[string]int
	Succeeded      int // messages that succeeded, each counted once
	Parked         int // messages parked, each counted once
	Lost           int
	Wrong          int // a message with the wrong outcome or attempt
	Duplicates     int
	DuplicateBound int
	MaxCalls       int           // the most handler calls one message had
	Outage         time.Duration // from the fault until the node was back
	Stall          time.Duration
	RetryStall     time.Duration
	NackRun        time.Duration
	Settle         time.Duration
	ParkFailures   int
}

// account counts, by id, what became of every message, given the attempts
// of each copy the parking queue held. A parked copy records MaxAttempts
// attempts, and up to one more for each parking of that message that
// failed: the message then went round the retry path again.
func (l *load) account(t *testing.T, parkedCopies map[int][]int) counts {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	parked := map[int]int{}
	for i, attempts := range parkedCopies {
		parked[i] = len(attempts)
		for _, n := range attempts {
			if failed := l.parkFailed[i]; n < maxAttempts || n > maxAttempts+failed {
				t.Errorf("%s parked after %d attempts, want %d (or up to %d more, one for each of its parkings that failed)",
					msgID(i), n, maxAttempts, failed)
			}
		}
	}
	var c counts
	for i := range l.n {
		if l.published[i] == 0 {
			t.Errorf("%s was never published", msgID(i))
		}
		switch {
		case alwaysFails(i) && parked[i] == 0:
			c.Lost++
			t.Errorf("%s is not parked (%d handler calls)", msgID(i), l.calls[i])
		case alwaysFails(i) && l.succeeded[i] > 0, !alwaysFails(i) && parked[i] > 0:
			c.Wrong++
			t.Errorf("%s: wrong outcome: %d successes, %d parked", msgID(i), l.succeeded[i], parked[i])
		case !alwaysFails(i) && l.succeeded[i] == 0:
			c.Lost++
			t.Errorf("%s never succeeded (%d handler calls)", msgID(i), l.calls[i])
		}
		if l.succeeded[i] > 0 {
			c.Succeeded++
		}
		if parked[i] > 0 {
			c.Parked++
		}
		c.Duplicates += max(0, l.succeeded[i]-1) + max(0, parked[i]-1)
		c.MaxCalls = max(c.MaxCalls, l.calls[i])
		c.Published += min(1, l.published[i])
	}
	for i, a := range l.wrongAttempt {
		c.Wrong++
		t.Errorf("%s succeeded on attempt %d, want %d", msgID(i), a, wantAttempt(i))
	}
	for i := range parked {
		if i < 0 || i >= l.n {
			t.Errorf("a message of no id was parked")
		}
	}
	c.PublishErrors = maps(l.pubErrs)
	c.NackRun = l.longestNacks
	if !l.nackRun.from.IsZero() {
		c.NackRun = max(c.NackRun, time.Since(l.nackRun.from))
	}
	c.ParkFailures = l.parkFailures
	return c
}

func maps(m map[string]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// longestGap is the longest time between from and the last handler call of
// times before to (all since l.start) without a handler call. The time
// after the last call is not a stall: it is the wait for what is settled
// to show (a parking confirm, a count).
func longestGap(times []time.Duration, from, to time.Duration) time.Duration {
	ts := slices.Clone(times)
	slices.Sort(ts)
	gap, last := time.Duration(0), from
	for _, x := range ts {
		if x < from {
			continue
		}
		if x > to {
			break
		}
		gap = max(gap, x-last)
		last = x
	}
	return gap
}

// row is c as a Markdown table row.
func (c counts) row() string {
	var errs []string
	for _, k := range []string{"nacked", "unconfirmed", "timeout", "connect", "closed", "unroutable", "other"} {
		if n := c.PublishErrors[k]; n > 0 {
			errs = append(errs, fmt.Sprintf("%d %s", n, k))
		}
	}
	if len(errs) == 0 {
		errs = []string{"none"}
	}
	return fmt.Sprintf("| %s | %.1fs | %d | %s | %d | %d | %d | %d (≤ %d) | %d | %.1fs | %.1fs | %.1fs | %.1fs |",
		c.Fault, c.Outage.Seconds(), c.Published, strings.Join(errs, ", "), c.Succeeded, c.Parked, c.Lost, c.Duplicates, c.DuplicateBound,
		c.MaxCalls, c.Stall.Seconds(), c.RetryStall.Seconds(), c.NackRun.Seconds(), c.Settle.Seconds())
}

const tableHead = "| fault | outage | published | publish errors (retried) | succeeded | parked | lost | duplicates (bound) | max calls/msg | stall | retry stall | nack run | settle |\n" +
	"|---|---|---|---|---|---|---|---|---|---|---|---|---|"

// report logs the row and appends it to DLXRETRY_CLUSTER_REPORT's file.
func report(t *testing.T, c counts) {
	t.Logf("\n%s\n%s", tableHead, c.row())
	path := os.Getenv(reportEnv)
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Errorf("%s: %v", reportEnv, err)
		return
	}
	defer f.Close()
	if info, err := f.Stat(); err == nil && info.Size() == 0 {
		fmt.Fprintln(f, tableHead)
	}
	fmt.Fprintln(f, c.row())
}
