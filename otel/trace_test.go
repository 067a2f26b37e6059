package dlxotel_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"slices"
	"sort"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/dlxretry/dlxretry"
	dlxotel "github.com/dlxretry/dlxretry/otel"
	"github.com/dlxretry/dlxretry/parkinglot"
)

var update = flag.Bool("update", false, "write the trace pictures under docs/")

var errDownstream = errors.New("downstream unavailable")

// TestTraceAcrossRetries publishes two messages through the real broker: one
// that fails twice and then succeeds, one that fails every time, is parked,
// and is replayed from the parking lot. Each message's publish span and all
// its process spans are in one trace.
func TestTraceAcrossRetries(t *testing.T) {
	for _, typ := range []dlxretry.QueueType{dlxretry.Classic, dlxretry.Quorum} {
		t.Run(string(typ), func(t *testing.T) { testTraceAcrossRetries(t, typ) })
	}
}

func testTraceAcrossRetries(t *testing.T, typ dlxretry.QueueType) {
	url := brokerURL(t)
	topo := declare(t, url, typ, []time.Duration{100 * time.Millisecond, 200 * time.Millisecond}, 3)
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })

	settled := make(chan string, 10)
	hooks := dlxotel.Merge(dlxotel.Hooks(dlxotel.WithTracerProvider(tp)), dlxretry.Hooks{
		OnAck:  func(_ context.Context, e dlxretry.AckEvent) { settled <- e.Delivery.MessageId + " ack" },
		OnPark: func(_ context.Context, e dlxretry.ParkEvent) { settled <- e.Delivery.MessageId + " park" },
	})
	handler := func(ctx context.Context, d *dlxretry.Delivery) error {
		_, span := tp.Tracer("test").Start(ctx, "charge card")
		defer span.End()
		time.Sleep(10 * time.Millisecond)
		if _, replayed := d.Headers[parkinglot.HeaderReplays]; replayed {
			return nil
		}
		if d.MessageId == "retried" && d.Attempt > 2 {
			return nil
		}
		return errDownstream
	}
	c, err := dlxretry.NewConsumer(url, topo, handler, dlxretry.WithHooks(hooks))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := dlxretry.NewPublisher(url)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	tpub := dlxotel.NewPublisher(pub, dlxotel.WithTracerProvider(tp))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, id := range []string{"retried", "parked"} {
		if err := tpub.Publish(ctx, topo.Exchange, "job.created", amqp.Publishing{MessageId: id, Body: []byte(id)}); err != nil {
			t.Fatal(err)
		}
	}
	run(t, c)
	got := await(t, settled, 2, "settled messages")
	slices.Sort(got)
	if want := []string{"parked park", "retried ack"}; !slices.Equal(got, want) {
		t.Fatalf("settled %q, want %q", got, want)
	}

	retried := checkTrace(t, exp.GetSpans(), topo, "retried", []string{"retry", "retry", "ack"})
	parked := checkTrace(t, exp.GetSpans(), topo, "parked", []string{"retry", "retry", "park"})
	if last := parked[len(parked)-1]; attr(last, dlxotel.ParkReasonKey) != "exhausted" {
		t.Errorf("park span: %s = %q, want exhausted", dlxotel.ParkReasonKey, attr(last, dlxotel.ParkReasonKey))
	}

	conn, err := dlxretry.NewConn(url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	lot, err := parkinglot.New(conn, topo.Queue)
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := lot.Replay(ctx, parkinglot.Filter{}); err != nil || rep.Acted != 1 {
		t.Fatalf("replay: %+v, %v", rep, err)
	}
	if got := await(t, settled, 1, "replayed messages"); got[0] != "parked ack" {
		t.Fatalf("after the replay: %q, want parked ack", got[0])
	}
	replayed := checkTrace(t, exp.GetSpans(), topo, "parked", []string{"retry", "retry", "park", "ack"})
	if last := replayed[len(replayed)-1]; attr(last, dlxotel.AttemptKey) != "1" || attr(last, dlxotel.ReplaysKey) != "1" {
		t.Errorf("replayed span: attempt %s, replays %s; want 1 and 1",
			attr(last, dlxotel.AttemptKey), attr(last, dlxotel.ReplaysKey))
	}

	for name, spans := range map[string][]tracetest.SpanStub{"retried": retried, "parked": replayed} {
		trace := traceOf(exp.GetSpans(), spans[0].SpanContext.TraceID())
		t.Logf("trace of the %s message:\n%s", name, timeline(trace, topo.Exchange))
		if *update && typ == dlxretry.Classic {
			writeSVG(t, "docs/trace-"+name+".svg", trace, topo.Exchange)
		}
	}
}

// checkTrace finds the message's publish span and checks that its process
// spans, in order, are its children with attempts 1, 2, ... (1 again after a
// replay), the tier and delay they came from, and the outcomes given. It
// returns the process spans.
func checkTrace(t *testing.T, spans tracetest.SpanStubs, topo dlxretry.Topology, id string, outcomes []string) []tracetest.SpanStub {
	t.Helper()
	var publish tracetest.SpanStub
	var process []tracetest.SpanStub
	for _, s := range spans {
		if attr(s, "messaging.message.id") != id {
			continue
		}
		switch s.SpanKind {
		case trace.SpanKindProducer:
			publish = s
		case trace.SpanKindConsumer:
			process = append(process, s)
		}
	}
	if !publish.SpanContext.IsValid() {
		t.Fatalf("%s: no publish span", id)
	}
	wantAttrs(t, publish, map[attribute.Key]string{
		"messaging.system": "rabbitmq", "messaging.operation.type": "send", "messaging.operation.name": "publish",
		"messaging.destination.name": topo.Exchange, "messaging.rabbitmq.destination.routing_key": "job.created",
	})
	if want := "publish " + topo.Exchange; publish.Name != want {
		t.Errorf("%s: publish span named %q, want %q", id, publish.Name, want)
	}
	sort.Slice(process, func(i, j int) bool { return process[i].StartTime.Before(process[j].StartTime) })
	if len(process) != len(outcomes) {
		t.Fatalf("%s: %d process spans, want %d", id, len(process), len(outcomes))
	}
	for i, s := range process {
		attempt := min(i, 2) + 1
		if i == 3 {
			attempt = 1 // replayed
		}
		checkProcess(t, s, publish, topo, attempt, outcomes[i])
	}
	return process
}

func checkProcess(t *testing.T, s, publish tracetest.SpanStub, topo dlxretry.Topology, attempt int, outcome string) {
	t.Helper()
	where := fmt.Sprintf("%s attempt %d", attr(s, "messaging.message.id"), attempt)
	if s.SpanContext.TraceID() != publish.SpanContext.TraceID() || s.Parent.SpanID() != publish.SpanContext.SpanID() {
		t.Errorf("%s: not a child of the publish span", where)
	}
	if len(s.Links) != 1 || s.Links[0].SpanContext.SpanID() != publish.SpanContext.SpanID() {
		t.Errorf("%s: links %v, want one to the publish span", where, s.Links)
	}
	if want := "process " + topo.Exchange; s.Name != want {
		t.Errorf("%s: named %q, want %q", where, s.Name, want)
	}
	want := map[attribute.Key]string{
		"messaging.system": "rabbitmq", "messaging.operation.type": "process",
		"messaging.destination.name": topo.Exchange, "messaging.destination.subscription.name": topo.Queue,
		"messaging.rabbitmq.destination.routing_key": "job.created",
		dlxotel.AttemptKey:                           fmt.Sprint(attempt), dlxotel.OutcomeKey: outcome,
		dlxotel.FromTierKey: "", dlxotel.FromDelayKey: "",
	}
	if attempt > 1 {
		want[dlxotel.FromTierKey] = fmt.Sprint(attempt - 1)
		want[dlxotel.FromDelayKey] = topo.Delays[attempt-2].String()
	}
	if outcome == "retry" {
		want[dlxotel.RetryTierKey] = fmt.Sprint(attempt)
		want[dlxotel.RetryDelayKey] = topo.Delays[attempt-1].String()
	}
	wantAttrs(t, s, want)
	if outcome == "ack" {
		if s.Status.Code == codes.Error {
			t.Errorf("%s: status %v on an ack", where, s.Status)
		}
		return
	}
	if s.Status.Code != codes.Error || s.Status.Description != errDownstream.Error() {
		t.Errorf("%s: status %+v, want Error %q", where, s.Status, errDownstream)
	}
	if attr(s, "error.type") != "_OTHER" {
		t.Errorf("%s: error.type %q, want _OTHER", where, attr(s, "error.type"))
	}
}

func wantAttrs(t *testing.T, s tracetest.SpanStub, want map[attribute.Key]string) {
	t.Helper()
	for k, v := range want {
		if got := attr(s, k); got != v {
			t.Errorf("span %q (%s): %s = %q, want %q", s.Name, attr(s, "messaging.message.id"), k, got, v)
		}
	}
}

// attr is the value of s's attribute k as text, "" when absent.
func attr(s tracetest.SpanStub, k attribute.Key) string {
	for _, a := range s.Attributes {
		if a.Key == k {
			return a.Value.Emit()
		}
	}
	return ""
}

// traceOf is every span of the trace, in the order they started.
func traceOf(spans tracetest.SpanStubs, id trace.TraceID) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range spans {
		if s.SpanContext.TraceID() == id {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].StartTime.Before(out[j].StartTime) })
	return out
}

// TestPublisherKeepsCreationContext: a message whose headers carry a trace
// context already keeps it, and the publish span links to it; the caller's
// table is not changed.
func TestPublisherKeepsCreationContext(t *testing.T) {
	url := brokerURL(t)
	topo := declare(t, url, dlxretry.Classic, []time.Duration{time.Second}, 1)
	tp, exp := newProvider(t)
	pub, err := dlxretry.NewPublisher(url)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	headers := amqp.Table{"traceparent": traceparent}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = dlxotel.NewPublisher(pub, dlxotel.WithTracerProvider(tp)).
		Publish(ctx, topo.Exchange, "job.created", amqp.Publishing{Headers: headers})
	if err != nil {
		t.Fatal(err)
	}
	if len(headers) != 1 {
		t.Errorf("the caller's table changed: %v", headers)
	}
	spans := exp.GetSpans()
	if len(spans) != 1 || len(spans[0].Links) != 1 || spans[0].Links[0].SpanContext.SpanID().String() != parentSpan {
		t.Fatalf("spans %v, want one publish span linked to %s", spans, parentSpan)
	}
	if id := attr(spans[0], "messaging.message.id"); len(id) != 32 {
		t.Errorf("messaging.message.id %q, want a random id", id)
	}
	withChannel(t, url, func(ch *amqp.Channel) error {
		d, ok, err := ch.Get(topo.Queue, true)
		if err != nil || !ok {
			return fmt.Errorf("get: %v, %v", ok, err)
		}
		if d.Headers["traceparent"] != traceparent || d.MessageId != attr(spans[0], "messaging.message.id") {
			t.Errorf("delivered traceparent %v, id %q; want %s and the span's id", d.Headers["traceparent"], d.MessageId, traceparent)
		}
		return nil
	})
}
