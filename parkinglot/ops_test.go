package parkinglot_test

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
	"github.com/dlxretry/dlxretry/parkinglot"
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
				got := list(t, lot, parkinglot.Filter{})
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
		f    parkinglot.Filter
		want []string
		opts []parkinglot.Option
	}{
		{"all", parkinglot.Filter{}, synthetic(40, all), nil},
		{"error", parkinglot.Filter{ErrorContains: "db busy"}, synthetic(40, func(i int) bool { return i%4 == 1 }), nil},
		{"old", parkinglot.Filter{OlderThan: time.Hour}, synthetic(40, func(i int) bool { return i%2 == 1 }), nil},
		{"new", parkinglot.Filter{NewerThan: time.Hour}, synthetic(40, func(i int) bool { return i%2 == 0 }), nil},
		{"header", parkinglot.Filter{Headers: map[string]string{dlxretry.HeaderError: "callback 503"}},
			synthetic(40, func(i int) bool { return i%4 == 3 }), nil},
		{"queue", parkinglot.Filter{OriginalQueue: topo.Queue}, synthetic(5, all), []parkinglot.Option{parkinglot.Limit(5)}},
		{"other queue", parkinglot.Filter{OriginalQueue: "elsewhere"}, nil, nil},
		{"old and failed on the db", parkinglot.Filter{OlderThan: time.Hour, ErrorContains: "db"},
			synthetic(40, func(i int) bool { return i%4 == 1 }), nil},
	}
	for _, c := range cases {
		sameList(t, c.name, list(t, lot, c.f, c.opts...), c.want)
	}
}

// A dry run reports what it would do and changes nothing.
func TestParkingLotDryRun(t *testing.T) {
	t.Parallel()
	topo := declare(t, dlxretry.Classic, delaysMS(50), 3)
	parkSynthetic(t, topo, 20)
	lot := newLot(t, topo)
	f := parkinglot.Filter{ErrorContains: "timeout"}
	dry := parkinglot.DryRun()
	want := parkinglot.Report{Total: 20, Visited: 20, Matched: 5, Kept: 20}

	rep, err := lot.Replay(context.Background(), f, dry)
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, "dry-run replay", rep, want)
	var file bytes.Buffer
	rep, err = lot.Drop(context.Background(), f, &file, dry)
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, "dry-run drop", rep, want)
	rep, err = lot.Move(context.Background(), f, "", brokertest.Name(t, "nowhere"), dry)
	if err == nil {
		t.Errorf("dry-run move to a missing queue: report %+v, no error", rep)
	}
	if file.Len() != 0 {
		t.Errorf("dry-run drop wrote %q", file.String())
	}
	sameList(t, "after the dry runs", list(t, lot, parkinglot.Filter{}), synthetic(20, all))
	assertEmpty(t, topo)
}

// Limit stops an operation after that many matches; cancelling stops it at
// the next message. Either way everything not acted on is back, in order.
func TestParkingLotLimitAndCancel(t *testing.T) {
	t.Parallel()
	topo := declare(t, dlxretry.Classic, delaysMS(50), 3)
	parkSynthetic(t, topo, 20)
	lot := newLot(t, topo)

	rep, err := lot.Drop(context.Background(), parkinglot.Filter{ErrorContains: "db busy"}, nil, parkinglot.Limit(3))
	if err != nil {
		t.Fatal(err)
	}
	// Matches are messages 1, 5 and 9: the drop stops after visiting ten.
	checkReport(t, "limited drop", rep, parkinglot.Report{Total: 20, Visited: 10, Matched: 3, Acted: 3, Kept: 7})
	left := synthetic(20, func(i int) bool { return i != 1 && i != 5 && i != 9 })
	sameList(t, "after the limited drop", list(t, lot, parkinglot.Filter{}), left)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rep, err = lot.Drop(ctx, parkinglot.Filter{}, nil, parkinglot.Progress(4, func(parkinglot.Report) { cancel() }))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled drop: %v", err)
	}
	checkReport(t, "cancelled drop", rep, parkinglot.Report{Total: 17, Visited: 4, Matched: 4, Acted: 4})
	sameList(t, "after the cancelled drop", list(t, lot, parkinglot.Filter{}), left[4:])
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
	rep, err := lot.Move(context.Background(), parkinglot.Filter{ErrorContains: "db busy"}, "", archive)
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, "move", rep, parkinglot.Report{Total: 12, Visited: 12, Matched: 3, Acted: 3, Kept: 9})
	for i, d := range getAll(t, archive, 3, 5*time.Second) {
		if body := syntheticBody(4*i + 1); string(d.Body) != body || d.Headers[dlxretry.HeaderError] != "db busy" ||
			d.Headers["x-death"] == nil || d.MessageId != body {
			t.Errorf("moved message %d: %s %v", i, d.Body, d.Headers)
		}
	}
	left := synthetic(12, func(i int) bool { return i%4 != 1 })
	checkMoveRefused(t, lot, topo, ch, left)
}

func checkMoveRefused(t *testing.T, lot *parkinglot.Lot, topo dlxretry.Topology, ch *amqp.Channel, left []string) {
	t.Helper()
	unbound := tempExchange(t, ch, "unbound")
	rep, err := lot.Move(context.Background(), parkinglot.Filter{}, unbound, "k")
	if !errors.Is(err, dlxretry.ErrUnroutable) {
		t.Errorf("move to an exchange without bindings: %v", err)
	}
	checkReport(t, "unroutable move", rep, parkinglot.Report{Total: 9, Visited: 1, Matched: 1, Kept: 1})
	if _, err := lot.Move(context.Background(), parkinglot.Filter{}, brokertest.Name(t, "missing"), "k"); err == nil ||
		!strings.Contains(err.Error(), "does not exist") {
		t.Errorf("move to a missing exchange: %v", err)
	}
	var ce *dlxretry.ConfigError
	for _, target := range [][2]string{{topo.ParkingExchange(), ""}, {"", topo.ParkingQueue()}} {
		if _, err := lot.Move(context.Background(), parkinglot.Filter{}, target[0], target[1]); !errors.As(err, &ce) {
			t.Errorf("move to %q %q: %v, want a ConfigError", target[0], target[1], err)
		}
	}
	sameList(t, "after the refused moves", list(t, lot, parkinglot.Filter{}), left)
}

// Messages replayed during a replay, failed again and parked again before
// it ends, are not visited again: each is replayed exactly once.
func TestParkingLotReplayVisitsEachMessageOnce(t *testing.T) {
	t.Parallel()
	topo := declare(t, dlxretry.Classic, delaysMS(50), 3)
	parks := make(chan string, 100)
	run(t, topo, func(context.Context, *dlxretry.Delivery) error { return dlxretry.Permanent(errors.New("test failure")) },
		dlxretry.WithHooks(dlxretry.Hooks{OnPark: func(_ context.Context, e dlxretry.ParkEvent) { parks <- string(e.Delivery.Body) }}))
	const n = 50
	parkSynthetic(t, topo, n)

	rep, err := newLot(t, topo).Replay(context.Background(), parkinglot.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, "replay", rep, parkinglot.Report{Total: n, Visited: n, Matched: n, Acted: n})
	waitN(t, parks, n, 10*time.Second)
	for _, d := range getAll(t, topo.ParkingQueue(), n, 5*time.Second) {
		if d.Headers[parkinglot.HeaderReplays] != int64(1) {
			t.Errorf("%s parked again with %s = %v", d.Body, parkinglot.HeaderReplays, d.Headers[parkinglot.HeaderReplays])
		}
	}
}

func TestNewRejectsBadInput(t *testing.T) {
	conn := newConn(t)
	var ce *dlxretry.ConfigError
	for _, c := range []struct {
		name  string
		conn  *dlxretry.Conn
		queue string
	}{
		{"nil connection", nil, "q"},
		{"empty queue", conn, ""},
		{"reserved queue", conn, "amq.q"},
	} {
		if _, err := parkinglot.New(c.conn, c.queue); !errors.As(err, &ce) {
			t.Errorf("%s: %v, want a ConfigError", c.name, err)
		}
	}
	lot, err := parkinglot.New(conn, brokertest.Name(t, "none"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lot.List(context.Background(), parkinglot.Filter{}); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("List of a missing parking queue: %v", err)
	}
	if _, err := lot.Replay(context.Background(), parkinglot.Filter{}, parkinglot.Limit(-1)); !errors.As(err, &ce) || ce.Field != "Limit" {
		t.Errorf("Replay with a negative limit: %v", err)
	}
	if _, err := lot.List(context.Background(), parkinglot.Filter{}, parkinglot.Progress(0, func(parkinglot.Report) {})); !errors.As(err, &ce) || ce.Field != "Progress" {
		t.Errorf("List with progress every 0: %v", err)
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
