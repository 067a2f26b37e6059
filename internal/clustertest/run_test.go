package clustertest_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dlxretry/dlxretry"
	"github.com/dlxretry/dlxretry/internal/brokertest"
	amqp "github.com/rabbitmq/amqp091-go"
)

// dlxPrefetch is the broker's dead_letter_worker_consumer_prefetch (its
// default): how many dead-lettered messages a quorum queue has in flight to
// their target at once, which a leader's loss may send again.
const dlxPrefetch = 32

// scenario is one cluster test: the node that leads the queues, the node
// the clients connect to first, and the fault.
type scenario struct {
	fault   string
	leader  int
	clients int
	// inject makes the fault and returns once the cluster is whole again.
	inject func(t *testing.T, c *cluster) outage
}

// outage is what a fault did.
type outage struct {
	took        time.Duration // from the fault until the node was back
	leaderLoss  int           // times the queues' leader went away
	publisherCu bool          // the publisher's node went away
}

// kill is a SIGKILL of node n, which stays down for downtime(t) before it
// starts again.
func kill(n int, leader bool) func(t *testing.T, c *cluster) outage {
	return func(t *testing.T, c *cluster) outage {
		start := time.Now()
		t.Cleanup(func() { c.ensureUp(t) })
		c.do(t, "kill", strconv.Itoa(n))
		time.Sleep(downtime(t))
		c.do(t, "restart", strconv.Itoa(n))
		return outage{took: time.Since(start), leaderLoss: b2i(leader)}
	}
}

// stopApp is rabbitmqctl stop_app on node n, start_app downtime(t) later.
func stopApp(n int, leader bool) func(t *testing.T, c *cluster) outage {
	return func(t *testing.T, c *cluster) outage {
		start := time.Now()
		t.Cleanup(func() { c.ensureUp(t) })
		c.do(t, "stop_app", strconv.Itoa(n))
		time.Sleep(downtime(t))
		c.do(t, "start_app", strconv.Itoa(n))
		return outage{took: time.Since(start), leaderLoss: b2i(leader)}
	}
}

// closeAll is rabbitmqctl close_all_connections, times times, a second apart.
func closeAll(times int) func(t *testing.T, c *cluster) outage {
	return func(t *testing.T, c *cluster) outage {
		start := time.Now()
		for i := range times {
			if i > 0 {
				time.Sleep(time.Second)
			}
			c.do(t, "ctl", "2", "close_all_connections", "cluster test")
		}
		return outage{took: time.Since(start)}
	}
}

func none(*testing.T, *cluster) outage { return outage{} }

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// runScenario publishes and consumes a load through sc's fault and checks
// that every message is accounted for.
func runScenario(t *testing.T, sc scenario) {
	c := getCluster(t)
	c.ensureUp(t)
	topo := declare(t, c, sc.leader)
	checkLeaders(t, c, topo, sc.leader)
	l := newLoad(messages(t), topo)
	urls := c.order(sc.clients)
	stopConsumer := consume(t, l, urls)
	pub, err := dlxretry.NewPublisher(urls[0], dlxretry.WithURLs(urls[1:]...),
		dlxretry.WithConnectionName(brokertest.Name(t, "publisher")),
		dlxretry.WithReconnectDelay(100*time.Millisecond, 2*time.Second),
		dlxretry.WithHooks(l.publisherHooks()), dlxretry.WithLogger(l.log.logger("publisher")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pub.Close() })

	published := make(chan time.Duration, 1)
	go func() { l.publishAll(t, pub); published <- time.Since(l.start) }()
	// Watched from now on, through the fault: the messages may settle
	// before the node that went down is back.
	settled := make(chan time.Duration, 1)
	watch, stopWatching := context.WithTimeout(context.Background(), 5*time.Minute+time.Duration(1+len(delays))*c.confirmTimeout)
	t.Cleanup(stopWatching)
	go func() { settled <- waitSettled(watch, c, l) }()
	time.Sleep(1500 * time.Millisecond)
	faultAt := time.Since(l.start)
	o := sc.inject(t, c)
	var publishedAt, settledAt time.Duration
	select {
	case publishedAt = <-published:
	case <-time.After(4 * time.Minute):
		t.Fatal("publishing did not finish within 4 minutes")
	}
	if settledAt = <-settled; settledAt == 0 {
		t.Fatalf("not settled: %s\nlog:\n%s", l.progress(), l.log.summary())
	}
	t.Logf("published at %.1fs, the fault at %.1fs took %.1fs, settled at %.1fs",
		publishedAt.Seconds(), faultAt.Seconds(), o.took.Seconds(), settledAt.Seconds())
	waitDrained(t, c, topo, 30*time.Second)
	stopConsumer()
	parked := drainParking(t, c, topo)

	counts := l.account(t, parked)
	counts.Fault = sc.fault
	counts.Stall = longestGap(l.handled, faultAt, settledAt)
	counts.RetryStall = longestGap(l.retried, faultAt, settledAt)
	counts.Settle = settledAt - faultAt
	counts.Outage = o.took
	l.mu.Lock()
	sessions := len(l.consumerDown)
	counts.DuplicateBound = l.maybeRouted + sessions*prefetch + o.leaderLoss*(prefetch+dlxPrefetch*(1+len(delays)))
	t.Logf("consumer sessions ended: %d %q", sessions, firstFew(l.consumerDown))
	t.Logf("publisher: %d OnConnect, %d OnDisconnect %q", l.publisherEvt["connect"], l.publisherEvt["disconnect"], firstFew(l.pubDownErr))
	for k, v := range l.pubErrSample {
		t.Logf("publish error %s (%d), e.g.: %s", k, l.pubErrs[k], v)
	}
	if l.parkFailures > 0 {
		t.Logf("parkings that failed (the message went round again): %d, e.g.: %s", l.parkFailures, l.parkFailErr)
	}
	l.mu.Unlock()
	t.Logf("log:\n%s", l.log.summary())
	report(t, counts)

	if counts.Duplicates > counts.DuplicateBound {
		t.Errorf("%d duplicates, more than the %d that could have been in flight", counts.Duplicates, counts.DuplicateBound)
	}
	// Generous: the fault, then the dead-letter worker's confirm timeout for
	// each at-least-once queue on a message's path, the work queue and the
	// tiers (a leader's SIGKILL held messages for twice the timeout, 361s
	// with RabbitMQ's default 180s), and a minute more.
	bound := o.took + time.Duration(1+len(delays))*c.confirmTimeout + time.Minute
	if counts.Settle > bound {
		t.Errorf("settled %.1fs after the fault, more than the %.1fs bound", counts.Settle.Seconds(), bound.Seconds())
	}
}

func firstFew(s []string) []string { return s[:min(len(s), 3)] }

// declare declares a quorum topology from node n, so that n leads its
// queues, and deletes it when the test ends.
func declare(t *testing.T, c *cluster, n int) dlxretry.Topology {
	t.Helper()
	topo := dlxretry.Topology{
		Queue:       brokertest.Name(t, "q"),
		Delays:      delays,
		MaxAttempts: maxAttempts,
		Type:        dlxretry.Quorum,
		Exchange:    brokertest.Name(t, "x"),
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := dlxretry.Dial(ctx, c.urls[n-1])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteTopology(t, c, topo) })
	if err := topo.Declare(ctx, ch); err != nil {
		t.Fatalf("declare: %v", err)
	}
	return topo
}

func deleteTopology(t *testing.T, c *cluster, topo dlxretry.Topology) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := dlxretry.Dial(ctx, c.urls[0], dlxretry.WithURLs(c.urls[1:]...))
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	defer conn.Close()
	ch, err := conn.Channel(ctx)
	if err == nil {
		err = topo.Delete(ctx, ch)
	}
	if err != nil {
		t.Errorf("cleanup: delete topology: %v", err)
	}
}

// checkLeaders fails the test unless node n leads every queue of topo: a
// fault meant for the leader must hit it.
func checkLeaders(t *testing.T, c *cluster, topo dlxretry.Topology, n int) {
	t.Helper()
	qs := c.queues(t, n, topo.Queue)
	if len(qs) == 0 {
		t.Fatalf("list_queues shows no queue of %s", topo.Queue)
	}
	for _, q := range qs {
		if c.nodeOf(q.Leader) != n {
			t.Fatalf("queue %s is led by %q, not node %d (%s)", q.Name, q.Leader, n, c.names[n-1])
		}
	}
}

// consume runs a Consumer over urls until the returned func is called.
func consume(t *testing.T, l *load, urls []string) (stop func()) {
	t.Helper()
	cons, err := dlxretry.NewConsumer(urls[0], l.topo, l.handle, dlxretry.WithURLs(urls[1:]...),
		dlxretry.WithConnectionName(brokertest.Name(t, "consumer")),
		dlxretry.WithConcurrency(concurrency), dlxretry.WithPrefetch(prefetch),
		dlxretry.WithReconnectDelay(100*time.Millisecond, 2*time.Second),
		dlxretry.WithHooks(l.consumerHooks()), dlxretry.WithLogger(l.log.logger("consumer")))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cons.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(time.Minute):
			t.Error("Run did not return within a minute of its ctx's end")
		}
	}
	t.Cleanup(stop)
	return stop
}

// observer watches the cluster on a connection of its own, to whichever
// node answers.
type observer struct {
	c    *cluster
	conn *amqp.Connection
	ch   *amqp.Channel
}

func (o *observer) channel() (*amqp.Channel, error) {
	if o.ch != nil && !o.ch.IsClosed() {
		return o.ch, nil
	}
	o.close()
	var err error
	for _, u := range o.c.order(3) {
		if o.conn, err = amqp.DialConfig(u, amqp.Config{Dial: amqp.DefaultDial(3 * time.Second)}); err != nil {
			continue
		}
		if o.ch, err = o.conn.Channel(); err == nil {
			return o.ch, nil
		}
		o.conn.Close()
	}
	return nil, err
}

func (o *observer) close() {
	if o.conn != nil {
		o.conn.Close()
	}
	o.conn, o.ch = nil, nil
}

// parkedCount is how many messages wait in the parking queue.
func (o *observer) parkedCount(topo dlxretry.Topology) (int, error) {
	ch, err := o.channel()
	if err != nil {
		return 0, err
	}
	q, err := ch.QueueDeclarePassive(topo.ParkingQueue(), true, false, false, false, nil)
	return q.Messages, err
}

// waitSettled waits until every message that should succeed has and the
// parking queue holds every one that should be parked, until ctx ends; it
// returns when that was (since l.start), 0 if it was not.
func waitSettled(ctx context.Context, c *cluster, l *load) time.Duration {
	o := &observer{c: c}
	defer o.close()
	want := l.wantParked()
	for ; ctx.Err() == nil; time.Sleep(100 * time.Millisecond) {
		if ok, _ := l.settledOK(); !ok {
			continue
		}
		parked, err := o.parkedCount(l.topo)
		l.mu.Lock()
		l.parkedSeen = parked
		l.mu.Unlock()
		if err == nil && parked >= want {
			return time.Since(l.start)
		}
	}
	return 0
}

// waitDrained waits until the work and tier queues hold no message
// (list_queues' count includes those waiting to be dead-lettered).
func waitDrained(t *testing.T, c *cluster, topo dlxretry.Topology, timeout time.Duration) {
	t.Helper()
	path := map[string]bool{topo.Queue: true}
	for i := range topo.Tiers() {
		path[topo.TierQueue(i+1)] = true
	}
	deadline := time.Now().Add(timeout)
	for {
		var left []string
		for _, q := range c.queues(t, 3, topo.Queue) {
			if path[q.Name] && q.Messages > 0 {
				left = append(left, q.Name+": "+strconv.Itoa(q.Messages))
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("after settling, messages left in %s", strings.Join(left, ", "))
			return
		}
		time.Sleep(time.Second)
	}
}

// drainParking takes every message out of the parking queue and returns,
// by id, the attempts each parked copy records.
func drainParking(t *testing.T, c *cluster, topo dlxretry.Topology) map[int][]int {
	t.Helper()
	o := &observer{c: c}
	defer o.close()
	ch, err := o.channel()
	if err != nil {
		t.Fatal(err)
	}
	parked := map[int][]int{}
	for {
		d, ok, err := ch.Get(topo.ParkingQueue(), true)
		if err != nil {
			t.Fatalf("get from %s: %v", topo.ParkingQueue(), err)
		}
		if !ok {
			return parked
		}
		n, _ := d.Headers[dlxretry.HeaderAttempts].(int64)
		parked[parseID(d.Body)] = append(parked[parseID(d.Body)], int(n))
	}
}
