package dlxprom_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dlxretry/dlxretry"
	dlxprom "github.com/dlxretry/dlxretry/prometheus"
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
func declare(t *testing.T, url string) dlxretry.Topology {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "t.prom." + strings.ToLower(t.Name()) + "." + hex.EncodeToString(b)
	topo := dlxretry.Topology{Queue: name + ".jobs", Exchange: name, Delays: []time.Duration{time.Second}, MaxAttempts: 2}
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

// newCollector registers a Collector with a registry of its own.
func newCollector(t *testing.T, opts ...dlxprom.Option) (*dlxprom.Collector, *prometheus.Registry) {
	t.Helper()
	c, err := dlxprom.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	return c, reg
}

// samples gathers reg: each sample keyed by name{label="value",...}, labels
// sorted, histograms as their _count and _sum.
func samples(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			sort.Strings(labels)
			key := func(suffix string) string {
				if len(labels) == 0 {
					return f.GetName() + suffix
				}
				return f.GetName() + suffix + "{" + strings.Join(labels, ",") + "}"
			}
			switch {
			case m.Counter != nil:
				out[key("")] = m.Counter.GetValue()
			case m.Gauge != nil:
				out[key("")] = m.Gauge.GetValue()
			case m.Histogram != nil:
				out[key("_count")] = float64(m.Histogram.GetSampleCount())
				out[key("_sum")] = m.Histogram.GetSampleSum()
			}
		}
	}
	return out
}

// want checks the samples named in w; a value of -1 means absent.
func want(t *testing.T, got map[string]float64, w map[string]float64) {
	t.Helper()
	for k, v := range w {
		g, ok := got[k]
		switch {
		case v == -1 && ok:
			t.Errorf("%s = %v, want no sample", k, g)
		case v != -1 && !ok:
			t.Errorf("%s: no sample, want %v", k, v)
		case v != -1 && g != v:
			t.Errorf("%s = %v, want %v", k, g, v)
		}
	}
}
