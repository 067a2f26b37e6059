package parkinglot_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dlxretry/dlxretry"
	"github.com/dlxretry/dlxretry/parkinglot"
)

// An operator's session: look at what failed on the database, send it back
// once the database is healthy, and keep a copy of the malformed messages
// before deleting them. (Two messages are parked by hand first, as a
// Consumer would park them.)
func Example() {
	url := os.Getenv("RABBITMQ_URL")
	if url == "" {
		url = "amqp://guest:guest@localhost:5672/"
	}
	ctx := context.Background()
	conn, err := dlxretry.Dial(ctx, url)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()
	topo := dlxretry.Topology{Queue: "example.parkinglot.orders", Delays: []time.Duration{time.Second}, MaxAttempts: 3}
	ch, err := conn.Channel(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := topo.Declare(ctx, ch); err != nil {
		fmt.Println(err)
		return
	}
	defer topo.Delete(ctx, ch)
	park(ctx, conn, topo, "order-1", "db busy: connection refused")
	park(ctx, conn, topo, "order-2", "malformed order")

	lot, err := parkinglot.New(conn, topo.Queue)
	if err != nil {
		fmt.Println(err)
		return
	}
	dbErrors := parkinglot.Filter{ErrorContains: "db busy"}
	msgs, err := lot.List(ctx, dbErrors)
	for _, m := range msgs {
		fmt.Println("parked:", m.MessageID, m.Error)
	}
	rep, err := lot.Replay(ctx, dbErrors)
	fmt.Printf("replayed %d of %d: %v\n", rep.Acted, rep.Total, err)

	var saved bytes.Buffer // a file, in real life
	rep, err = lot.Drop(ctx, parkinglot.Filter{ErrorContains: "malformed"}, &saved)
	fmt.Printf("dropped %d, saved %d line: %v\n", rep.Acted, bytes.Count(saved.Bytes(), []byte("\n")), err)
	// Output:
	// parked: order-1 db busy: connection refused
	// replayed 1 of 2: <nil>
	// dropped 1, saved 1 line: <nil>
}

// park publishes what parking would to topo's parking exchange.
func park(ctx context.Context, conn *dlxretry.Conn, topo dlxretry.Topology, id, why string) {
	pub, err := dlxretry.NewPublisher(conn)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pub.Close()
	msg := amqp.Publishing{MessageId: id, Body: []byte(`{}`), Headers: amqp.Table{
		dlxretry.HeaderQueue: topo.Queue, dlxretry.HeaderError: why, dlxretry.HeaderAttempts: int64(3)}}
	if err := pub.Publish(ctx, topo.ParkingExchange(), "order.created", msg); err != nil {
		fmt.Println(err)
	}
}
