package parkinglot

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"github.com/dlxretry/dlxretry"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

var parkedAt = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

func parkedDelivery() amqp.Delivery {
	return amqp.Delivery{
		RoutingKey:  "order.created",
		MessageId:   "m1",
		ContentType: "application/json",
		Expiration:  "60000",
		UserId:      "guest",
		Body:        []byte(`{"id":1}`),
		Headers: amqp.Table{
			"x-death":                         []any{amqp.Table{"queue": "orders", "reason": "rejected", "count": int64(3)}},
			"x-first-death-queue":             "orders",
			"x-first-death-reason":            "rejected",
			"x-last-death-exchange":           "orders.retry",
			"x-delivery-count":                int64(2),
			dlxretry.HeaderQueue:              "orders",
			dlxretry.HeaderError:              "upstream timeout",
			dlxretry.HeaderAttempts:           int64(3),
			dlxretry.HeaderParkedAt:           parkedAt,
			dlxretry.HeaderOriginalExchange:   "shop",
			dlxretry.HeaderOriginalRoutingKey: "order.created",
			dlxretry.HeaderPermanent:          false,
			"tenant":                          "acme",
			"priority-class":                  int32(7),
			"x-dlxretry-future-header":        "from a later version",
		},
	}
}

func TestParkingLotReadsMetadata(t *testing.T) {
	m := NewMessage(parkedDelivery(), parkedAt.Add(90*time.Minute))
	want := Message{Queue: "orders", OriginalExchange: "shop", OriginalRoutingKey: "order.created",
		Error: "upstream timeout", Attempts: 3, ParkedAt: parkedAt, Age: 90 * time.Minute, Size: 8,
		RoutingKey: "order.created", MessageID: "m1", ContentType: "application/json"}
	m.Headers, m.Body = nil, nil
	if m.Queue != want.Queue || m.OriginalExchange != want.OriginalExchange || m.OriginalRoutingKey != want.OriginalRoutingKey ||
		m.Error != want.Error || m.Attempts != want.Attempts || !m.ParkedAt.Equal(want.ParkedAt) || m.Age != want.Age ||
		m.Size != want.Size || m.RoutingKey != want.RoutingKey || m.MessageID != want.MessageID || m.ContentType != want.ContentType {
		t.Errorf("got  %+v\nwant %+v", m, want)
	}
}

func TestNewMessageWithoutParkingHeaders(t *testing.T) {
	m := NewMessage(amqp.Delivery{RoutingKey: "k", Body: []byte("x")}, time.Now())
	if m.OriginalRoutingKey != "k" || !m.ParkedAt.IsZero() || m.Age != 0 || m.Attempts != 0 || m.Size != 1 {
		t.Errorf("got %+v", m)
	}
}

func TestReplayCopy(t *testing.T) {
	d := parkedDelivery()
	d.Headers[HeaderReplays] = int64(2)
	p := replayCopy(d)
	for _, gone := range []string{"x-death", "x-first-death-queue", "x-first-death-reason", "x-last-death-exchange",
		"x-delivery-count", dlxretry.HeaderQueue, dlxretry.HeaderError, dlxretry.HeaderAttempts, dlxretry.HeaderParkedAt, dlxretry.HeaderPermanent, "x-dlxretry-future-header"} {
		if _, ok := p.Headers[gone]; ok {
			t.Errorf("replayed copy keeps %s", gone)
		}
	}
	kept := map[string]any{dlxretry.HeaderOriginalExchange: "shop", dlxretry.HeaderOriginalRoutingKey: "order.created",
		"tenant": "acme", "priority-class": int32(7), HeaderReplays: int64(3)}
	for k, v := range kept {
		if p.Headers[k] != v {
			t.Errorf("replayed copy has %s = %#v, want %#v", k, p.Headers[k], v)
		}
	}
	if p.Expiration != "" || p.UserId != "" || p.DeliveryMode != amqp.Persistent || p.MessageId != "m1" || string(p.Body) != `{"id":1}` {
		t.Errorf("replayed copy properties: %+v", p)
	}
	if _, ok := d.Headers["x-death"]; !ok {
		t.Error("replayCopy changed the parked message's headers")
	}
}

func TestReplayCopyFirstReplayWithoutOriginalKey(t *testing.T) {
	p := replayCopy(amqp.Delivery{RoutingKey: "order.paid", Headers: amqp.Table{"x-death": []any{}}})
	if p.Headers[HeaderReplays] != int64(1) || p.Headers[dlxretry.HeaderOriginalRoutingKey] != "order.paid" {
		t.Errorf("headers %v", p.Headers)
	}
}

func TestParkingLotFilterMatch(t *testing.T) {
	now := parkedAt.Add(2 * time.Hour)
	m := NewMessage(parkedDelivery(), now) // 2h old
	unknownAge := NewMessage(amqp.Delivery{}, now)
	cases := []struct {
		name string
		f    Filter
		m    Message
		want bool
	}{
		{"zero value", Filter{}, m, true},
		{"zero value, no parking headers", Filter{}, unknownAge, true},
		{"queue", Filter{OriginalQueue: "orders"}, m, true},
		{"other queue", Filter{OriginalQueue: "payments"}, m, false},
		{"error text", Filter{ErrorContains: "timeout"}, m, true},
		{"error text is case sensitive", Filter{ErrorContains: "Timeout"}, m, false},
		{"older than", Filter{OlderThan: time.Hour}, m, true},
		{"older than exactly", Filter{OlderThan: 2 * time.Hour}, m, true},
		{"not older than", Filter{OlderThan: 3 * time.Hour}, m, false},
		{"newer than", Filter{NewerThan: 3 * time.Hour}, m, true},
		{"not newer than", Filter{NewerThan: time.Hour}, m, false},
		{"age window", Filter{OlderThan: time.Hour, NewerThan: 3 * time.Hour}, m, true},
		{"unknown age is not old", Filter{OlderThan: time.Second}, unknownAge, false},
		{"unknown age is not new", Filter{NewerThan: time.Hour}, unknownAge, false},
		{"string header", Filter{Headers: map[string]string{"tenant": "acme"}}, m, true},
		{"int header", Filter{Headers: map[string]string{"priority-class": "7"}}, m, true},
		{"bool header", Filter{Headers: map[string]string{dlxretry.HeaderPermanent: "false"}}, m, true},
		{"time header", Filter{Headers: map[string]string{dlxretry.HeaderParkedAt: "2024-05-01T12:00:00Z"}}, m, true},
		{"all headers must match", Filter{Headers: map[string]string{"tenant": "acme", "priority-class": "8"}}, m, false},
		{"missing header does not match empty", Filter{Headers: map[string]string{"region": ""}}, m, false},
		{"every field", Filter{OriginalQueue: "orders", ErrorContains: "up", OlderThan: time.Minute,
			Headers: map[string]string{"tenant": "acme"}}, m, true},
	}
	for _, c := range cases {
		if got := c.f.Match(c.m); got != c.want {
			t.Errorf("%s: Match = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestParkingLotFilterValidate(t *testing.T) {
	cases := []struct {
		f     Filter
		field string
	}{
		{Filter{}, ""},
		{Filter{OlderThan: time.Hour, NewerThan: 2 * time.Hour}, ""},
		{Filter{OlderThan: -time.Second}, "Filter.OlderThan"},
		{Filter{NewerThan: -time.Second}, "Filter.NewerThan"},
		{Filter{OlderThan: time.Hour, NewerThan: time.Hour}, "Filter.NewerThan"},
	}
	for _, c := range cases {
		err := c.f.Validate()
		var ce *dlxretry.ConfigError
		switch {
		case c.field == "" && err != nil:
			t.Errorf("%+v: %v", c.f, err)
		case c.field != "" && (!errors.As(err, &ce) || ce.Field != c.field):
			t.Errorf("%+v: error %v, want one for %s", c.f, err, c.field)
		}
	}
}

func TestDropJSONLine(t *testing.T) {
	m := NewMessage(parkedDelivery(), parkedAt.Add(1500*time.Millisecond))
	var buf bytes.Buffer
	if err := writeLine(&buf, m); err != nil {
		t.Fatal(err)
	}
	line := buf.String()
	if strings.Count(line, "\n") != 1 || !strings.HasSuffix(line, "\n") {
		t.Fatalf("not one line: %q", line)
	}
	var got struct {
		Message
		AgeSeconds float64 `json:"age_seconds"`
	}
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.AgeSeconds != 1.5 || string(got.Body) != `{"id":1}` || got.Error != "upstream timeout" ||
		got.Attempts != 3 || got.Headers["tenant"] != "acme" || !got.ParkedAt.Equal(parkedAt) {
		t.Errorf("round trip: %+v (age %v)", got.Message, got.AgeSeconds)
	}
}

func TestDropWriteFlushes(t *testing.T) {
	var buf bytes.Buffer
	w := bufio.NewWriterSize(&buf, 1<<16)
	if err := writeLine(w, Message{MessageID: "a"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"message_id":"a"`) {
		t.Errorf("line not flushed: %q", buf.String())
	}
	if err := writeLine(nil, Message{}); err != nil {
		t.Errorf("nil writer: %v", err)
	}
}
