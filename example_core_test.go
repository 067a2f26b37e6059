package dlxretry_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dlxretry/dlxretry"
)

// exampleURL is the broker the examples run against.
func exampleURL() string {
	if u := os.Getenv("RABBITMQ_URL"); u != "" {
		return u
	}
	return "amqp://guest:guest@localhost:5672/"
}

// A handler says the outcome by what it returns: nil acks, an error retries
// after the tier's delay, Permanent parks at once.
func ExamplePermanent() {
	h := func(ctx context.Context, d *dlxretry.Delivery) error {
		if len(d.Body) == 0 {
			return dlxretry.Permanent(errors.New("empty order")) // retrying will not fix it
		}
		return nil
	}
	err := h(context.Background(), &dlxretry.Delivery{})
	var perm *dlxretry.PermanentError
	fmt.Println(err, errors.As(err, &perm))
	// Output: empty order true
}

// A Consumer declares its topology, consumes, and retries a failed message
// after the tier's delay; the hooks report each outcome.
func ExampleNewConsumer() {
	topo := dlxretry.Topology{
		Queue:       "example.consumer.orders",
		Exchange:    "example.consumer.events", // declared and bound with Queue's name as key
		Delays:      []time.Duration{50 * time.Millisecond},
		MaxAttempts: 3,
	}
	handler := func(ctx context.Context, d *dlxretry.Delivery) error {
		if d.Attempt == 1 {
			return errors.New("payment service unavailable")
		}
		return nil
	}
	done := make(chan struct{})
	hooks := dlxretry.Hooks{
		OnRetry: func(_ context.Context, e dlxretry.RetryEvent) {
			fmt.Printf("attempt %d failed (%v), next in %v\n", e.Attempt, e.Err, e.Delay)
		},
		OnAck: func(_ context.Context, e dlxretry.AckEvent) {
			fmt.Printf("attempt %d acked\n", e.Attempt)
			close(done)
		},
	}
	c, err := dlxretry.NewConsumer(exampleURL(), topo, handler, dlxretry.WithHooks(hooks))
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- c.Run(ctx) }() // returns once ctx is done and handlers finished
	defer deleteExampleTopology(topo)

	pub, err := dlxretry.NewPublisher(exampleURL())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pub.Close()
	// Run declares the topology first; publish once it is bound.
	for pub.Publish(ctx, topo.Exchange, topo.Queue, amqp.Publishing{Body: []byte("order 1")}) != nil {
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		fmt.Println("no ack")
	}
	cancel()
	fmt.Println("Run:", <-stopped)
	// Output:
	// attempt 1 failed (payment service unavailable), next in 50ms
	// attempt 2 acked
	// Run: <nil>
}

// Wrap fits the retry path into a consume loop of your own.
func ExampleWrap() {
	topo := dlxretry.Topology{Queue: "example.wrap.orders", Delays: []time.Duration{time.Second}, MaxAttempts: 3}
	conn, err := amqp.Dial(exampleURL())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	if err := topo.Declare(ctx, ch); err != nil {
		fmt.Println(err)
		return
	}
	defer deleteExampleTopology(topo)
	handle, err := dlxretry.Wrap(ch, topo, func(ctx context.Context, d *dlxretry.Delivery) error {
		fmt.Printf("%s, attempt %d\n", d.Body, d.Attempt)
		return nil
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	deliveries, err := ch.Consume(topo.Queue, "", false, false, false, false, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := ch.Publish("", topo.Queue, false, false, amqp.Publishing{Body: []byte("order 2")}); err != nil {
		fmt.Println(err)
		return
	}
	handle(ctx, <-deliveries) // acks it: the handler returned nil
	// Output: order 2, attempt 1
}

// Publish returns once the broker confirmed the message; a message no queue
// takes is an error, not a silent loss.
func ExamplePublisher_Publish() {
	pub, err := dlxretry.NewPublisher(exampleURL())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = pub.Publish(ctx, "", "example.publisher.nobody-listens", amqp.Publishing{Body: []byte("hello")})
	fmt.Println(errors.Is(err, dlxretry.ErrUnroutable))
	// Output: true
}

func deleteExampleTopology(topo dlxretry.Topology) {
	conn, err := amqp.Dial(exampleURL())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err == nil {
		err = topo.Delete(context.Background(), ch)
	}
	if err != nil {
		fmt.Println(err)
	}
}
