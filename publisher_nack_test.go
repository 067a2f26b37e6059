package dlxretry_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dlxretry/dlxretry"
	"github.com/dlxretry/dlxretry/internal/brokertest"
	amqp "github.com/rabbitmq/amqp091-go"
)

// A channel that the broker nacks again and again (in a cluster: one opened
// while a queue's leader was moving, nacked until that node is back) is
// left for a fresh one after a run of eight nacks, with a pause that
// doubles while the fresh channels are nacked too and starts again once
// the broker acks. Reproduced with a queue that rejects every publish
// (x-max-length 0, x-overflow reject-publish): the broker lists another
// channel for the Publisher's connection afterwards, and the first is gone.
func TestPublishNackRunMovesToFreshChannel(t *testing.T) {
	long(t)
	t.Parallel()
	full := brokertest.Queue(t, "full", amqp.Table{"x-max-length": int32(0), "x-overflow": "reject-publish"})
	ok := brokertest.Queue(t, "ok", nil)
	name := brokertest.Name(t, "pub")
	logs := &pauseLog{}
	pub, err := dlxretry.NewPublisher(brokertest.URL(t), dlxretry.WithConnectionName(name), dlxretry.WithLogger(slog.New(logs)))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := pub.Publish(ctx, "", ok, amqpMsg("before")); err != nil {
		t.Fatal(err)
	}
	before := channelNumbers(t, name)
	nacks := func(n int) {
		t.Helper()
		for i := range n {
			if err := pub.Publish(ctx, "", full, amqpMsg("x"+strconv.Itoa(i))); !errors.Is(err, dlxretry.ErrNacked) {
				t.Fatalf("publish %d to a queue that rejects publishes: %v, want ErrNacked", i, err)
			}
		}
	}
	nacks(3 * 8)
	if err := pub.Publish(ctx, "", ok, amqpMsg("after")); err != nil {
		t.Fatalf("publish after the nacks: %v", err)
	}
	after := channelNumbers(t, name)
	nacks(8)
	if err := pub.Publish(ctx, "", ok, amqpMsg("again")); err != nil {
		t.Fatalf("publish after more nacks: %v", err)
	}
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 100 * time.Millisecond}
	if got := logs.get(); !slices.Equal(got, want) {
		t.Errorf("pauses before a fresh channel: %v, want %v", got, want)
	}
	t.Logf("channels of the Publisher's connection: %v before the nacks, %v after", before, after)
	if len(before) != 1 || len(after) != 1 || after[0] == before[0] {
		t.Errorf("the broker lists channels %v for the Publisher before the nacks and %v after; want one, and another", before, after)
	}
	if n := messageCount(t, ok); n != 3 {
		t.Errorf("%s holds %d messages, want 3", ok, n)
	}
}

// pauseLog keeps the pauses the Publisher logs before a fresh channel.
type pauseLog struct {
	mu     sync.Mutex
	pauses []time.Duration
}

func (l *pauseLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *pauseLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *pauseLog) WithGroup(string) slog.Handler            { return l }

func (l *pauseLog) Handle(_ context.Context, r slog.Record) error {
	if !strings.Contains(r.Message, "fresh channel") {
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "pause" {
			l.mu.Lock()
			l.pauses = append(l.pauses, a.Value.Duration())
			l.mu.Unlock()
		}
		return true
	})
	return nil
}

func (l *pauseLog) get() []time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.pauses)
}

// channelNumbers returns the numbers of the channels that the broker lists
// for the connection named name.
func channelNumbers(t *testing.T, name string) []int {
	t.Helper()
	var pid string
	conns := brokertest.Ctl(t, "list_connections", "-q", "--no-table-headers", "pid", "client_properties")
	for _, line := range strings.Split(conns, "\n") {
		if p, props, ok := strings.Cut(line, "\t"); ok && strings.Contains(props, `{"connection_name","`+name+`"}`) {
			pid = p
		}
	}
	if pid == "" {
		t.Fatalf("the broker lists no connection named %s", name)
	}
	var numbers []int
	chans := brokertest.Ctl(t, "list_channels", "-q", "--no-table-headers", "connection", "number")
	for _, line := range strings.Split(chans, "\n") {
		if c, n, ok := strings.Cut(line, "\t"); ok && c == pid {
			i, err := strconv.Atoi(strings.TrimSpace(n))
			if err != nil {
				t.Fatalf("list_channels: %q", line)
			}
			numbers = append(numbers, i)
		}
	}
	return numbers
}
