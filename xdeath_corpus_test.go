package dlxretry_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dlxretry/dlxretry"
	"github.com/dlxretry/dlxretry/internal/brokertest"
	amqp "github.com/rabbitmq/amqp091-go"
)

// capturedFile is one testdata/xdeath-captured-*.json file: the headers of
// real deliveries of messages that had been rejected, written by
// TestCaptureXDeathCorpus.
type capturedFile struct {
	Broker     string             `json:"broker"`
	Deliveries []capturedDelivery `json:"deliveries"`
}

// capturedDelivery is one delivery's headers and the routing key its message
// was published with.
type capturedDelivery struct {
	Name         string      `json:"name"`
	PublishedKey string      `json:"published_key"`
	Headers      taggedTable `json:"headers"`
}

// taggedTable is a header table as JSON in which every value keeps its AMQP
// type: an object with one member named for the type, {"int64": 2},
// {"time": 1700000000} (Unix seconds), {"table": {...}}, {"array": [...]},
// {"void": null}, {"bytes": "base64"}, {"decimal": {"Scale": 1, "Value": 5}}.
type taggedTable amqp.Table

// scalarTags names the types amqp091-go decodes field values to, besides
// tables, arrays, timestamps and void.
var scalarTags = map[string]reflect.Type{
	"bool": reflect.TypeFor[bool](), "string": reflect.TypeFor[string](), "bytes": reflect.TypeFor[[]byte](),
	"int8": reflect.TypeFor[int8](), "uint8": reflect.TypeFor[uint8](),
	"int16": reflect.TypeFor[int16](), "uint16": reflect.TypeFor[uint16](),
	"int32": reflect.TypeFor[int32](), "uint32": reflect.TypeFor[uint32](), "int64": reflect.TypeFor[int64](),
	"float32": reflect.TypeFor[float32](), "float64": reflect.TypeFor[float64](),
	"decimal": reflect.TypeFor[amqp.Decimal](),
}

func (t taggedTable) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, len(t))
	for k, v := range t {
		var err error
		if m[k], err = tagged(v); err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
	}
	return json.Marshal(m)
}

func (t *taggedTable) UnmarshalJSON(b []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	*t = make(taggedTable, len(m))
	for k, raw := range m {
		v, err := untagged(raw)
		if err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
		(*t)[k] = v
	}
	return nil
}

// tagged is v as a value for json.Marshal that keeps its type.
func tagged(v any) (any, error) {
	switch v := v.(type) {
	case nil:
		return map[string]any{"void": nil}, nil
	case amqp.Table:
		return map[string]any{"table": taggedTable(v)}, nil
	case time.Time:
		return map[string]any{"time": v.Unix()}, nil
	case []any:
		list := make([]any, len(v))
		for i, x := range v {
			var err error
			if list[i], err = tagged(x); err != nil {
				return nil, fmt.Errorf("element %d: %w", i, err)
			}
		}
		return map[string]any{"array": list}, nil
	}
	for tag, typ := range scalarTags {
		if reflect.TypeOf(v) == typ {
			return map[string]any{tag: v}, nil
		}
	}
	return nil, fmt.Errorf("no JSON form for a %T", v)
}

// untagged reads a value that tagged wrote.
func untagged(b []byte) (any, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil || len(m) != 1 {
		return nil, fmt.Errorf("want an object with one type member, got %.60s (%v)", b, err)
	}
	var tag string
	var raw json.RawMessage
	for tag, raw = range m { // the one member
	}
	switch tag {
	case "void":
		return nil, nil
	case "table":
		var t taggedTable
		err := json.Unmarshal(raw, &t)
		return amqp.Table(t), err
	case "time":
		var sec int64
		err := json.Unmarshal(raw, &sec)
		return time.Unix(sec, 0), err
	case "array":
		return untaggedArray(raw)
	}
	typ, ok := scalarTags[tag]
	if !ok {
		return nil, fmt.Errorf("unknown type %q", tag)
	}
	p := reflect.New(typ)
	err := json.Unmarshal(raw, p.Interface())
	return p.Elem().Interface(), err
}

func untaggedArray(b []byte) ([]any, error) {
	var raws []json.RawMessage
	if err := json.Unmarshal(b, &raws); err != nil {
		return nil, err
	}
	list := make([]any, len(raws))
	for i, raw := range raws {
		var err error
		if list[i], err = untagged(raw); err != nil {
			return nil, fmt.Errorf("element %d: %w", i, err)
		}
	}
	return list, nil
}

// readCaptured reads the deliveries of every testdata/xdeath-captured-*.json
// file, each named <broker>/<name>.
func readCaptured() ([]capturedDelivery, error) {
	names, err := filepath.Glob(filepath.Join("testdata", "xdeath-captured-*.json"))
	if err != nil {
		return nil, err
	}
	var all []capturedDelivery
	for _, name := range names {
		var f capturedFile
		b, err := os.ReadFile(name)
		if err == nil {
			err = json.Unmarshal(b, &f)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		for _, d := range f.Deliveries {
			d.Name = f.Broker + "/" + d.Name
			all = append(all, d)
		}
	}
	return all, nil
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

// TestParseDeathsCorpus checks the headers of real deliveries of messages
// that had been rejected: they parse without error, the consumer trusts
// them, and the work queue's {queue, rejected} entry counts at least one
// failure and still holds the key the message was published with, not a tier
// key, however often the message went round the tiers.
func TestParseDeathsCorpus(t *testing.T) {
	captured, err := readCaptured()
	if err != nil {
		t.Fatal(err)
	}
	if len(captured) == 0 {
		t.Fatal("no testdata/xdeath-captured-*.json; run go test -run TestCaptureXDeathCorpus -capture-xdeath")
	}
	for _, d := range captured {
		t.Run(d.Name, func(t *testing.T) {
			headers := amqp.Table(d.Headers)
			checkDeathsInvariants(t, headers)
			deaths, err := dlxretry.ParseDeaths(headers)
			if err != nil {
				t.Fatalf("ParseDeaths: %v", err)
			}
			checkCapturedRejection(t, headers, deaths, d.PublishedKey)
		})
	}
}

func checkCapturedRejection(t *testing.T, headers amqp.Table, deaths dlxretry.Deaths, wantKey string) {
	t.Helper()
	for _, d := range deaths {
		if d.Reason != dlxretry.ReasonRejected {
			continue
		}
		if n := deaths.Rejections(d.Queue); n < 1 {
			t.Fatalf("Rejections(%q) = %d, want >= 1", d.Queue, n)
		}
		if key, ok := deaths.OriginalRoutingKey(d.Queue); !ok || key != wantKey {
			t.Fatalf("OriginalRoutingKey(%q) = %q, %v; want the publisher's %q", d.Queue, key, ok, wantKey)
		}
		if d.Time.IsZero() || d.Exchange == "" {
			t.Fatalf("rejected entry lacks time or exchange: %+v", d)
		}
		if err := dlxretry.CheckDeaths(headers, d.Queue, captureMaxAttempts); err != nil {
			t.Fatalf("the consumer does not trust a history the broker wrote: %v", err)
		}
		return
	}
	t.Fatalf("no {queue, rejected} entry in %+v", deaths)
}

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
