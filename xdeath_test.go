package dlxretry_test

import (
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dlxretry/dlxretry"
	amqp "github.com/rabbitmq/amqp091-go"
)

// xdeathEntry is an x-death entry as amqp091-go decodes the broker's: the
// queue "orders" rejected it count times.
func xdeathEntry(count any) amqp.Table {
	return amqp.Table{
		"queue":        "orders",
		"reason":       "rejected",
		"count":        count,
		"exchange":     "events",
		"routing-keys": []any{"order.created"},
	}
}

func xdeathHeaders(entries ...any) amqp.Table {
	return amqp.Table{"x-death": entries}
}

// rejectedOrders is what xdeathEntry(count) parses to.
func rejectedOrders(count int64) dlxretry.Death {
	return dlxretry.Death{Queue: "orders", Reason: "rejected", Count: count,
		Exchange: "events", RoutingKeys: []string{"order.created"}}
}

func TestParseDeaths(t *testing.T) {
	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	full := amqp.Table{
		"queue": "orders.retry.1.1s", "reason": "expired", "count": int64(3), "time": at,
		"exchange": "orders.retry.first", "routing-keys": []any{"order.created", "audit"},
		"original-expiration": "1000",
	}
	fullDeath := dlxretry.Death{Queue: "orders.retry.1.1s", Reason: "expired", Count: 3, Time: at,
		Exchange: "orders.retry.first", RoutingKeys: []string{"order.created", "audit"}, OriginalExpiration: "1000"}
	tests := []struct {
		name    string
		headers amqp.Table
		want    dlxretry.Deaths
		wantErr []string // substrings of the error; nil for no error
	}{
		{name: "nil headers", headers: nil},
		{name: "no header", headers: amqp.Table{"x-delivery-count": int64(2)}},
		{name: "nil header", headers: amqp.Table{"x-death": nil}},
		{name: "empty array", headers: xdeathHeaders()},
		{name: "string header", headers: amqp.Table{"x-death": "rejected"},
			wantErr: []string{"x-death", "string", "not an array"}},
		{name: "table header", headers: amqp.Table{"x-death": xdeathEntry(int64(1))},
			wantErr: []string{"x-death", "amqp091.Table", "not an array"}},
		{name: "slice of tables is not an array", headers: amqp.Table{"x-death": []amqp.Table{xdeathEntry(int64(1))}},
			wantErr: []string{"x-death", "[]amqp091.Table", "not an array"}},
		{name: "one full entry", headers: xdeathHeaders(full), want: dlxretry.Deaths{fullDeath}},
		{name: "order kept", headers: xdeathHeaders(full, xdeathEntry(int64(2))),
			want: dlxretry.Deaths{fullDeath, rejectedOrders(2)}},
		{name: "map entry", headers: xdeathHeaders(map[string]any(xdeathEntry(int64(2)))),
			want: dlxretry.Deaths{rejectedOrders(2)}},
		{name: "byte-array queue and reason",
			headers: xdeathHeaders(amqp.Table{"queue": []byte("orders"), "reason": []byte("rejected"), "count": int64(1)}),
			want:    dlxretry.Deaths{{Queue: "orders", Reason: "rejected", Count: 1}}},
		{name: "entries that are not tables",
			headers: xdeathHeaders("orders", int64(1), nil, xdeathEntry(int64(1)), []any{xdeathEntry(int64(1))}),
			want:    dlxretry.Deaths{rejectedOrders(1)}, wantErr: []string{"x-death", "4 of 5 entries"}},
		{name: "entries missing queue or reason",
			headers: xdeathHeaders(
				amqp.Table{"reason": "rejected", "count": int64(1)},
				amqp.Table{"queue": "orders", "count": int64(1)},
				amqp.Table{"queue": "", "reason": "rejected"},
				amqp.Table{"queue": "orders", "reason": int64(1)},
				amqp.Table{},
				xdeathEntry(int64(4))),
			want: dlxretry.Deaths{rejectedOrders(4)}, wantErr: []string{"x-death", "5 of 6 entries"}},
		{name: "no entry readable", headers: xdeathHeaders("x", amqp.Table{}),
			want: dlxretry.Deaths{}, wantErr: []string{"2 of 2 entries"}},
		{name: "fields of the wrong type are zero",
			headers: xdeathHeaders(amqp.Table{"queue": "orders", "reason": "rejected", "count": "3",
				"time": "yesterday", "exchange": int64(1), "routing-keys": "order.created", "original-expiration": int64(5)}),
			want: dlxretry.Deaths{{Queue: "orders", Reason: "rejected"}}},
		{name: "routing keys that are not strings are dropped",
			headers: xdeathHeaders(amqp.Table{"queue": "orders", "reason": "rejected", "count": int64(1),
				"routing-keys": []any{int64(7), "order.created", nil, amqp.Table{}, "cc.key", true}}),
			want: dlxretry.Deaths{{Queue: "orders", Reason: "rejected", Count: 1, RoutingKeys: []string{"order.created", "cc.key"}}}},
		{name: "negative count kept",
			headers: xdeathHeaders(xdeathEntry(int64(-2))),
			want:    dlxretry.Deaths{rejectedOrders(-2)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := dlxretry.ParseDeaths(tt.headers)
			checkParseError(t, err, tt.wantErr)
			if !sameDeaths(got, tt.want) {
				t.Errorf("ParseDeaths() =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func checkParseError(t *testing.T, err error, want []string) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Errorf("ParseDeaths() error = %v, want nil", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("ParseDeaths() error = nil, want one saying %q", want)
	}
	for _, s := range want {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("ParseDeaths() error = %q, want it to say %q", err, s)
		}
	}
}

// sameDeaths compares Deaths, treating nil and empty slices alike.
func sameDeaths(a, b dlxretry.Deaths) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if len(x.RoutingKeys) == 0 && len(y.RoutingKeys) == 0 {
			x.RoutingKeys, y.RoutingKeys = nil, nil
		}
		if !reflect.DeepEqual(x, y) {
			return false
		}
	}
	return true
}

// Whatever integer width a count arrives in, it is read, as long as it fits
// an int64; a float only when it is a whole number. Otherwise it is 0.
func TestParseDeathsCountWidths(t *testing.T) {
	tests := []struct {
		count any
		want  int64
	}{
		{int8(5), 5}, {int8(-5), -5}, {int8(math.MaxInt8), math.MaxInt8},
		{int16(300), 300}, {int16(math.MinInt16), math.MinInt16},
		{int32(70000), 70000}, {int32(math.MaxInt32), math.MaxInt32},
		{int64(1 << 40), 1 << 40}, {int64(math.MaxInt64), math.MaxInt64}, {int64(math.MinInt64), math.MinInt64},
		{int(12), 12}, {int(-12), -12},
		{uint8(200), 200}, {uint16(math.MaxUint16), math.MaxUint16}, {uint32(math.MaxUint32), math.MaxUint32},
		{uint64(7), 7}, {uint64(math.MaxInt64), math.MaxInt64},
		{uint64(math.MaxInt64 + 1), 0}, {uint64(math.MaxUint64), 0},
		{float64(3), 3}, {float64(-3), -3}, {float64(2.5), 0}, {float64(0.1), 0},
		{math.NaN(), 0}, {math.Inf(1), 0}, {float64(1 << 63), 0},
		{float32(4), 4}, {float32(4.5), 0},
		{"3", 0}, {true, 0}, {nil, 0}, {amqp.Decimal{Scale: 0, Value: 3}, 0},
	}
	for _, tt := range tests {
		deaths, err := dlxretry.ParseDeaths(xdeathHeaders(xdeathEntry(tt.count)))
		if err != nil || len(deaths) != 1 {
			t.Errorf("count %T(%v): ParseDeaths() = %v, %v", tt.count, tt.count, deaths, err)
			continue
		}
		if deaths[0].Count != tt.want {
			t.Errorf("count %T(%v): Count = %d, want %d", tt.count, tt.count, deaths[0].Count, tt.want)
		}
	}
}

// The broker sends time as an AMQP timestamp (a time.Time once decoded);
// an integer is read as Unix seconds.
func TestParseDeathsTime(t *testing.T) {
	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		time any
		want time.Time
	}{
		{at, at},
		{int64(at.Unix()), at},
		{int32(1000), time.Unix(1000, 0)},
		{uint32(1000), time.Unix(1000, 0)},
		{float64(1000), time.Unix(1000, 0)},
		{float64(1000.5), time.Time{}},
		{uint64(math.MaxUint64), time.Time{}},
		{"2024-05-01T12:00:00Z", time.Time{}},
		{nil, time.Time{}},
	}
	for _, tt := range tests {
		e := xdeathEntry(int64(1))
		e["time"] = tt.time
		deaths, err := dlxretry.ParseDeaths(xdeathHeaders(e))
		if err != nil || len(deaths) != 1 {
			t.Fatalf("time %T(%v): ParseDeaths() = %v, %v", tt.time, tt.time, deaths, err)
		}
		if !deaths[0].Time.Equal(tt.want) {
			t.Errorf("time %T(%v): Time = %v, want %v", tt.time, tt.time, deaths[0].Time, tt.want)
		}
	}
}

// deathsForHelpers: the work queue "orders" was rejected 3 times, first
// with key order.created; its first tier expired twice; "audit" has a
// rejection with no routing keys and "legacy" a negative count.
var deathsForHelpers = dlxretry.Deaths{
	{Queue: "orders.retry.1.1s", Reason: "expired", Count: 2, RoutingKeys: []string{"orders.tier.1"}},
	{Queue: "orders", Reason: "rejected", Count: 3, RoutingKeys: []string{"order.created", "audit.copy"}},
	{Queue: "orders", Reason: "rejected", Count: 9, RoutingKeys: []string{"duplicate"}},
	{Queue: "orders", Reason: "maxlen", Count: 1},
	{Queue: "audit", Reason: "rejected", Count: 1},
	{Queue: "legacy", Reason: "rejected", Count: -4, RoutingKeys: []string{"legacy.key"}},
}

func TestXDeathFind(t *testing.T) {
	tests := []struct {
		queue, reason string
		want          int // index in deathsForHelpers, -1 for none
	}{
		{"orders", "rejected", 1}, // the first of two
		{"orders", "maxlen", 3},
		{"orders.retry.1.1s", "expired", 0},
		{"orders", "expired", -1},
		{"orders.retry.1.1s", "rejected", -1},
		{"ORDERS", "rejected", -1},
		{"", "", -1},
	}
	for _, tt := range tests {
		got, ok := deathsForHelpers.Find(tt.queue, tt.reason)
		want, wantOK := dlxretry.Death{}, tt.want >= 0
		if wantOK {
			want = deathsForHelpers[tt.want]
		}
		if ok != wantOK || !reflect.DeepEqual(got, want) {
			t.Errorf("Find(%q, %q) = %+v, %v; want %+v, %v", tt.queue, tt.reason, got, ok, want, wantOK)
		}
	}
	if got, ok := dlxretry.Deaths(nil).Find("orders", "rejected"); ok || !reflect.DeepEqual(got, dlxretry.Death{}) {
		t.Errorf("nil Deaths: Find() = %+v, %v", got, ok)
	}
}

func TestXDeathRejections(t *testing.T) {
	tests := []struct {
		deaths dlxretry.Deaths
		queue  string
		want   int64
	}{
		{deathsForHelpers, "orders", 3},
		{deathsForHelpers, "audit", 1},
		{deathsForHelpers, "legacy", 0}, // negative counts read as 0
		{deathsForHelpers, "orders.retry.1.1s", 0},
		{deathsForHelpers, "other", 0},
		{nil, "orders", 0},
		{dlxretry.Deaths{{Queue: "orders", Reason: "rejected", Count: math.MaxInt64}}, "orders", math.MaxInt64},
	}
	for _, tt := range tests {
		if got := tt.deaths.Rejections(tt.queue); got != tt.want {
			t.Errorf("Rejections(%q) = %d, want %d", tt.queue, got, tt.want)
		}
	}
}

func TestXDeathOriginalRoutingKey(t *testing.T) {
	tests := []struct {
		deaths dlxretry.Deaths
		queue  string
		want   string
		wantOK bool
	}{
		{deathsForHelpers, "orders", "order.created", true},
		{deathsForHelpers, "legacy", "legacy.key", true},
		{deathsForHelpers, "audit", "", false},             // rejected, but no keys
		{deathsForHelpers, "orders.retry.1.1s", "", false}, // expired, never rejected
		{deathsForHelpers, "other", "", false},
		{nil, "orders", "", false},
	}
	for _, tt := range tests {
		got, ok := tt.deaths.OriginalRoutingKey(tt.queue)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("OriginalRoutingKey(%q) = %q, %v; want %q, %v", tt.queue, got, ok, tt.want, tt.wantOK)
		}
	}
}

// The helpers on a header as the broker sends it, after three rejections:
// entries in the broker's order, where the {orders, rejected} one is not first.
func TestXDeathFromBrokerHeader(t *testing.T) {
	at := time.Unix(1714564800, 0)
	headers := amqp.Table{"x-death": []any{
		amqp.Table{"count": int64(2), "exchange": "orders.retry", "queue": "orders.retry.2.2s",
			"reason": "expired", "routing-keys": []any{"orders.tier.1"}, "time": at},
		amqp.Table{"count": int64(1), "exchange": "orders.retry", "queue": "orders.retry.1.1s",
			"reason": "expired", "routing-keys": []any{"order.created"}, "time": at},
		amqp.Table{"count": int64(3), "exchange": "events", "queue": "orders",
			"reason": "rejected", "routing-keys": []any{"order.created"}, "time": at},
	}, "x-first-death-queue": "orders", "x-first-death-reason": "rejected", "x-first-death-exchange": "events"}
	deaths, err := dlxretry.ParseDeaths(headers)
	if err != nil || len(deaths) != 3 {
		t.Fatalf("ParseDeaths() = %v, %v", deaths, err)
	}
	if n := deaths.Rejections("orders"); n != 3 {
		t.Errorf("Rejections = %d, want 3", n)
	}
	if k, ok := deaths.OriginalRoutingKey("orders"); k != "order.created" || !ok {
		t.Errorf("OriginalRoutingKey = %q, %v; want order.created", k, ok)
	}
	if d, _ := deaths.Find("orders", dlxretry.ReasonRejected); d.Exchange != "events" || !d.Time.Equal(at) {
		t.Errorf("Find = %+v", d)
	}
}

// The entries' routing keys share one array: appending to one entry's
// keys must not change the next entry's.
func TestParseDeathsRoutingKeysAreSeparate(t *testing.T) {
	h := amqp.Table{"x-death": []any{
		amqp.Table{"queue": "q", "reason": "rejected", "count": int64(1), "routing-keys": []any{"a"}},
		amqp.Table{"queue": "q.retry.1", "reason": "expired", "count": int64(1), "routing-keys": []any{"b", "c"}},
	}}
	ds, err := dlxretry.ParseDeaths(h)
	if err != nil || len(ds) != 2 {
		t.Fatalf("ParseDeaths = %v, %v", ds, err)
	}
	_ = append(ds[0].RoutingKeys, "changed")
	if got := ds[1].RoutingKeys; len(got) != 2 || got[0] != "b" || got[1] != "c" {
		t.Fatalf("second entry's keys = %q after appending to the first's, want [b c]", got)
	}
}
