package dlxretry

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlxretry/dlxretry/internal/brokertest"
)

func rec(event string, seq int64, id string, delaysMS ...int64) scheduleRecord {
	return scheduleRecord{Event: event, Seq: seq, ID: id, DelaysMS: delaysMS}
}

func TestScheduleView(t *testing.T) {
	a, b := []int64{100, 200}, []int64{300}
	cases := []struct {
		name      string
		records   []scheduleRecord
		active    string // "" for none
		retired   map[string]bool
		nextSeq   int64
		schedules int
	}{
		{name: "empty", nextSeq: 1},
		{name: "one schedule", records: []scheduleRecord{rec(eventActivated, 1, "1.x", a...)},
			active: "1.x", nextSeq: 2, schedules: 1},
		{name: "newer wins", records: []scheduleRecord{rec(eventActivated, 2, "2.x", b...), rec(eventActivated, 1, "1.x", a...)},
			active: "2.x", nextSeq: 3, schedules: 2},
		{name: "equal seq: the greater ID wins", records: []scheduleRecord{rec(eventActivated, 2, "2.b", b...), rec(eventActivated, 2, "2.a", a...)},
			active: "2.b", nextSeq: 3, schedules: 2},
		{name: "next activation takes the other parity", records: []scheduleRecord{
			rec(eventActivated, 1, "1.x", a...), rec(eventActivated, 2, "2.x", b...), rec(eventRetired, 3, "3.x", a...)},
			active: "2.x", retired: map[string]bool{"a": true}, nextSeq: 5, schedules: 2},
		{name: "reactivated after retirement", records: []scheduleRecord{
			rec(eventActivated, 1, "1.x", a...), rec(eventActivated, 2, "2.x", b...), rec(eventRetired, 3, "3.x", a...),
			rec(eventActivated, 5, "5.x", a...), rec(eventRetired, 6, "6.x", b...)},
			active: "5.x", retired: map[string]bool{"b": true}, nextSeq: 8, schedules: 2},
	}
	hashes := map[string]string{"a": rec("", 0, "", a...).schedule(), "b": rec("", 0, "", b...).schedule()}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := scheduleView{records: c.records}
			act, ok := v.active()
			if ok != (c.active != "") || act.ID != c.active {
				t.Errorf("active = %q, %v; want %q", act.ID, ok, c.active)
			}
			for name, h := range hashes {
				if got := v.retired(h); got != c.retired[name] {
					t.Errorf("retired(%s) = %v", name, got)
				}
			}
			if got := v.nextActivationSeq(); got != c.nextSeq {
				t.Errorf("nextActivationSeq = %d, want %d", got, c.nextSeq)
			}
			if got := len(v.schedules()); got != c.schedules {
				t.Errorf("%d schedules, want %d", got, c.schedules)
			}
		})
	}
}

func TestParseRecord(t *testing.T) {
	good, _ := json.Marshal(rec(eventActivated, 1, "1.x", 100))
	future, _ := json.Marshal(rec("renamed", 2, "2.x", 100))
	badDelay, _ := json.Marshal(rec(eventActivated, 3, "3.x", 0))
	cases := []struct {
		body   string
		id     string
		usable bool
	}{
		{string(good), "1.x", true},
		{string(future), "2.x", false}, // counted, not used
		{string(badDelay), "3.x", false},
		{`{"event":"activated","delays_ms":[100]}`, "", false},
		{`not json`, "", false},
	}
	for _, c := range cases {
		_, id, ok := parseRecord([]byte(c.body))
		if id != c.id || ok != c.usable {
			t.Errorf("parseRecord(%s) = %q, %v; want %q, %v", c.body, id, ok, c.id, c.usable)
		}
	}
}

// A read that reports itself complete holds every record confirmed before
// it began, while other readers hold some and a writer adds more: a record
// written during the read never stands in for one another reader holds.
func TestCompleteReadHoldsEveryRecord(t *testing.T) {
	t.Parallel()
	topo := Topology{Queue: brokertest.Name(t, "q"), Delays: []time.Duration{time.Second}}
	store := recordStore{topo, brokertest.Channel(t)}
	if err := store.declare(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ch := brokertest.Channel(t)
		for _, q := range []string{topo.schedulesQueue(), topo.scheduleCountQueue()} {
			if _, err := ch.QueueDelete(q, false, false, false); err != nil {
				t.Errorf("delete %s: %v", q, err)
			}
		}
	})
	ctx := context.Background()
	var confirmed atomic.Int64 // records confirmed so far, written in seq order
	write := func() {
		if err := store.write(ctx, eventActivated, topo.Delays, confirmed.Load()+1); err != nil {
			t.Error(err)
		}
		confirmed.Add(1)
	}
	write()

	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 6 {
		reader := recordStore{topo, brokertest.Channel(t)}
		wg.Go(func() {
			for !stop.Load() {
				before := confirmed.Load()
				v, complete, err := reader.readOnce(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				if complete && v.missing(before) {
					t.Errorf("a complete read of %d records (count %d) misses one of the %d confirmed before it",
						len(v.records), v.written, before)
				}
			}
		})
	}
	for range 40 {
		write()
		time.Sleep(5 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
}

// missing reports a record with a sequence number from 1 to n absent.
func (v scheduleView) missing(n int64) bool {
	seen := map[int64]bool{}
	for _, r := range v.records {
		seen[r.Seq] = true
	}
	for seq := int64(1); seq <= n; seq++ {
		if !seen[seq] {
			return true
		}
	}
	return false
}
