package dlxotel

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dlxretry/dlxretry"
)

func TestCameFrom(t *testing.T) {
	const q = "orders"
	retried := func(queue, reason string) *dlxretry.Delivery {
		return &dlxretry.Delivery{
			Delivery: amqp.Delivery{Exchange: q + ".requeue"},
			Deaths:   dlxretry.Deaths{{Queue: queue, Reason: reason, Count: 1}, {Queue: q, Reason: "rejected", Count: 2}},
		}
	}
	for _, tc := range []struct {
		name  string
		d     *dlxretry.Delivery
		tier  int
		delay time.Duration
	}{
		{"tier 2", retried(q+".retry.2.1.5s.0a1b2c3d", "expired"), 2, 1500 * time.Millisecond},
		{"tier 1, minutes", retried(q+".retry.1.1m30s.0a1b2c3d", "expired"), 1, 90 * time.Second},
		{"first delivery", &dlxretry.Delivery{Deaths: retried(q+".retry.1.1s.0a1b2c3d", "expired").Deaths}, 0, 0},
		{"latest death is a rejection", retried(q, "rejected"), 0, 0},
		{"another queue's tier", retried("other.retry.1.1s.0a1b2c3d", "expired"), 0, 0},
		{"tier not a number", retried(q+".retry.x.1s.0a1b2c3d", "expired"), 0, 0},
		{"tier 0", retried(q+".retry.0.1s.0a1b2c3d", "expired"), 0, 0},
		{"no delay", retried(q+".retry.1.0a1b2c3d", "expired"), 0, 0},
		{"delay not a duration", retried(q+".retry.1.soon.0a1b2c3d", "expired"), 0, 0},
		{"negative delay", retried(q+".retry.1.-1s.0a1b2c3d", "expired"), 0, 0},
		{"no deaths", &dlxretry.Delivery{Delivery: amqp.Delivery{Exchange: q + ".requeue"}}, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tier, delay, ok := cameFrom(tc.d, q)
			if ok != (tc.tier > 0) || tier != tc.tier || delay != tc.delay {
				t.Errorf("cameFrom = %d, %v, %v; want %d, %v", tier, delay, ok, tc.tier, tc.delay)
			}
		})
	}
}

func TestErrorType(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{errors.New("boom"), "_OTHER"},
		{dlxretry.Permanent(errors.New("bad input")), "permanent"},
		{&dlxretry.PanicError{Value: "nil map"}, "panic"},
		{fmt.Errorf("publish: %w", dlxretry.ErrUnroutable), "unroutable"},
		{fmt.Errorf("publish: %w", dlxretry.ErrNacked), "nacked"},
		{fmt.Errorf("publish: %w", dlxretry.ErrUnconfirmed), "unconfirmed"},
		{dlxretry.ErrClosed, "closed"},
		{dlxretry.ErrRedeliveryLimit, "redelivery_limit"},
		{fmt.Errorf("x-death: %w", dlxretry.ErrUnreadableHistory), "unreadable_history"},
		{fmt.Errorf("handler: %w", context.DeadlineExceeded), "timeout"},
		{context.Canceled, "canceled"},
		{fmt.Errorf("publish: %w", &amqp.Error{Code: 404, Reason: "NOT_FOUND - no exchange 'x'"}), "amqp:404"},
	} {
		if got := errorType(tc.err); got != tc.want {
			t.Errorf("errorType(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}
