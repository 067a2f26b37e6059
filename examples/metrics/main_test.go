package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// TestMetrics runs the load under names of its own and checks the scraped
// series against the outcomes fate gives each job.
func TestMetrics(t *testing.T) {
	url := brokerURL(t)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	prefix := "t.metrics." + hex.EncodeToString(b)
	topo := topology(prefix)
	t.Cleanup(func() {
		if conn, err := amqp.Dial(url); err == nil {
			if ch, err := conn.Channel(); err == nil {
				_ = topo.Delete(context.Background(), ch)
			}
			conn.Close()
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	if _, err := runWith(ctx, config{brokerURL: url, prefix: prefix, listen: "127.0.0.1:0"}, &out); err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	t.Logf("output:\n%s", out.String())

	var acks, retries1, retries2, parkedAttempts, parkedPermanent int
	for i := range messages {
		switch failures, permanent := fate(i); {
		case permanent:
			parkedPermanent++
		case failures == forever:
			retries1++
			retries2++
			parkedAttempts++
		default:
			retries1 += failures
			acks++
		}
	}
	q := `queue="` + topo.Queue + `"`
	for _, line := range []string{
		fmt.Sprintf(`dlxretry_acks_total{%s} %d`, q, acks),
		fmt.Sprintf(`dlxretry_retries_total{%s,tier="1"} %d`, q, retries1),
		fmt.Sprintf(`dlxretry_retries_total{%s,tier="2"} %d`, q, retries2),
		fmt.Sprintf(`dlxretry_parks_total{%s,reason="attempts"} %d`, q, parkedAttempts),
		fmt.Sprintf(`dlxretry_parks_total{%s,reason="permanent"} %d`, q, parkedPermanent),
		fmt.Sprintf(`dlxretry_publishes_total{exchange="%s",result="confirmed"} %d`, topo.Exchange, messages),
		fmt.Sprintf(`dlxretry_handler_duration_seconds_count{outcome="ack",%s} %d`, q, acks),
		fmt.Sprintf(`dlxretry_handler_duration_seconds_count{outcome="retry",%s} %d`, q, retries1+retries2),
		fmt.Sprintf(`dlxretry_handler_duration_seconds_count{outcome="park",%s} %d`, q, parkedAttempts+parkedPermanent),
		"(21 histogram bucket lines left out)",
		"deleted topology " + topo.Queue,
	} {
		if !strings.Contains(out.String(), line+"\n") {
			t.Errorf("output lacks the line %q", line)
		}
	}
	if strings.Contains(out.String(), "dlxretry_park_errors_total") {
		t.Errorf("a parking failed")
	}
}

// brokerURL is RABBITMQ_URL, or a broker on localhost:5672; without one the
// test skips, or fails when DLXRETRY_REQUIRE_BROKER is set (as in CI). This
// module cannot import the library's internal/brokertest.
func brokerURL(t *testing.T) string {
	t.Helper()
	if u := os.Getenv("RABBITMQ_URL"); u != "" {
		return u
	}
	if c, err := net.DialTimeout("tcp", "localhost:5672", time.Second); err == nil {
		c.Close()
		return defaultURL
	}
	msg := "no RabbitMQ broker: set RABBITMQ_URL or run one on localhost:5672"
	if os.Getenv("DLXRETRY_REQUIRE_BROKER") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}
