package parkinglot_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlxretry/dlxretry"
	"github.com/dlxretry/dlxretry/internal/brokertest"
	"github.com/dlxretry/dlxretry/parkinglot"
	amqp "github.com/rabbitmq/amqp091-go"
)

// syntheticErrors are the errors parkSynthetic gives message i: errors[i%4].
var syntheticErrors = []string{"upstream timeout", "db busy", "malformed payload", "callback 503"}

func syntheticBody(i int) string { return fmt.Sprintf("p-%04d", i) }

// parkSynthetic publishes n messages to the parking exchange as the consumer
// would park them, with an x-death header that says they failed three times;
// message i failed with syntheticErrors[i%4] and, if i is odd, was parked
// two hours ago.
func parkSynthetic(t *testing.T, topo dlxretry.Topology, n int) {
	t.Helper()
	ch := brokertest.Channel(t)
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	confirms := make([]*amqp.DeferredConfirmation, 0, n)
	for i := range n {
		at := now
		if i%2 == 1 {
			at = now.Add(-2 * time.Hour)
		}
		dc, err := ch.PublishWithDeferredConfirm(topo.ParkingExchange(), "order.created", true, false,
			amqp.Publishing{DeliveryMode: amqp.Persistent, MessageId: syntheticBody(i), Body: []byte(syntheticBody(i)),
				Headers: syntheticHeaders(topo, syntheticErrors[i%4], at)})
		if err != nil {
			t.Fatalf("park %d: %v", i, err)
		}
		confirms = append(confirms, dc)
	}
	for i, dc := range confirms {
		if !dc.Wait() {
			t.Fatalf("park %d: nacked", i)
		}
	}
}

func syntheticHeaders(topo dlxretry.Topology, errText string, at time.Time) amqp.Table {
	return amqp.Table{
		"x-death": []any{amqp.Table{"queue": topo.Queue, "reason": "rejected", "count": int64(3),
			"exchange": topo.Exchange, "routing-keys": []any{"order.created"}}},
		"x-first-death-queue":             topo.Queue,
		"x-first-death-reason":            "rejected",
		dlxretry.HeaderQueue:              topo.Queue,
		dlxretry.HeaderError:              errText,
		dlxretry.HeaderAttempts:           int64(3),
		dlxretry.HeaderParkedAt:           at,
		dlxretry.HeaderOriginalExchange:   topo.Exchange,
		dlxretry.HeaderOriginalRoutingKey: "order.created",
		dlxretry.HeaderPermanent:          false,
	}
}

func newLot(t *testing.T, topo dlxretry.Topology) *parkinglot.Lot {
	t.Helper()
	lot, err := parkinglot.New(newConn(t), topo.Queue)
	if err != nil {
		t.Fatal(err)
	}
	return lot
}

func list(t *testing.T, lot *parkinglot.Lot, f parkinglot.Filter, opts ...parkinglot.Option) []string {
	t.Helper()
	msgs, err := lot.List(context.Background(), f, opts...)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	return bodiesOf(msgs)
}

func bodiesOf(msgs []parkinglot.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = string(m.Body)
	}
	return out
}

// synthetic returns the bodies of messages 0…n-1 for which keep is true, in order.
func synthetic(n int, keep func(i int) bool) []string {
	var out []string
	for i := range n {
		if keep(i) {
			out = append(out, syntheticBody(i))
		}
	}
	return out
}

func checkReport(t *testing.T, op string, got, want parkinglot.Report) {
	t.Helper()
	if got != want {
		t.Errorf("%s report %+v, want %+v", op, got, want)
	}
	if got.Visited != got.Acted+got.Kept {
		t.Errorf("%s report %+v: visited != acted + kept", op, got)
	}
}

func sameList(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s: got %d messages, want %d\ngot  %.300v\nwant %.300v", what, len(got), len(want), got, want)
	}
}

// replayRecorder handles replayed messages: it fails the ones whose body
// starts with "real-" until healed, and records what every delivery showed.
type replayRecorder struct {
	healed atomic.Bool
	mu     sync.Mutex
	seen   map[string][]handled
	acks   chan string
	parks  chan string
}

type handled struct {
	attempt int
	replays any
	origKey string
}

func newReplayRecorder() *replayRecorder {
	return &replayRecorder{seen: map[string][]handled{}, acks: make(chan string, 2000), parks: make(chan string, 2000)}
}

func (r *replayRecorder) handle(_ context.Context, d *dlxretry.Delivery) error {
	r.mu.Lock()
	r.seen[string(d.Body)] = append(r.seen[string(d.Body)],
		handled{d.Attempt, d.Headers[parkinglot.HeaderReplays], d.OriginalRoutingKey()})
	r.mu.Unlock()
	if strings.HasPrefix(string(d.Body), "real-") && !r.healed.Load() {
		return fmt.Errorf("upstream timeout (real)")
	}
	return nil
}

// handled returns what the handler saw of one message, in order.
func (r *replayRecorder) handled(body string) []handled {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.seen[body])
}

func (r *replayRecorder) hooks() dlxretry.Hooks {
	return dlxretry.Hooks{
		OnAck:  func(_ context.Context, e dlxretry.AckEvent) { r.acks <- string(e.Delivery.Body) },
		OnPark: func(_ context.Context, e dlxretry.ParkEvent) { r.parks <- string(e.Delivery.Body) },
	}
}

// The scenario: 1,020 parked messages (20 parked by a real consumer,
// 1,000 published to the parking exchange), a filtered replay whose messages
// all come back to the handler once and nothing else does, a filtered drop
// into a JSON-lines file, and the rest still parked in order.
func TestParkingLotReplayAndDropThousand(t *testing.T) {
	t.Parallel()
	topo := declare(t, dlxretry.Classic, delaysMS(20, 40), 3)
	r := newReplayRecorder()
	run(t, topo, r.handle, dlxretry.WithHooks(r.hooks()), dlxretry.WithConcurrency(8))

	var real []string
	for i := range 20 {
		real = append(real, fmt.Sprintf("real-%02d", i))
	}
	start := time.Now().Add(-time.Second)
	publish(t, topo.Exchange, "order.created", real...)
	waitN(t, r.parks, len(real), 20*time.Second)
	const n = 1000
	parkSynthetic(t, topo, n)

	lot := newLot(t, topo)
	all, err := lot.List(context.Background(), parkinglot.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	checkRealParked(t, topo, all[:len(real)], real, start)
	sameList(t, "synthetic part of the list", bodiesOf(all[len(real):]), synthetic(n, func(int) bool { return true }))

	r.healed.Store(true)
	var progress []parkinglot.Report
	rep, err := lot.Replay(context.Background(), parkinglot.Filter{ErrorContains: "timeout"},
		parkinglot.Progress(100, func(rep parkinglot.Report) { progress = append(progress, rep) }))
	if err != nil {
		t.Fatalf("Replay: %v", err)
	}
	wantReplayed := append(slices.Clone(real), synthetic(n, func(i int) bool { return i%4 == 0 })...)
	checkReport(t, "replay", rep, parkinglot.Report{Total: 1020, Visited: 1020, Matched: 270, Acted: 270, Kept: 750})
	if len(progress) != 1020/100 || progress[len(progress)-1].Visited != 1000 {
		t.Errorf("progress reports %+v", progress)
	}
	checkReplayedHandled(t, r, wantReplayed)

	dropped := dropToFile(t, lot, topo, parkinglot.Filter{ErrorContains: "malformed"},
		parkinglot.Report{Total: 750, Visited: 750, Matched: 250, Acted: 250, Kept: 500})
	sameList(t, "dropped file", dropped, synthetic(n, func(i int) bool { return i%4 == 2 }))

	rest := list(t, lot, parkinglot.Filter{})
	sameList(t, "still parked", rest, synthetic(n, func(i int) bool { return i%2 == 1 }))
	if got := len(wantReplayed) + len(dropped) + len(rest); got != len(real)+n {
		t.Errorf("replayed %d + dropped %d + parked %d = %d, want %d", len(wantReplayed), len(dropped), len(rest), got, len(real)+n)
	}
	assertEmpty(t, topo)
}

// checkRealParked checks what List read from messages a consumer parked.
func checkRealParked(t *testing.T, topo dlxretry.Topology, got []parkinglot.Message, want []string, after time.Time) {
	t.Helper()
	sameList(t, "consumer-parked part of the list (sorted)", slices.Sorted(slices.Values(bodiesOf(got))), want)
	for _, m := range got {
		ok := m.Queue == topo.Queue && m.Error == "upstream timeout (real)" && m.Attempts == 3 &&
			m.OriginalExchange == topo.Exchange && m.OriginalRoutingKey == "order.created" && !m.Permanent &&
			m.Replays == 0 && m.Size == len(m.Body) && !m.ParkedAt.Before(after.Truncate(time.Second)) &&
			m.Age >= 0 && m.Age < time.Minute
		if !ok {
			t.Errorf("consumer-parked message read as %+v", m)
		}
	}
}

// checkReplayedHandled waits until every replayed message was acked and
// checks that each was handled once, as a first attempt after one replay,
// with its original key, and that nothing else reached the handler.
func checkReplayedHandled(t *testing.T, r *replayRecorder, want []string) {
	t.Helper()
	acked := waitN(t, r.acks, len(want), 30*time.Second)
	sameList(t, "acked after replay (sorted)", slices.Sorted(slices.Values(acked)), slices.Sorted(slices.Values(want)))
	time.Sleep(200 * time.Millisecond)
	if len(r.acks) != 0 {
		t.Errorf("%d more messages were acked", len(r.acks))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, body := range want {
		seen := r.seen[body]
		last := seen[len(seen)-1]
		// Consumer-parked messages were handled three times before.
		if want := map[bool]int{true: 1, false: 4}[strings.HasPrefix(body, "p-")]; len(seen) != want {
			t.Errorf("%s handled %d times in all, want %d", body, len(seen), want)
		}
		if last != (handled{1, int64(1), "order.created"}) {
			t.Errorf("%s replayed as %+v, want attempt 1, 1 replay, key order.created", body, last)
		}
	}
}

// dropToFile drops what f selects into a JSON-lines file, checks the report
// and each line, and returns the bodies in the file, in order.
func dropToFile(t *testing.T, lot *parkinglot.Lot, topo dlxretry.Topology, f parkinglot.Filter, want parkinglot.Report) []string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "dropped.jsonl")
	file, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := lot.Drop(context.Background(), f, file)
	if err != nil {
		t.Fatalf("Drop: %v", err)
	}
	file.Close()
	checkReport(t, "drop", rep, want)
	file, err = os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	var bodies []string
	sc := bufio.NewScanner(file)
	for sc.Scan() {
		var m parkinglot.Message
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %d: %v: %s", len(bodies)+1, err, sc.Bytes())
		}
		if m.Queue != topo.Queue || !strings.Contains(m.Error, f.ErrorContains) || m.Attempts != 3 ||
			m.MessageID != string(m.Body) || m.OriginalRoutingKey != "order.created" || m.ParkedAt.IsZero() {
			t.Errorf("line %d: %+v", len(bodies)+1, m)
		}
		bodies = append(bodies, string(m.Body))
	}
	return bodies
}

// A replayed message that fails again gets the whole schedule again
// (MaxAttempts deliveries) before it is parked, counted as replayed once.
func TestReplayedMessageFailsThroughWholeSchedule(t *testing.T) {
	for _, typ := range queueTypes {
		t.Run(string(typ), func(t *testing.T) {
			t.Parallel()
			topo := declare(t, typ, delaysMS(20, 40), 3)
			r := newReplayRecorder() // fails real-… messages
			run(t, topo, r.handle, dlxretry.WithHooks(r.hooks()))
			publish(t, topo.Exchange, "order.created", "real-m")
			waitN(t, r.parks, 1, 10*time.Second)

			lot := newLot(t, topo)
			// Each visit raises a quorum message's x-delivery-count past the
			// consumer's redelivery limit (5): the replay must not carry it.
			for range 6 {
				list(t, lot, parkinglot.Filter{})
			}
			rep, err := lot.Replay(context.Background(), parkinglot.Filter{})
			if err != nil {
				t.Fatal(err)
			}
			checkReport(t, "replay", rep, parkinglot.Report{Total: 1, Visited: 1, Matched: 1, Acted: 1})
			waitN(t, r.parks, 1, 10*time.Second)

			got := r.handled("real-m")
			if len(got) != 2*topo.MaxAttempts {
				t.Fatalf("delivered %d times, want %d", len(got), 2*topo.MaxAttempts)
			}
			for i, d := range got[topo.MaxAttempts:] {
				if d.attempt != i+1 || d.origKey != "order.created" {
					t.Errorf("delivery %d after the replay: attempt %d, original key %q", i+1, d.attempt, d.origKey)
				}
			}
			checkReparked(t, topo, getAll(t, topo.ParkingQueue(), 1, 5*time.Second)[0])
		})
	}
}

func checkReparked(t *testing.T, topo dlxretry.Topology, d amqp.Delivery) {
	t.Helper()
	h := d.Headers
	if h[parkinglot.HeaderReplays] != int64(1) || h[dlxretry.HeaderAttempts] != int64(topo.MaxAttempts) ||
		h[dlxretry.HeaderOriginalRoutingKey] != "order.created" || h[dlxretry.HeaderQueue] != topo.Queue ||
		h[dlxretry.HeaderOriginalExchange] != topo.Exchange {
		t.Errorf("parked again with headers %v", h)
	}
	deaths, err := dlxretry.ParseDeaths(h)
	if err != nil {
		t.Fatal(err)
	}
	if n := deaths.Rejections(topo.Queue); n != int64(topo.MaxAttempts-1) {
		t.Errorf("x-death counts %d rejections after the replay, want %d (old history carried over?)", n, topo.MaxAttempts-1)
	}
}
