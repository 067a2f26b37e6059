package dlxretry_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/dlxretry/dlxretry"
	amqp "github.com/rabbitmq/amqp091-go"
)

// A message published with key order.created to the exchange events has
// failed twice in the queue orders; this is the x-death header its third
// delivery carries (entries in the order RabbitMQ sends them).
func ExampleParseDeaths() {
	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	headers := amqp.Table{
		"x-death": []any{
			amqp.Table{"queue": "orders.retry.2.10s", "reason": "expired", "count": int64(1), "time": at,
				"exchange": "orders.retry", "routing-keys": []any{"orders.tier.1"}},
			amqp.Table{"queue": "orders.retry.1.1s", "reason": "expired", "count": int64(1), "time": at,
				"exchange": "orders.retry", "routing-keys": []any{"order.created"}},
			amqp.Table{"queue": "orders", "reason": "rejected", "count": int64(2), "time": at,
				"exchange": "events", "routing-keys": []any{"order.created"}},
		},
	}
	deaths, err := dlxretry.ParseDeaths(headers)
	if err != nil {
		fmt.Println(err)
	}
	for _, d := range deaths {
		fmt.Printf("%s %s %d\n", d.Queue, d.Reason, d.Count)
	}
	fmt.Println("failures so far:", deaths.Rejections("orders"))
	key, _ := deaths.OriginalRoutingKey("orders")
	fmt.Println("published with key:", key)
	// Output:
	// orders.retry.2.10s expired 1
	// orders.retry.1.1s expired 1
	// orders rejected 2
	// failures so far: 2
	// published with key: order.created
}

// The names a Topology declares, and the wait after each failure: the
// last delay repeats.
func ExampleTopology() {
	t := dlxretry.Topology{
		Queue:       "orders",
		Delays:      []time.Duration{time.Second, 10 * time.Second, time.Minute},
		MaxAttempts: 5,
	}
	fmt.Println("retry exchange:", t.RetryExchange())
	for i := 1; i <= t.Tiers(); i++ {
		fmt.Printf("tier %d: queue %s, key %s\n", i, t.TierQueue(i), t.TierKey(i))
	}
	fmt.Println("parking queue:", t.ParkingQueue())
	for n := 1; n <= 4; n++ {
		fmt.Printf("after failure %d: wait %v\n", n, t.Delay(n))
	}
	// Output:
	// retry exchange: orders.retry
	// tier 1: queue orders.retry.1.1s.e22c475b, key orders.tier.1.e22c475b
	// tier 2: queue orders.retry.2.10s.7860b44b, key orders.tier.2.7860b44b
	// tier 3: queue orders.retry.3.1m0s.2bff3c73, key orders.tier.3.2bff3c73
	// parking queue: orders.parking
	// after failure 1: wait 1s
	// after failure 2: wait 10s
	// after failure 3: wait 1m0s
	// after failure 4: wait 1m0s
}

func ExampleExponentialDelays() {
	delays, err := dlxretry.ExponentialDelays(100*time.Millisecond, 2, time.Second, 6)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(delays)
	// Output:
	// [100ms 200ms 400ms 800ms 1s 1s]
}

func ExampleTopology_Validate() {
	t := dlxretry.Topology{
		Queue:       "orders",
		Delays:      []time.Duration{time.Second, 1500 * time.Microsecond},
		MaxAttempts: 5,
	}
	err := t.Validate()
	fmt.Println(err)
	var ce *dlxretry.ConfigError
	if errors.As(err, &ce) {
		fmt.Println("field:", ce.Field)
	}
	// Output:
	// dlxretry: invalid Topology.Delays[1]: must be a whole number of milliseconds, got 1.5ms
	// field: Topology.Delays[1]
}
