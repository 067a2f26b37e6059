package dlxretry_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dlxretry/dlxretry"
	"github.com/dlxretry/dlxretry/internal/brokertest"
	amqp "github.com/rabbitmq/amqp091-go"
)

// mixedLoad is the fault tests' workload: n messages "m-<i>", of which those
// with i%5 == 0 fail once (20%) and those with i%100 == 1 always fail (1%).
// It counts what the handler finished and, at the end, what was parked.
type mixedLoad struct {
	n    int
	topo dlxretry.Topology

	mu        sync.Mutex
	succeeded map[int]int // id -> times the handler returned nil
	attempts  map[int]int // id -> the Attempt of a success, if not the expected one
	published map[int]int // id -> times Publish returned nil
}

func newMixedLoad(t *testing.T, n int, typ dlxretry.QueueType) *mixedLoad {
	topo := declare(t, typ, delaysMS(50, 100), 3)
	return &mixedLoad{n: n, topo: topo, succeeded: map[int]int{}, attempts: map[int]int{}, published: map[int]int{}}
}

func loadID(body []byte) int {
	i, err := strconv.Atoi(strings.TrimPrefix(string(body), "m-"))
	if err != nil {
		return -1
	}
	return i
}

func alwaysFails(i int) bool { return i%100 == 1 }
func failsOnce(i int) bool   { return i%5 == 0 }

// outcome is the scripted result for message i on the given attempt.
func outcome(i, attempt int) error {
	if alwaysFails(i) || (failsOnce(i) && attempt == 1) {
		return errTest
	}
	return nil
}

func (l *mixedLoad) handle(ctx context.Context, d *dlxretry.Delivery) error {
	i := loadID(d.Body)
	err := outcome(i, d.Attempt)
	if err == nil {
		l.mu.Lock()
		l.succeeded[i]++
		if d.Attempt != wantAttempt(i) {
			l.attempts[i] = d.Attempt
		}
		l.mu.Unlock()
	}
	return err
}

// wantAttempt is the attempt on which message i succeeds.
func wantAttempt(i int) int {
	if failsOnce(i) {
		return 2
	}
	return 1
}

// publishAll publishes every message with the Publisher, about perSecond a
// second from several goroutines, publishing again any whose Publish
// returned an error.
func (l *mixedLoad) publishAll(t *testing.T, p *dlxretry.Publisher, perSecond int) (retries int) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	const workers = 8
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(time.Second * workers / time.Duration(perSecond))
			defer tick.Stop()
			for i := w; i < l.n; i += workers {
				<-tick.C
				r := l.publishOne(t, p, i)
				mu.Lock()
				retries += r
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return retries
}

func (l *mixedLoad) publishOne(t *testing.T, p *dlxretry.Publisher, i int) (retries int) {
	body := fmt.Sprintf("m-%d", i)
	for ; ; retries++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := p.Publish(ctx, l.topo.Exchange, "load", amqpMsg(body))
		cancel()
		if err == nil {
			l.mu.Lock()
			l.published[i]++
			l.mu.Unlock()
			return retries
		}
		if retries > 100 {
			t.Errorf("publish %s: giving up after %d tries: %v", body, retries, err)
			return retries
		}
	}
}

func (l *mixedLoad) expected() (succeed, park int) {
	for i := range l.n {
		if alwaysFails(i) {
			park++
		} else {
			succeed++
		}
	}
	return succeed, park
}

// waitSettled waits until every message that should succeed has, and every
// one that should be parked sits in the parking queue.
func (l *mixedLoad) waitSettled(t *testing.T, timeout time.Duration) {
	t.Helper()
	wantOK, wantPark := l.expected()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		l.mu.Lock()
		ok := len(l.succeeded)
		l.mu.Unlock()
		if ok == wantOK && messageCount(t, l.topo.ParkingQueue()) >= wantPark {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	t.Fatalf("after %v: %d of %d succeeded, %d of %d parked", timeout, len(l.succeeded), wantOK,
		messageCount(t, l.topo.ParkingQueue()), wantPark)
}

// verify accounts for every message: each one that should succeed did, each
// one that should park is parked, nothing else is anywhere. It returns the
// duplicates: extra successes and extra parked copies.
func (l *mixedLoad) verify(t *testing.T) (dups int) {
	t.Helper()
	_, wantPark := l.expected()
	parked := map[int]int{}
	for _, d := range getAll(t, l.topo.ParkingQueue(), messageCount(t, l.topo.ParkingQueue()), 10*time.Second) {
		parked[loadID(d.Body)]++
		if n, _ := d.Headers[dlxretry.HeaderAttempts].(int64); n != int64(l.topo.MaxAttempts) {
			t.Errorf("%s parked after %d attempts, want %d", d.Body, n, l.topo.MaxAttempts)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range l.n {
		if l.published[i] == 0 {
			t.Errorf("m-%d was never published", i)
		}
		switch {
		case alwaysFails(i) && parked[i] == 0:
			t.Errorf("m-%d is not parked", i)
		case !alwaysFails(i) && l.succeeded[i] == 0:
			t.Errorf("m-%d never succeeded", i)
		}
		dups += max(0, parked[i]-1) + max(0, l.succeeded[i]-1)
	}
	for i, a := range l.attempts {
		t.Errorf("m-%d succeeded on attempt %d, want %d", i, a, wantAttempt(i))
	}
	if len(parked) != wantPark {
		t.Errorf("%d distinct messages parked, want %d", len(parked), wantPark)
	}
	assertEmpty(t, l.topo)
	return dups
}

func loadSize(t *testing.T) int {
	if testing.Short() {
		return 2000
	}
	return 10000
}

func newPublisher(t *testing.T, name string) *dlxretry.Publisher {
	t.Helper()
	p, err := dlxretry.NewPublisher(brokertest.URL(t), dlxretry.WithConnectionName(name),
		dlxretry.WithReconnectDelay(50*time.Millisecond, time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func amqpMsg(body string) amqp.Publishing {
	return amqp.Publishing{Body: []byte(body), MessageId: body}
}
