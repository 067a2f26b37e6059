package dlxretry

import (
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
)

// A replayed message is published to its work queue by name; its handler
// still sees the key it was first published with, before and after retries.
func TestOriginalRoutingKeyAfterReplay(t *testing.T) {
	deathFor := func(key string) Deaths {
		return Deaths{{Queue: "orders", Reason: ReasonRejected, Count: 1, RoutingKeys: []string{key}}}
	}
	cases := []struct {
		name string
		d    Delivery
		want string
	}{
		{"first delivery", Delivery{Delivery: amqp.Delivery{RoutingKey: "order.created"}}, "order.created"},
		{"retry", Delivery{Delivery: amqp.Delivery{RoutingKey: "orders.tier.1", Exchange: "orders.requeue"}, Deaths: deathFor("order.created")}, "order.created"},
		{"publisher's own x-death", Delivery{Delivery: amqp.Delivery{RoutingKey: "order.created", Exchange: "x"}, Deaths: deathFor("forged")}, "order.created"},
		{"replayed", Delivery{Delivery: amqp.Delivery{RoutingKey: "orders",
			Headers: amqp.Table{HeaderOriginalRoutingKey: "order.created"}}}, "order.created"},
		{"replayed, then retried", Delivery{Delivery: amqp.Delivery{RoutingKey: "orders.tier.1",
			Headers: amqp.Table{HeaderOriginalRoutingKey: "order.created"}}, Deaths: deathFor("orders")}, "order.created"},
		{"empty header is ignored", Delivery{Delivery: amqp.Delivery{RoutingKey: "orders.tier.1", Exchange: "orders.requeue",
			Headers: amqp.Table{HeaderOriginalRoutingKey: ""}}, Deaths: deathFor("order.created")}, "order.created"},
	}
	for _, c := range cases {
		c.d.queue = "orders"
		if got := c.d.OriginalRoutingKey(); got != c.want {
			t.Errorf("%s: OriginalRoutingKey = %q, want %q", c.name, got, c.want)
		}
	}
}
