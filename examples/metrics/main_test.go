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
	if err := runWith(ctx, config{brokerURL: url, prefix: prefix, listen: "127.0.0.1:0"}, &out); err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	t.Logf("output:\n%s", out.String())

	var acks, retries1, retries2, parkedExhausted, parkedPermanent int
	for i := range messages {
		switch failures, permanent := fate(i); {
		case permanent:
			parkedPermanent++
		case failures == forever:
			retries1++
			retries2++
			parkedExhausted++
		default:
			retries1 += failures
			acks++
		}
	}
	parked := parkedExhausted + parkedPermanent
	q := `queue="` + topo.Queue + `"`
	x := `exchange="` + topo.Exchange + `"`
	for _, line := range []string{
		fmt.Sprintf(`dlxretry_deliveries_total{outcome="ack",%s} %d`, q, acks),
		fmt.Sprintf(`dlxretry_deliveries_total{outcome="retry",%s} %d`, q, retries1+retries2),
		fmt.Sprintf(`dlxretry_deliveries_total{outcome="park",%s} %d`, q, parked),
		fmt.Sprintf(`dlxretry_retries_total{delay="50ms",%s,tier="1"} %d`, q, retries1),
		fmt.Sprintf(`dlxretry_retries_total{delay="100ms",%s,tier="2"} %d`, q, retries2),
		fmt.Sprintf(`dlxretry_parks_total{%s,reason="exhausted"} %d`, q, parkedExhausted),
		fmt.Sprintf(`dlxretry_parks_total{%s,reason="permanent"} %d`, q, parkedPermanent),
		fmt.Sprintf(`dlxretry_handler_duration_seconds_count{outcome="ack",%s} %d`, q, acks),
		fmt.Sprintf(`dlxretry_handler_duration_seconds_count{outcome="retry",%s} %d`, q, retries1+retries2),
		fmt.Sprintf(`dlxretry_handler_duration_seconds_count{outcome="park",%s} %d`, q, parked),
		fmt.Sprintf(`dlxretry_handlers_in_flight{%s} 0`, q),
		fmt.Sprintf(`dlxretry_publishes_total{%s,result="confirmed"} %d`, x, messages),
		fmt.Sprintf(`dlxretry_publish_duration_seconds_count{%s} %d`, x, messages),
		// The publisher's connection and the consumer's session.
		"dlxretry_connections_up 2",
		"dlxretry_reconnects_total 0",
		fmt.Sprintf(`dlxretry_parking_queue_messages{%s} %d`, q, parked),
		"deleted topology " + topo.Queue,
	} {
		if !strings.Contains(out.String(), line+"\n") {
			t.Errorf("output lacks the line %q", line)
		}
	}
	for _, absent := range []string{"dlxretry_park_failures_total", `outcome="release"`, "dlxretry_parking_queue_read_errors_total{"} {
		if strings.Contains(out.String(), absent) {
			t.Errorf("output has %s", absent)
		}
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
