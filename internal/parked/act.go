package parked

import (
	"context"
	"fmt"
	"io"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dlxretry/dlxretry"
)

// Replay sends the messages s selects back to the work queue with a fresh
// attempt budget, as [dlxretry.ParkingLot.Replay] does.
func (l Lot) Replay(ctx context.Context, s Selection) (Report, error) {
	if s.plain() {
		return l.withLot(func(lot *dlxretry.ParkingLot) (Report, error) { return lot.Replay(ctx, s.Filter) })
	}
	if err := l.checkQueue(ctx, l.Queue); err != nil {
		return Report{}, err
	}
	return l.pickPublishing(ctx, s, func(d amqp.Delivery) (string, string, amqp.Publishing) {
		return "", l.Queue, replayCopy(d)
	})
}

// Drop deletes the messages s selects, each written to w first as a JSON
// line when w is not nil, as [dlxretry.ParkingLot.Drop] does.
func (l Lot) Drop(ctx context.Context, s Selection, w io.Writer) (Report, error) {
	if s.plain() {
		return l.withLot(func(lot *dlxretry.ParkingLot) (Report, error) { return lot.Drop(ctx, s.Filter, w) })
	}
	return l.pick(ctx, s, func(_ context.Context, m Message, _ amqp.Delivery) error {
		return writeLine(w, m)
	})
}

// Move publishes the messages s selects to exchange with routing key key
// and then removes them from parking, as [dlxretry.ParkingLot.Move] does.
func (l Lot) Move(ctx context.Context, s Selection, exchange, key string) (Report, error) {
	if s.plain() {
		return l.withLot(func(lot *dlxretry.ParkingLot) (Report, error) { return lot.Move(ctx, s.Filter, exchange, key) })
	}
	if exchange == l.ParkingExchange() || (exchange == "" && key == l.ParkingQueue()) {
		return Report{}, fmt.Errorf("cannot move into the parking lot %q itself", l.ParkingQueue())
	}
	if err := l.checkTarget(ctx, exchange, key); err != nil {
		return Report{}, err
	}
	return l.pickPublishing(ctx, s, func(d amqp.Delivery) (string, string, amqp.Publishing) {
		return exchange, key, publishingOf(d, without(d.Headers, "x-delivery-count"))
	})
}

// withLot runs op on the library's ParkingLot.
func (l Lot) withLot(op func(*dlxretry.ParkingLot) (Report, error)) (Report, error) {
	lot, err := l.parkingLot()
	if err != nil {
		return Report{}, err
	}
	defer lot.Close()
	return op(lot)
}

// checkQueue checks that queue exists.
func (l Lot) checkQueue(ctx context.Context, queue string) error {
	_, err := l.inspect(ctx, queue)
	if notFound(err) {
		return fmt.Errorf("queue %q does not exist", queue)
	}
	return err
}

// checkTarget checks that a Move target exists: the exchange, or the queue
// when publishing through the default exchange.
func (l Lot) checkTarget(ctx context.Context, exchange, key string) error {
	if exchange == "" {
		return l.checkQueue(ctx, key)
	}
	ch, err := l.Conn.Channel(ctx)
	if err != nil {
		return err
	}
	defer ch.Close()
	err = ch.ExchangeDeclarePassive(exchange, "", true, false, false, false, nil)
	switch {
	case notFound(err):
		return fmt.Errorf("exchange %q does not exist", exchange)
	case err != nil:
		return fmt.Errorf("inspect exchange %q: %w", exchange, err)
	}
	return nil
}
