package dlxprom_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dlxretry/dlxretry"
	dlxprom "github.com/dlxretry/dlxretry/prometheus"
)

// TestHooks feeds the hooks the events of a known run, as the library calls
// them, and checks every series.
func TestHooks(t *testing.T) {
	c, reg := newCollector(t)
	h := c.Hooks()
	ctx := context.Background()
	d := &dlxretry.Delivery{}
	deliver := func(n int) {
		for range n {
			h.OnDelivery(ctx, dlxretry.DeliveryEvent{Delivery: d, Queue: "orders"})
		}
	}
	deliver(9)
	for range 3 {
		h.OnAck(ctx, dlxretry.AckEvent{Delivery: d, Queue: "orders", Duration: 20 * time.Millisecond})
	}
	h.OnRetry(ctx, dlxretry.RetryEvent{Delivery: d, Queue: "orders", Tier: 1, Delay: time.Second, Err: errors.New("x"), Duration: time.Millisecond})
	h.OnRetry(ctx, dlxretry.RetryEvent{Delivery: d, Queue: "orders", Tier: 2, Delay: 90 * time.Second, Err: errors.New("x"), Duration: time.Millisecond})
	h.OnRetry(ctx, dlxretry.RetryEvent{Delivery: d, Queue: "orders", Tier: 2, Delay: 90 * time.Second, Err: errors.New("x"),
		ParkErr: errors.New("parking queue full"), Duration: time.Millisecond})
	h.OnPark(ctx, dlxretry.ParkEvent{Delivery: d, Queue: "orders", Reason: dlxretry.ParkExhausted, Duration: time.Millisecond})
	h.OnPark(ctx, dlxretry.ParkEvent{Delivery: d, Queue: "orders", Reason: dlxretry.ParkUnreadable})
	// One delivery is still in its handler.
	for _, err := range []error{nil, nil, fmt.Errorf("p: %w", dlxretry.ErrUnroutable), context.DeadlineExceeded,
		&amqp.Error{Code: 404}, dlxretry.ErrClosed, errors.New("other")} {
		h.OnPublish(ctx, dlxretry.PublishEvent{Exchange: "shop", Err: err, Duration: 3 * time.Millisecond})
	}
	q := `{outcome="%s",queue="orders"}`
	want(t, samples(t, reg), map[string]float64{
		fmt.Sprintf("dlxretry_deliveries_total"+q, "ack"):                 3,
		fmt.Sprintf("dlxretry_deliveries_total"+q, "retry"):               3,
		fmt.Sprintf("dlxretry_deliveries_total"+q, "park"):                2,
		fmt.Sprintf("dlxretry_deliveries_total"+q, "release"):             -1,
		`dlxretry_retries_total{delay="1s",queue="orders",tier="1"}`:      1,
		`dlxretry_retries_total{delay="1m30s",queue="orders",tier="2"}`:   2,
		`dlxretry_park_failures_total{queue="orders"}`:                    1,
		`dlxretry_parks_total{queue="orders",reason="exhausted"}`:         1,
		`dlxretry_parks_total{queue="orders",reason="unreadable"}`:        1,
		fmt.Sprintf("dlxretry_handler_duration_seconds_count"+q, "ack"):   3,
		fmt.Sprintf("dlxretry_handler_duration_seconds_sum"+q, "ack"):     0.06,
		fmt.Sprintf("dlxretry_handler_duration_seconds_count"+q, "retry"): 3,
		fmt.Sprintf("dlxretry_handler_duration_seconds_count"+q, "park"):  1, // the unreadable one never ran
		`dlxretry_handlers_in_flight{queue="orders"}`:                     1,
		`dlxretry_publishes_total{exchange="shop",result="confirmed"}`:    2,
		`dlxretry_publishes_total{exchange="shop",result="unroutable"}`:   1,
		`dlxretry_publishes_total{exchange="shop",result="timeout"}`:      1,
		`dlxretry_publishes_total{exchange="shop",result="refused"}`:      1,
		`dlxretry_publishes_total{exchange="shop",result="closed"}`:       1,
		`dlxretry_publishes_total{exchange="shop",result="error"}`:        1,
		`dlxretry_publish_duration_seconds_count{exchange="shop"}`:        7,
		"dlxretry_connections_up":                                         0,
		"dlxretry_reconnects_total":                                       0,
		"dlxretry_connection_failures_total":                              0,
		`dlxretry_parking_queue_messages{queue="orders"}`:                 -1,
	})
}

// TestConnectionHooks: each Hooks value follows one client's connection.
func TestConnectionHooks(t *testing.T) {
	c, reg := newCollector(t)
	consumer, publisher := c.Hooks(), c.Hooks()
	up := func(h dlxretry.Hooks) { h.OnConnect(dlxretry.ConnectEvent{Broker: "amqp://localhost"}) }
	down := func(h dlxretry.Hooks) {
		h.OnDisconnect(dlxretry.DisconnectEvent{Broker: "amqp://localhost", Err: errors.New("lost")})
	}
	check := func(step string, connected, reconnects, failures float64) {
		t.Helper()
		got := samples(t, reg)
		if got["dlxretry_connections_up"] != connected || got["dlxretry_reconnects_total"] != reconnects ||
			got["dlxretry_connection_failures_total"] != failures {
			t.Errorf("%s: up %v, reconnects %v, failures %v; want %v, %v, %v", step, got["dlxretry_connections_up"],
				got["dlxretry_reconnects_total"], got["dlxretry_connection_failures_total"], connected, reconnects, failures)
		}
	}
	down(publisher) // a failed first attempt
	check("failed attempt", 0, 0, 1)
	up(consumer)
	up(publisher)
	check("both up", 2, 0, 1)
	down(consumer)
	down(consumer) // a failed attempt while down
	check("consumer down", 1, 0, 3)
	up(consumer)
	check("consumer back", 2, 1, 3)
	up(publisher) // its connection was lost unseen, and made again
	check("publisher connected again", 2, 2, 3)
}

func TestNewRefusesBadOptions(t *testing.T) {
	conn, err := dlxretry.NewConn(localURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for name, opt := range map[string]dlxprom.Option{
		"decreasing buckets": dlxprom.WithHandlerBuckets(.1, .05),
		"no buckets":         dlxprom.WithPublishBuckets(),
		"nil conn":           dlxprom.WithParkingDepth(nil, "orders"),
		"no queue":           dlxprom.WithParkingDepth(conn),
		"empty queue":        dlxprom.WithParkingDepth(conn, ""),
		"zero timeout":       dlxprom.WithParkingDepthTimeout(0),
	} {
		if _, err := dlxprom.New(opt); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
}
