package dlxotel_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dlxretry/dlxretry"
)

const localURL = "amqp://guest:guest@localhost:5672/"

// brokerURL is RABBITMQ_URL, or a broker on localhost:5672; without one the
// test skips, or fails when DLXRETRY_REQUIRE_BROKER is set (as in CI).
func brokerURL(t *testing.T) string {
	t.Helper()
	if u := os.Getenv("RABBITMQ_URL"); u != "" {
		return u
	}
	if c, err := net.DialTimeout("tcp", "localhost:5672", time.Second); err == nil {
		c.Close()
		return localURL
	}
	msg := "no RabbitMQ broker: set RABBITMQ_URL or run one on localhost:5672"
	if os.Getenv("DLXRETRY_REQUIRE_BROKER") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// declare declares a topology under a name of the test's own and deletes it
// when the test ends.
func declare(t *testing.T, url string, typ dlxretry.QueueType, delays []time.Duration, maxAttempts int) dlxretry.Topology {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "t.otel." + strings.ToLower(strings.ReplaceAll(t.Name(), "/", ".")) + "." + hex.EncodeToString(b)
	topo := dlxretry.Topology{Queue: name + ".jobs", Exchange: name, Type: typ, Delays: delays, MaxAttempts: maxAttempts}
	withChannel(t, url, func(ch *amqp.Channel) error { return topo.Declare(context.Background(), ch) })
	t.Cleanup(func() {
		withChannel(t, url, func(ch *amqp.Channel) error { return topo.Delete(context.Background(), ch) })
	})
	return topo
}

func withChannel(t *testing.T, url string, f func(*amqp.Channel) error) {
	t.Helper()
	conn, err := amqp.DialConfig(url, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("channel: %v", err)
	}
	if err := f(ch); err != nil {
		t.Fatal(err)
	}
}

// run runs c until the test ends.
func run(t *testing.T, c *dlxretry.Consumer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-ran; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// await waits for n values from ch, or fails the test after a timeout.
func await[T any](t *testing.T, ch <-chan T, n int, what string) []T {
	t.Helper()
	timeout := time.After(30 * time.Second)
	var got []T
	for len(got) < n {
		select {
		case v := <-ch:
			got = append(got, v)
		case <-timeout:
			t.Fatalf("waited 30s for %d %s, got %d", n, what, len(got))
		}
	}
	return got
}
