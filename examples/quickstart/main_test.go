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

	"github.com/dlxretry/dlxretry/internal/brokertest"
)

// TestQuickstart runs the example under names of its own and checks that
// its output holds exactly the outcomes the script implies.
func TestQuickstart(t *testing.T) {
	brokerURL := brokertest.URL(t)
	prefix := brokertest.Name(t, "qs")
	topo := topology(prefix)
	cleanup := brokertest.Channel(t)
	t.Cleanup(func() { _ = topo.Delete(context.Background(), cleanup) })

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := runWith(ctx, brokerURL, prefix, &out); err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	t.Logf("output:\n%s", out.String())

	want := expect(topo.MaxAttempts)
	got := map[string]int{
		"ack":    countPrefix(out.String(), "ack     "),
		"retry":  countPrefix(out.String(), "retry   "),
		"park":   countPrefix(out.String(), "park    "),
		"parked": countPrefix(out.String(), "parked  "),
	}
	for kind, n := range want {
		if got[kind] != n {
			t.Errorf("%d %q lines, want %d", got[kind], kind, n)
		}
	}
	for _, line := range []string{
		"ack     hello11 (attempt 1)",
		"ack     hello55 (attempt 4)",
		"retry   hello12 attempt 1 failed: callback down -> tier 1 (200ms)",
		"retry   hello99 attempt 3 failed: callback down -> tier 3 (800ms)",
		"park    hello77 after 1 attempt: malformed order (permanent)",
		"park    hello99 after 4 attempts: callback down",
		`parked  hello99: attempts=4 permanent=false original-key=order.created error="callback down"`,
		fmt.Sprintf("summary: %d messages, %d acked, %d retries, %d parked", len(script), want["ack"], want["retry"], want["park"]),
		"deleted topology " + topo.Queue,
	} {
		if !strings.Contains(out.String(), line+"\n") {
			t.Errorf("output lacks the line %q", line)
		}
	}
	assertGone(t, topo.Queue)
}

// expect derives the outcome counts from the script: a message that fails
// maxAttempts times or permanently is parked, the others are acked, and each
// failure short of parking is a retry.
func expect(maxAttempts int) map[string]int {
	want := map[string]int{}
	for _, s := range script {
		switch {
		case s.permanent:
			want["park"]++
		case s.failures == forever || s.failures >= maxAttempts:
			want["retry"] += maxAttempts - 1
			want["park"]++
		default:
			want["retry"] += s.failures
			want["ack"]++
		}
	}
	want["parked"] = want["park"]
	return want
}

func countPrefix(out, prefix string) int {
	n := 0
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, prefix) {
			n++
		}
	}
	return n
}

// assertGone checks that the run deleted its work queue.
func assertGone(t *testing.T, queue string) {
	t.Helper()
	_, err := brokertest.Channel(t).QueueDeclarePassive(queue, true, false, false, false, nil)
	var ae *amqp.Error
	if !errors.As(err, &ae) || ae.Code != amqp.NotFound {
		t.Errorf("queue %s still exists after the run (passive declare: %v)", queue, err)
	}
}

func TestExpectMatchesTheDocumentedRun(t *testing.T) {
	want := map[string]int{"ack": 5, "retry": 9, "park": 2, "parked": 2}
	got := expect(topology("quickstart").MaxAttempts)
	for k, n := range want {
		if got[k] != n {
			t.Errorf("expect()[%q] = %d, want %d (update the doc comment's sample output)", k, got[k], n)
		}
	}
}

// TestRunWithoutBroker needs no broker: it checks that an unreachable one
// gives an error that says what to do, without the password.
func TestRunWithoutBroker(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), "amqp://guest:s3cret@127.0.0.1:1/", &out)
	if err == nil {
		t.Fatal("run against a closed port succeeded")
	}
	for _, want := range []string{"cannot connect to RabbitMQ", "RABBITMQ_URL", "127.0.0.1:1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error %q shows the password", err)
	}
}
