package main

import (
	"context"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	amqp "github.com/rabbitmq/amqp091-go"
	rabbitmq "github.com/wagslane/go-rabbitmq"

	"github.com/dlxretry/dlxretry"
)

// S1: consume + ack throughput. Every contender gets a fresh queue filled
// with the same n messages before the clock starts; the handler does
// nothing but count.

func s1Contenders() []contender {
	return []contender{
		{id: "raw", name: "amqp091-go loop (raw)", measure: consumeRun(plainQueue, s1Raw)},
		{id: "dlx", name: "dlxretry Consumer", measure: consumeRun(dlxTopology(time.Second), s1Dlx)},
		{id: "wag", name: "wagslane/go-rabbitmq Consumer", measure: consumeRun(plainQueue, s1Wag)},
		{id: "wm", name: "watermill-amqp + Router", measure: consumeRun(plainQueue, s1Wm)},
	}
}

func s1Raw(e *env, t target, m *meter) (*consumer, error) {
	return rawConsume(e, t.queue, ackAll(func(d amqp.Delivery) {
		m.hit()
		_ = d.Ack(false)
	}))
}

func s1Dlx(e *env, t target, m *meter) (*consumer, error) {
	return dlxConsume(e, t.topo, func(context.Context, *dlxretry.Delivery) error {
		m.hit()
		return nil
	}, dlxretry.Hooks{})
}

func s1Wag(e *env, t target, m *meter) (*consumer, error) {
	return wagConsume(e, t.queue, func(rabbitmq.Delivery) rabbitmq.Action {
		m.hit()
		return rabbitmq.Ack
	})
}

func s1Wm(e *env, t target, m *meter) (*consumer, error) {
	return wmConsume(e, t.queue, func(*message.Message) error {
		m.hit()
		return nil
	})
}

func runS1(ctx context.Context, e *env) (string, error) {
	sums, err := runRounds(ctx, e, "S1", s1Contenders(), size{n: e.cfg.n}, size{n: min(e.cfg.n, 2000)})
	if err != nil {
		return "", err
	}
	return throughputTable("S1 success path: consume + ack", sums, false), nil
}
