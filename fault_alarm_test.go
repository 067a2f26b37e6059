//go:build faults

package dlxretry_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dlxretry/dlxretry"
	"github.com/dlxretry/dlxretry/internal/brokertest"
	amqp "github.com/rabbitmq/amqp091-go"
)

// A memory alarm that stops the broker reading in the middle of a large
// message: Publish still returns when its ctx ends, and the Publisher works
// again once the alarm clears.
func TestFaultLargePublishDuringAlarm(t *testing.T) {
	topo := declare(t, dlxretry.Classic, delaysMS(100), 3)
	pub := newPublisher(t, brokertest.Name(t, "pub"))
	ctx := context.Background()
	if err := pub.Publish(ctx, topo.Exchange, "k", amqpMsg("before")); err != nil {
		t.Fatal(err)
	}
	lifted := make(chan error, 1)
	var liftErr error
	t.Cleanup(func() {
		if liftErr = <-lifted; liftErr != nil {
			t.Errorf("lift the alarm: %v", liftErr)
		}
	})
	brokertest.Ctl(t, "set_vm_memory_high_watermark", "0.000001")
	time.Sleep(time.Second) // the alarm is on; the connection is blocked at its next publish
	go func() {
		time.Sleep(8 * time.Second)
		_, err := brokertest.CtlRun("set_vm_memory_high_watermark", "0.4")
		lifted <- err
	}()

	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	start := time.Now()
	err := pub.Publish(short, topo.Exchange, "k", amqp.Publishing{Body: make([]byte, 64<<20), MessageId: "large"})
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) || took > 3*time.Second {
		t.Errorf("64 MB Publish during an alarm returned %v after %v, want the 2s deadline", err, took.Round(time.Millisecond))
	}
	if liftErr = <-lifted; liftErr != nil {
		t.Fatalf("lift the alarm: %v", liftErr)
	}
	lifted <- nil // for the cleanup
	long, cancel2 := context.WithTimeout(ctx, 20*time.Second)
	defer cancel2()
	if err := pub.Publish(long, topo.Exchange, "k", amqpMsg("after")); err != nil {
		t.Fatalf("Publish after the alarm cleared: %v", err)
	}
	got := map[string]bool{}
	for _, d := range getAll(t, topo.Queue, messageCount(t, topo.Queue), 5*time.Second) {
		got[d.MessageId] = true
	}
	if !got["before"] || !got["after"] {
		t.Errorf("queue holds %v, want before and after", got)
	}
}
