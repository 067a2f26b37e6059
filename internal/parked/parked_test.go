package parked

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dlxretry/dlxretry"
	"github.com/dlxretry/dlxretry/parkinglot"
)

func TestNormalize(t *testing.T) {
	cases := []struct{ in, want string }{
		{"upstream timeout after 1500ms", "upstream timeout after <n>ms"},
		{"order 4711 not found", "order <n> not found"},
		{"order-4711 not found", "order-<n> not found"},
		{"dial tcp 10.0.0.1:5432: connection refused", "dial tcp <n>:<n>: connection refused"},
		{"user 3f2b1c9e-8d7a-4b6c-9e5f-0a1b2c3d4e5f is locked", "user <id> is locked"},
		{"object 5f2b9c1e8a7d not in cache", "object <id> not in cache"},
		{"token ord_8f3k2j9x1234 expired", "token <id> expired"},
		{"sha256 mismatch over http2 with v1", "sha256 mismatch over http2 with v1"},
		{"deadbeef: nothing to do", "deadbeef: nothing to do"},
		{"took 1.5s, limit 1s", "took <n>s, limit <n>s"},
		{"  many \t spaces\nand lines ", "many spaces and lines"},
		{"", ""},
	}
	for _, c := range cases {
		if got := Normalize(c.in); got != c.want {
			t.Errorf("Normalize(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	if GroupID("order 1 not found") != GroupID("order 99 not found") || GroupID("order 1 not found") == GroupID("order 1 lost") {
		t.Error("GroupID does not follow Normalize")
	}
	if id := GroupID("x"); len(id) != 8 {
		t.Errorf("GroupID %q: want eight hex digits", id)
	}
}

func TestFormatBody(t *testing.T) {
	cases := []struct {
		contentType string
		body        string
		limit       int
		kind, text  string
		cut         int
	}{
		{"application/json", `{"a":[1,2]}`, 0, KindJSON, "{\n  \"a\": [\n    1,\n    2\n  ]\n}", 0},
		{"application/vnd.api+json; charset=utf-8", `{"a":1}`, 0, KindJSON, "{\n  \"a\": 1\n}", 0},
		{"application/json", `{"a":`, 0, KindText, `{"a":`, 0},
		{"", `[1, 2]`, 0, KindJSON, "[\n  1,\n  2\n]", 0},
		{"text/plain", "héllo\nworld", 0, KindText, "héllo\nworld", 0},
		{"", "plain words", 0, KindText, "plain words", 0},
		{"text/plain", "héllo", 2, KindText, "h", 5},
		{"application/octet-stream", "ab\x00", 0, KindBinary, "00000000  61 62 00                                          |ab.|\n", 0},
		{"", "\x00\x01\x02\x03", 2, KindBinary, "00000000  00 01                                             |..|\n", 2},
		{"image/png", "", 0, KindEmpty, "", 0},
	}
	for _, c := range cases {
		b := FormatBody(c.contentType, []byte(c.body), c.limit)
		if b.Kind != c.kind || b.Text != c.text || b.Cut != c.cut {
			t.Errorf("FormatBody(%q, %q, %d) = %+v, want %s %q cut %d", c.contentType, c.body, c.limit, b, c.kind, c.text, c.cut)
		}
	}
}

func parkedMessage(body, contentType string) Message {
	at := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	h := amqp.Table{
		dlxretry.HeaderQueue: "orders", dlxretry.HeaderError: "order 7 not found", dlxretry.HeaderAttempts: int64(3),
		dlxretry.HeaderParkedAt: at, dlxretry.HeaderPermanent: true,
		"x-death": []any{amqp.Table{"queue": "orders", "reason": "rejected", "count": int64(2), "time": at.Add(-time.Minute),
			"exchange": "shop", "routing-keys": []any{"order.created"}}},
		"x-tenant": "acme", "x-shard": int32(4),
	}
	return parkinglot.NewMessage(amqp.Delivery{MessageId: "m-1", ContentType: contentType, RoutingKey: "order.created",
		Headers: h, Body: []byte(body)}, at.Add(time.Hour))
}

// What MarshalMessage and Drop write, ReadLine reads back with the header
// types that parking and the broker write.
func TestJSONLinesReadBack(t *testing.T) {
	for _, c := range []struct{ body, contentType, encoding string }{
		{`{"order":7}`, "application/json", "json"},
		{"hello <world> & all", "text/plain", "text"},
		{"\x00\xffbin", "application/octet-stream", "base64"},
	} {
		m := parkedMessage(c.body, c.contentType)
		mine, err := MarshalMessage(m)
		if err != nil {
			t.Fatal(err)
		}
		var fields map[string]any
		if err := json.Unmarshal(mine, &fields); err != nil || fields["body_encoding"] != c.encoding {
			t.Errorf("%s: %v, body_encoding %v", c.encoding, err, fields["body_encoding"])
		}
		if c.encoding == "text" && !strings.Contains(string(mine), `"hello <world> & all"`) {
			t.Errorf("text body escaped: %s", mine)
		}
		library, _ := json.Marshal(m) // what Drop writes
		for _, line := range [][]byte{mine, library} {
			got, err := ReadLine(line)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			h := got.Headers
			deaths, derr := dlxretry.ParseDeaths(h)
			if string(got.Body) != c.body || got.MessageID != "m-1" || got.RoutingKey != "order.created" ||
				h[dlxretry.HeaderAttempts] != int64(3) || h[dlxretry.HeaderParkedAt] != m.ParkedAt || h[dlxretry.HeaderPermanent] != true ||
				h["x-shard"] != int64(4) || derr != nil || len(deaths) != 1 || deaths[0].Count != 2 || !deaths[0].Time.Equal(m.ParkedAt.Add(-time.Minute)) {
				t.Errorf("%s read back as %+v (deaths %+v, %v)", line, got, deaths, derr)
			}
		}
	}
	if _, err := ReadLine([]byte(`{"body":"x","body_encoding":"rot13"}`)); err == nil {
		t.Error("an unknown body_encoding was read")
	}
}

func TestSelectionMatch(t *testing.T) {
	m := parkedMessage("{}", "application/json")
	cases := []struct {
		s    Selection
		want bool
	}{
		{Selection{}, true},
		{Selection{IDs: []string{"m-2", "m-1"}}, true},
		{Selection{IDs: []string{"m-2"}}, false},
		{Selection{Group: GroupID("order 1234 not found")}, true},
		{Selection{Group: GroupID("timeout")}, false},
		{Selection{Group: GroupID("order 1 not found"), Filter: Filter{ErrorContains: "lost"}}, false},
		{Selection{Filter: Filter{OlderThan: 30 * time.Minute}}, true},
		{Selection{Filter: Filter{OlderThan: 2 * time.Hour}}, false},
	}
	for _, c := range cases {
		if got := c.s.Match(m); got != c.want {
			t.Errorf("%+v.Match = %v, want %v", c.s, got, c.want)
		}
	}
}

func TestSummaryBounds(t *testing.T) {
	var s Summary
	for i := range MaxGroups + 50 {
		m := parkedMessage("{}", "")
		m.Error = "error " + strings.Repeat("x", i%MaxGroups+1) // MaxGroups patterns, each twice at most
		m.MessageID = "m"
		s.Add(m)
	}
	m := parkedMessage("{}", "")
	m.Error = "a new kind of error"
	s.Add(m)
	s.sort()
	other, ok := s.Group(PatternID(OtherPattern))
	if len(s.Groups) != MaxGroups+1 || !ok || other.Count != 1 || s.Messages != MaxGroups+51 || s.Groups[0].Count != 2 || len(s.Groups[0].Sample) != 2 {
		t.Errorf("%d groups, other %+v", len(s.Groups), other)
	}
}
