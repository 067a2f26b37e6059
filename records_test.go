package dlxretry

import (
	"encoding/json"
	"testing"
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
