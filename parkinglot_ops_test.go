package dlxretry_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dlxretry/dlxretry"
	"github.com/dlxretry/dlxretry/internal/brokertest"
	amqp "github.com/rabbitmq/amqp091-go"
)

func all(int) bool { return true }

// Listing takes every message and puts it back: nothing is lost, and a
// classic queue keeps its order. A quorum queue on RabbitMQ 3.x returns
// them in an order of its own.
func TestParkingLotListKeepsMessages(t *testing.T) {
	for _, typ := range queueTypes {
		t.Run(string(typ), func(t *testing.T) {
			t.Parallel()
			topo := declare(t, typ, delaysMS(50), 3)
			const n = 200
			parkSynthetic(t, topo, n)
			lot := newLot(t, topo)
			want := synthetic(n, all)
			for i := range 3 {
				got := list(t, lot, dlxretry.Filter{})
				if typ == dlxretry.Quorum {
					got = slices.Sorted(slices.Values(got))
				}
				sameList(t, "list "+string(rune('1'+i)), got, want)
			}
			if n := messageCount(t, topo.ParkingQueue()); n != 200 {
				t.Errorf("parking queue holds %d messages after listing, want 200", n)
			}
		})
	}
}

func TestParkingLotListFilters(t *testing.T) {
	t.Parallel()
	topo := declare(t, dlxretry.Classic, delaysMS(50), 3)
	parkSynthetic(t, topo, 40)
	lot := newLot(t, topo)
	cases := []struct {
		name string
		f    dlxretry.Filter
		want []string
	}{
		{"all", dlxretry.Filter{}, synthetic(40, all)},
		{"error", dlxretry.Filter{ErrorContains: "db busy"}, synthetic(40, func(i int) bool { return i%4 == 1 })},
		{"old", dlxretry.Filter{OlderThan: time.Hour}, synthetic(40, func(i int) bool { return i%2 == 1 })},
		{"new", dlxretry.Filter{NewerThan: time.Hour}, synthetic(40, func(i int) bool { return i%2 == 0 })},
		{"header", dlxretry.Filter{Headers: map[string]string{dlxretry.HeaderError: "callback 503"}},
			synthetic(40, func(i int) bool { return i%4 == 3 })},
		{"queue", dlxretry.Filter{OriginalQueue: topo.Queue, Limit: 5}, synthetic(5, all)},
		{"other queue", dlxretry.Filter{OriginalQueue: "elsewhere"}, nil},
		{"old and failed on the db", dlxretry.Filter{OlderThan: time.Hour, ErrorContains: "db"},
			synthetic(40, func(i int) bool { return i%4 == 1 })},
	}
	for _, c := range cases {
		sameList(t, c.name, list(t, lot, c.f), c.want)
	}
}

// A dry run reports what it would do and changes nothing.
func TestParkingLotDryRun(t *testing.T) {
	t.Parallel()
	topo := declare(t, dlxretry.Classic, delaysMS(50), 3)
	parkSynthetic(t, topo, 20)
	lot := newLot(t, topo)
	f := dlxretry.Filter{ErrorContains: "timeout", DryRun: true}
	want := dlxretry.Report{Total: 20, Visited: 20, Matched: 5, Kept: 20}

	rep, err := lot.Replay(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, "dry-run replay", rep, want)
	var file bytes.Buffer
	rep, err = lot.Drop(context.Background(), f, &file)
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, "dry-run drop", rep, want)
	rep, err = lot.Move(context.Background(), f, "", brokertest.Name(t, "nowhere"))
	if err == nil {
		t.Errorf("dry-run move to a missing queue: report %+v, no error", rep)
	}
	if file.Len() != 0 {
		t.Errorf("dry-run drop wrote %q", file.String())
	}
	sameList(t, "after the dry runs", list(t, lot, dlxretry.Filter{}), synthetic(20, all))
	assertEmpty(t, topo)
}

// Limit stops an operation after that many matches; cancelling stops it at
// the next message. Either way everything not acted on is back, in order.
func TestParkingLotLimitAndCancel(t *testing.T) {
	t.Parallel()
	topo := declare(t, dlxretry.Classic, delaysMS(50), 3)
	parkSynthetic(t, topo, 20)
	lot := newLot(t, topo)

	rep, err := lot.Drop(context.Background(), dlxretry.Filter{ErrorContains: "db busy", Limit: 3}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Matches are messages 1, 5 and 9: the drop stops after visiting ten.
	checkReport(t, "limited drop", rep, dlxretry.Report{Total: 20, Visited: 10, Matched: 3, Acted: 3, Kept: 7})
	left := synthetic(20, func(i int) bool { return i != 1 && i != 5 && i != 9 })
	sameList(t, "after the limited drop", list(t, lot, dlxretry.Filter{}), left)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cancelling := newLot(t, topo, dlxretry.WithProgress(4, func(dlxretry.Report) { cancel() }))
	rep, err = cancelling.Drop(ctx, dlxretry.Filter{}, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled drop: %v", err)
	}
	checkReport(t, "cancelled drop", rep, dlxretry.Report{Total: 17, Visited: 4, Matched: 4, Acted: 4})
	sameList(t, "after the cancelled drop", list(t, lot, dlxretry.Filter{}), left[4:])
}

// Move publishes to another queue or exchange with the headers intact, and
// refuses targets that cannot take the messages without losing any.
func TestParkingLotMove(t *testing.T) {
	t.Parallel()
	topo := declare(t, dlxretry.Classic, delaysMS(50), 3)
	parkSynthetic(t, topo, 12)
	lot := newLot(t, topo)
	ch := brokertest.Channel(t)
	archive := tempQueue(t, ch, "archive")
	rep, err := lot.Move(context.Background(), dlxretry.Filter{ErrorContains: "db busy"}, "", archive)
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, "move", rep, dlxretry.Report{Total: 12, Visited: 12, Matched: 3, Acted: 3, Kept: 9})
	for i, d := range getAll(t, archive, 3, 5*time.Second) {
		if body := syntheticBody(4*i + 1); string(d.Body) != body || d.Headers[dlxretry.HeaderError] != "db busy" ||
			d.Headers["x-death"] == nil || d.MessageId != body {
			t.Errorf("moved message %d: %s %v", i, d.Body, d.Headers)
		}
	}
	left := synthetic(12, func(i int) bool { return i%4 != 1 })
	checkMoveRefused(t, lot, topo, ch, left)
}

func checkMoveRefused(t *testing.T, lot *dlxretry.ParkingLot, topo dlxretry.Topology, ch *amqp.Channel, left []string) {
	t.Helper()
	unbound := tempExchange(t, ch, "unbound")
	rep, err := lot.Move(context.Background(), dlxretry.Filter{}, unbound, "k")
	if !errors.Is(err, dlxretry.ErrUnroutable) {
		t.Errorf("move to an exchange without bindings: %v", err)
	}
	checkReport(t, "unroutable move", rep, dlxretry.Report{Total: 9, Visited: 1, Matched: 1, Kept: 1})
	if _, err := lot.Move(context.Background(), dlxretry.Filter{}, brokertest.Name(t, "missing"), "k"); err == nil ||
		!strings.Contains(err.Error(), "does not exist") {
		t.Errorf("move to a missing exchange: %v", err)
	}
	var ce *dlxretry.ConfigError
	for _, target := range [][2]string{{topo.ParkingExchange(), ""}, {"", topo.ParkingQueue()}} {
		if _, err := lot.Move(context.Background(), dlxretry.Filter{}, target[0], target[1]); !errors.As(err, &ce) {
			t.Errorf("move to %q %q: %v, want a ConfigError", target[0], target[1], err)
		}
	}
	sameList(t, "after the refused moves", list(t, lot, dlxretry.Filter{}), left)
}

// Messages replayed during a replay, failed again and parked again before
// it ends, are not visited again: each is replayed exactly once.
func TestParkingLotReplayVisitsEachMessageOnce(t *testing.T) {
	t.Parallel()
	topo := declare(t, dlxretry.Classic, delaysMS(50), 3)
	parks := make(chan string, 100)
	run(t, topo, func(context.Context, *dlxretry.Delivery) error { return dlxretry.Permanent(errTest) },
		dlxretry.WithHooks(dlxretry.Hooks{OnPark: func(_ context.Context, e dlxretry.ParkEvent) { parks <- string(e.Delivery.Body) }}))
	const n = 50
	parkSynthetic(t, topo, n)

	rep, err := newLot(t, topo).Replay(context.Background(), dlxretry.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, "replay", rep, dlxretry.Report{Total: n, Visited: n, Matched: n, Acted: n})
	waitN(t, parks, n, 10*time.Second)
	for _, d := range getAll(t, topo.ParkingQueue(), n, 5*time.Second) {
		if d.Headers[dlxretry.HeaderReplays] != int64(1) {
			t.Errorf("%s parked again with %s = %v", d.Body, dlxretry.HeaderReplays, d.Headers[dlxretry.HeaderReplays])
		}
	}
}

func TestNewParkingLotRejectsBadInput(t *testing.T) {
	conn := newConn(t)
	var ce *dlxretry.ConfigError
	for _, c := range []struct {
		name  string
		conn  *dlxretry.Conn
		queue string
		opts  []dlxretry.ParkingLotOption
	}{
		{"nil connection", nil, "q", nil},
		{"empty queue", conn, "", nil},
		{"reserved queue", conn, "amq.q", nil},
		{"progress every 0", conn, "q", []dlxretry.ParkingLotOption{dlxretry.WithProgress(0, func(dlxretry.Report) {})}},
	} {
		if _, err := dlxretry.NewParkingLot(c.conn, c.queue, c.opts...); !errors.As(err, &ce) {
			t.Errorf("%s: %v, want a ConfigError", c.name, err)
		}
	}
	lot, err := dlxretry.NewParkingLot(conn, brokertest.Name(t, "none"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lot.List(context.Background(), dlxretry.Filter{}); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("List of a missing parking queue: %v", err)
	}
	if _, err := lot.Replay(context.Background(), dlxretry.Filter{Limit: -1}); !errors.As(err, &ce) {
		t.Errorf("Replay with a negative limit: %v", err)
	}
}

// tempQueue declares a queue deleted when the test ends.
func tempQueue(t *testing.T, ch *amqp.Channel, what string) string {
	t.Helper()
	name := brokertest.Name(t, what)
	if _, err := ch.QueueDeclare(name, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := brokertest.Channel(t).QueueDelete(name, false, false, false); err != nil {
			t.Errorf("cleanup: delete %s: %v", name, err)
		}
	})
	return name
}

// tempExchange declares a direct exchange deleted when the test ends.
func tempExchange(t *testing.T, ch *amqp.Channel, what string) string {
	t.Helper()
	name := brokertest.Name(t, what)
	if err := ch.ExchangeDeclare(name, "direct", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := brokertest.Channel(t).ExchangeDelete(name, false, false); err != nil {
			t.Errorf("cleanup: delete %s: %v", name, err)
		}
	})
	return name
}
