package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dlxretry/dlxretry"
	"github.com/dlxretry/dlxretry/internal/brokertest"
)

// TestNotification runs the example under names of its own and counts
// everything: sends at the gateway, outcomes, and the parked messages with
// their headers.
func TestNotification(t *testing.T) {
	n := names{exchange: brokertest.Name(t, "notification"), queue: brokertest.Name(t, "SMS"), key: "mobile"}
	topo := topology(n)
	cleanup := brokertest.Channel(t)
	t.Cleanup(func() { _ = topo.Delete(context.Background(), cleanup) })

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	res, err := runWith(ctx, brokertest.URL(t), n, &out)
	if err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	t.Logf("output:\n%s", out.String())

	// Three numbers get through, one after two busy answers and one after
	// one; +15555550100 is busy for good and parked at the threshold; the
	// invalid number and the body that is not JSON are parked at once.
	wantSent := map[string]int{"+4915112345678": 1, "+441632960961": 1, "+33612345678": 1}
	if len(res.gatewaySent) != len(wantSent) {
		t.Errorf("gateway sent to %v, want %v", res.gatewaySent, wantSent)
	}
	for number, k := range wantSent {
		if res.gatewaySent[number] != k {
			t.Errorf("gateway sent %d SMS to %s, want %d", res.gatewaySent[number], number, k)
		}
	}
	if res.sent != 3 || res.retries != 2+1+(topo.MaxAttempts-1) || res.parks != 3 {
		t.Errorf("sent %d, retries %d, parks %d; want 3, %d, 3", res.sent, res.retries, res.parks, 3+topo.MaxAttempts-1)
	}

	parked := map[string]amqp.Delivery{}
	for _, m := range res.parked {
		parked[string(m.Body)] = m
	}
	for _, want := range []struct {
		body      string
		attempts  int64
		permanent bool
		reason    string
	}{
		{bodies[4], 1, true, `invalid phone number "0176 123"`},
		{bodies[5], 1, true, "unreadable SMS: invalid character"},
		{bodies[3], int64(topo.MaxAttempts), false, "SMS gateway busy"},
	} {
		m, ok := parked[want.body]
		if !ok {
			t.Errorf("%s was not parked; parked: %d messages", want.body, len(res.parked))
			continue
		}
		h := m.Headers
		if h[dlxretry.HeaderAttempts] != want.attempts || h[dlxretry.HeaderPermanent] != want.permanent ||
			!strings.HasPrefix(fmt.Sprint(h[dlxretry.HeaderError]), want.reason) ||
			h[dlxretry.HeaderOriginalExchange] != n.exchange || h[dlxretry.HeaderOriginalRoutingKey] != n.key ||
			h[dlxretry.HeaderQueue] != n.queue {
			t.Errorf("parked %s with headers %v, want attempts %d, permanent %v, error %q…", want.body, h, want.attempts, want.permanent, want.reason)
		}
	}
	if len(res.parked) != 3 {
		t.Errorf("%d messages in the parking queue, want 3", len(res.parked))
	}
	for _, line := range []string{
		`park    "0176 123" after 1 attempt: invalid phone number "0176 123" (permanent)`,
		`park    +15555550100 after 4 attempts: SMS gateway busy`,
		`sent    +441632960961 "Your parcel arrives today" (attempt 3)`,
		"summary: 6 SMS, 3 sent, 6 retries, 3 parked",
		"deleted topology " + n.queue,
	} {
		if !strings.Contains(out.String(), line+"\n") {
			t.Errorf("output lacks the line %q", line)
		}
	}
}

func TestHandlerOutcomes(t *testing.T) {
	cases := []struct {
		name      string
		body      string
		busy      int
		wantErr   bool
		permanent bool
	}{
		{"valid", `{"to":"+4915112345678","text":"hi"}`, 0, false, false},
		{"gateway busy", `{"to":"+4915112345678","text":"hi"}`, forever, true, false},
		{"no plus", `{"to":"4915112345678","text":"hi"}`, 0, true, true},
		{"too short", `{"to":"+49151","text":"hi"}`, 0, true, true},
		{"letters", `{"to":"+49151CALLME","text":"hi"}`, 0, true, true},
		{"no number", `{"text":"hi"}`, 0, true, true},
		{"not JSON", `hi`, 0, true, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			gw := newGateway(map[string]int{"+4915112345678": c.busy})
			d := &dlxretry.Delivery{}
			d.Body = []byte(c.body)
			err := gw.handle(context.Background(), d)
			var perm *dlxretry.PermanentError
			if (err != nil) != c.wantErr || (err != nil && errors.As(err, &perm) != c.permanent) {
				t.Errorf("handle(%s) = %v, want error %v, permanent %v", c.body, err, c.wantErr, c.permanent)
			}
		})
	}
}
