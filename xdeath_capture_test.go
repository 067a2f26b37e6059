package dlxretry_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dlxretry/dlxretry"
	"github.com/dlxretry/dlxretry/internal/brokertest"
	amqp "github.com/rabbitmq/amqp091-go"
)

var flagCaptureXDeath = flag.Bool("capture-xdeath", false,
	"run TestCaptureXDeathCorpus: write headers of real dead-lettered deliveries to testdata/xdeath-captured-*.json")

// captureMaxAttempts is the MaxAttempts of the topology the headers come from.
const captureMaxAttempts = 10

// xdeathScenario is a message TestCaptureXDeathCorpus sends round the tiers.
type xdeathScenario struct {
	tag        string // its body, and part of the delivery names
	key        string // the routing key it is published with
	cc         []any  // its CC header
	expire     bool   // first expires from a queue with per-message expiration
	crash      bool   // returned unacked (requeued) once before each rejection
	rejections int    // nacks (requeue=false) before it is acked
	pause      time.Duration
}

var xdeathScenarios = []xdeathScenario{
	// The pause makes each rejection fall in another second, so that a
	// changing x-death time shows.
	{tag: "retry", key: "order.created", rejections: 4, pause: 1100 * time.Millisecond},
	{tag: "cc", key: "order.updated", cc: []any{"order.audit"}, rejections: 2},
	{tag: "expired", key: "order.expired", expire: true, rejections: 2},
	{tag: "crash", key: "order.crashed", crash: true, rejections: 2},
}

// TestCaptureXDeathCorpus is a tool, not a check: with -capture-xdeath it
// sends messages round the retry tiers of a real broker, classic and quorum,
// and writes the headers of every delivery that carries a rejection to
// testdata/xdeath-captured-rabbitmq-<major.minor>.json, replacing that file.
// Point RABBITMQ_URL at another broker version to capture its headers.
func TestCaptureXDeathCorpus(t *testing.T) {
	if !*flagCaptureXDeath {
		t.Skip("a tool: run with -capture-xdeath to rewrite testdata/xdeath-captured-*.json")
	}
	conn := brokertest.Dial(t)
	version, _ := conn.Properties["version"].(string)
	f := capturedFile{Broker: "RabbitMQ " + version}
	for _, typ := range []dlxretry.QueueType{dlxretry.Classic, dlxretry.Quorum} {
		t.Run(string(typ), func(t *testing.T) {
			f.Deliveries = append(f.Deliveries, captureXDeaths(t, conn, typ)...)
		})
	}
	slices.SortFunc(f.Deliveries, func(a, b capturedDelivery) int { return strings.Compare(a.Name, b.Name) })
	minor := strings.Join(strings.SplitN(version, ".", 3)[:2], ".")
	name := filepath.Join("testdata", "xdeath-captured-rabbitmq-"+minor+".json")
	if err := writeCapturedFile(name, f); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %d deliveries from %s to %s", len(f.Deliveries), f.Broker, name)
}

func captureXDeaths(t *testing.T, conn *amqp.Connection, typ dlxretry.QueueType) []capturedDelivery {
	topo := dlxretry.Topology{
		Queue:       brokertest.Name(t, "q"),
		Delays:      []time.Duration{20 * time.Millisecond, 40 * time.Millisecond},
		MaxAttempts: captureMaxAttempts,
		Type:        typ,
		Exchange:    brokertest.Name(t, "x"),
	}
	ch := captureChannel(t, conn)
	if err := topo.Declare(context.Background(), ch); err != nil {
		t.Fatalf("declare: %v", err)
	}
	t.Cleanup(func() {
		if err := topo.Delete(context.Background(), captureChannel(t, conn)); err != nil {
			t.Errorf("delete topology: %v", err)
		}
	})
	// Messages expire here and dead-letter into the work queue.
	expireQueue := brokertest.Queue(t, "expire", amqp.Table{
		"x-queue-type":              string(typ),
		"x-dead-letter-exchange":    topo.Exchange,
		"x-dead-letter-routing-key": "order.expired",
	})
	deliveries := captureConsume(t, conn, topo.Queue)
	capturePublish(t, ch, topo.Exchange, expireQueue)
	return captureDeliveries(t, deliveries, string(typ))
}

func captureChannel(t *testing.T, conn *amqp.Connection) *amqp.Channel {
	t.Helper()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("open channel: %v", err)
	}
	return ch
}

func captureConsume(t *testing.T, conn *amqp.Connection, queue string) <-chan amqp.Delivery {
	t.Helper()
	ch := captureChannel(t, conn)
	if err := ch.Qos(10, 0, false); err != nil {
		t.Fatal(err)
	}
	deliveries, err := ch.Consume(queue, "", false, false, false, false, nil)
	if err != nil {
		t.Fatalf("consume: %v", err)
	}
	return deliveries
}

func capturePublish(t *testing.T, ch *amqp.Channel, exchange, expireQueue string) {
	t.Helper()
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	for _, s := range xdeathScenarios {
		msg := amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte(s.tag)}
		x, key := exchange, s.key
		if s.cc != nil {
			msg.Headers = amqp.Table{"CC": s.cc}
		}
		if s.expire {
			x, key, msg.Expiration = "", expireQueue, "20"
		}
		dc, err := ch.PublishWithDeferredConfirm(x, key, true, false, msg)
		if err != nil || !dc.Wait() {
			t.Fatalf("publish %s: %v (or nacked)", s.tag, err)
		}
	}
}

// captureDeliveries plays each scenario out and returns the headers of
// every delivery that comes after a rejection.
func captureDeliveries(t *testing.T, deliveries <-chan amqp.Delivery, typ string) []capturedDelivery {
	t.Helper()
	byTag := map[string]xdeathScenario{}
	for _, s := range xdeathScenarios {
		byTag[s.tag] = s
	}
	var captured []capturedDelivery
	rejected, crashed, seq := map[string]int{}, map[string]int{}, map[string]int{}
	timeout := time.After(time.Minute)
	for done := 0; done < len(xdeathScenarios); {
		var d amqp.Delivery
		select {
		case d = <-deliveries:
		case <-timeout:
			t.Fatalf("timed out; rejections so far: %v", rejected)
		}
		s, n := byTag[string(d.Body)], rejected[string(d.Body)]
		seq[s.tag]++
		if n > 0 {
			name := fmt.Sprintf("%s-%s-%02d", typ, s.tag, seq[s.tag])
			captured = append(captured, capturedDelivery{Name: name, PublishedKey: s.key, Headers: taggedTable(d.Headers)})
		}
		var err error
		switch {
		case s.crash && crashed[s.tag] <= n:
			crashed[s.tag]++
			err = d.Reject(true)
		case n < s.rejections:
			time.Sleep(s.pause)
			rejected[s.tag]++
			err = d.Nack(false, false)
		default:
			done++
			err = d.Ack(false)
		}
		if err != nil {
			t.Fatalf("settle %s: %v", s.tag, err)
		}
	}
	return captured
}

// scalarMember is a tagged scalar as json.MarshalIndent lays it out.
var scalarMember = regexp.MustCompile(`\{\n\s*("\w+": [^{}\[\]\n]*)\n\s*\}`)

// writeCapturedFile writes f as JSON, a tagged scalar on one line.
func writeCapturedFile(name string, f capturedFile) error {
	b, err := json.MarshalIndent(f, "", "\t")
	if err != nil {
		return err
	}
	b = scalarMember.ReplaceAll(b, []byte("{$1}"))
	return os.WriteFile(name, append(b, '\n'), 0o644)
}
