package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/dlxretry/dlxretry"
	"github.com/dlxretry/dlxretry/internal/brokertest"
)

// TestDemo runs the demo under names of its own and checks, at the callback
// service, that every message arrived exactly once, and in the output that
// each first attempt had the outcome the sequence gives it.
func TestDemo(t *testing.T) {
	cfg := config{brokerURL: brokertest.URL(t), prefix: brokertest.Name(t, "cb"),
		producerAddr: "127.0.0.1:0", callbackAddr: "127.0.0.1:0"}
	topo := topology(cfg.prefix)
	cleanup := brokertest.Channel(t)
	t.Cleanup(func() { _ = topo.Delete(context.Background(), cleanup) })

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	a, err := start(ctx, cfg, &syncWriter{w: &out})
	if err != nil {
		t.Fatalf("start: %v\n%s", err, out.String())
	}
	demoErr := a.demo(ctx)
	got := a.callback.received()
	if err := errors.Join(demoErr, a.stop()); err != nil {
		t.Fatalf("demo: %v\noutput:\n%s", err, out.String())
	}
	t.Logf("output:\n%s", out.String())

	if len(got) != len(sequence) {
		t.Errorf("callback service received %d distinct messages, want %d: %v", len(got), len(sequence), got)
	}
	lines := strings.Split(out.String(), "\n")
	for _, s := range sequence {
		if got[s.message] != 1 {
			t.Errorf("callback service received %s %d times, want once", s.message, got[s.message])
		}
		first := fmt.Sprintf("ack for message  %s (attempt 1)", s.message)
		if s.down {
			first = fmt.Sprintf("retry            %s (attempt 1: callback answered 503 Service Unavailable; next try in 1s)", s.message)
		}
		if count(lines, first) != 1 {
			t.Errorf("output lacks the line %q", first)
		}
		if n := count(lines, "ack for message  "+s.message+" "); n != 1 {
			t.Errorf("%d ack lines for %s, want 1", n, s.message)
		}
	}
	if n := count(lines, "parked"); n != 0 {
		t.Errorf("%d messages parked", n)
	}
	if count(lines, "deleted topology "+topo.Queue) != 1 {
		t.Errorf("output lacks the line that says the topology was deleted")
	}
}

// count is the number of lines that start with prefix.
func count(lines []string, prefix string) int {
	n := 0
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

func TestProducerRequests(t *testing.T) {
	const valid = `{"message":"hello","callback_url":"http://127.0.0.1:5001/callback"}`
	cases := []struct {
		name       string
		method     string
		body       string
		publishErr error
		status     int
		reason     string // in the "error" field of a non-2xx answer
	}{
		{"no body", "POST", "", nil, 400, "empty body"},
		{"blank body", "POST", " \n\t", nil, 400, "empty body"},
		{"truncated JSON", "POST", `{"message":`, nil, 400, "invalid JSON"},
		{"not an object", "POST", `["hello"]`, nil, 400, "invalid JSON"},
		{"message of the wrong type", "POST", `{"message":12,"callback_url":"http://x/"}`, nil, 400, "invalid JSON"},
		{"missing message", "POST", `{"callback_url":"http://x/"}`, nil, 400, "message is missing"},
		{"missing callback_url", "POST", `{"message":"hello"}`, nil, 400, "callback_url is missing"},
		{"relative callback_url", "POST", `{"message":"hello","callback_url":"/callback"}`, nil, 400, "not an absolute http or https URL"},
		{"callback_url without a host", "POST", `{"message":"hello","callback_url":"http:///callback"}`, nil, 400, "not an absolute http or https URL"},
		{"callback_url of another scheme", "POST", `{"message":"hello","callback_url":"ftp://x/callback"}`, nil, 400, "not an absolute http or https URL"},
		{"unparsable callback_url", "POST", `{"message":"hello","callback_url":"http://[::1/callback"}`, nil, 400, "not a URL"},
		{"body too large", "POST", `{"message":"` + strings.Repeat("x", maxBody) + `"}`, nil, 400, "cannot read the body"},
		{"broker refuses", "POST", valid, dlxretry.ErrUnroutable, 503, "cannot queue the message"},
		{"wrong method", "GET", "", nil, 405, ""},
		{"valid", "POST", valid, nil, 202, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var published [][]byte
			p := &producer{publish: func(_ context.Context, body []byte) error {
				published = append(published, body)
				return c.publishErr
			}}
			rec := httptest.NewRecorder()
			p.routes().ServeHTTP(rec, httptest.NewRequest(c.method, "/queue/producer/", strings.NewReader(c.body)))
			if rec.Code != c.status {
				t.Fatalf("status %d, want %d; body %s", rec.Code, c.status, rec.Body)
			}
			if c.reason != "" {
				var answer struct{ Error string }
				if err := json.Unmarshal(rec.Body.Bytes(), &answer); err != nil || !strings.Contains(answer.Error, c.reason) {
					t.Errorf("answer %s, want an error saying %q", rec.Body, c.reason)
				}
			}
			wantPublished := c.status == 202 || c.status == 503
			if wantPublished != (len(published) == 1) {
				t.Errorf("published %d messages", len(published))
			}
			if c.status == 202 && string(published[0]) != valid {
				t.Errorf("published %s, want %s", published[0], valid)
			}
		})
	}
}

// The handler parks what it cannot read and retries a callback it cannot reach.
func TestWorkerOutcomes(t *testing.T) {
	w := &worker{client: &http.Client{}}
	var perm *dlxretry.PermanentError
	err := w.handle(context.Background(), &dlxretry.Delivery{})
	if !errors.As(err, &perm) {
		t.Errorf("unreadable job: %v, want a permanent error", err)
	}
	unreachable := &dlxretry.Delivery{}
	unreachable.Body = []byte(`{"message":"hello","callback_url":"http://127.0.0.1:1/callback"}`)
	err = w.handle(context.Background(), unreachable)
	if err == nil || errors.As(err, &perm) {
		t.Errorf("unreachable callback: %v, want an error to retry", err)
	}
}

// TestRunWithoutBroker needs no broker: an unreachable one gives an error
// that says what to do, without the password.
func TestRunWithoutBroker(t *testing.T) {
	err := run(context.Background(), "amqp://guest:s3cret@127.0.0.1:1/", &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "RABBITMQ_URL") || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("run against a closed port: %v", err)
	}
}
