package dlxretry

import (
	"context"
	"strconv"

	amqp "github.com/rabbitmq/amqp091-go"
)

func runSteps(ctx context.Context, steps []func() error) error {
	for _, step := range steps {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

// baseSteps declares what does not depend on the schedule: the exchanges,
// the parking queue and the schedule records' queues.
func (t Topology) baseSteps(ch *amqp.Channel) []func() error {
	steps := []func() error{
		t.exchange(ch, t.firstSlot(1), amqp.ExchangeFanout, nil),
		t.exchange(ch, t.firstSlot(0), amqp.ExchangeFanout, amqp.Table{"alternate-exchange": t.firstSlot(1)}),
		t.exchange(ch, t.FirstRetryExchange(), amqp.ExchangeFanout, nil),
		t.exchangeBind(ch, t.firstSlot(0), t.FirstRetryExchange()),
		t.exchange(ch, t.RetryExchange(), amqp.ExchangeDirect, amqp.Table{"alternate-exchange": t.FirstRetryExchange()}),
		t.exchange(ch, t.RequeueExchange(), amqp.ExchangeDirect, nil),
		t.exchange(ch, t.ParkingExchange(), amqp.ExchangeFanout, nil),
	}
	if t.Exchange != "" {
		steps = append(steps, t.exchange(ch, t.Exchange, t.exchangeKind(), nil))
	}
	return append(steps,
		t.queue(ch, t.ParkingQueue(), t.plainArgs()),
		t.bind(ch, t.ParkingQueue(), "", t.ParkingExchange()),
		recordStore{t, ch}.declare,
	)
}

// pathSteps declares t's tier queues, the work queue and the bindings of
// the retry path, except the first-retry exchange's.
func (t Topology) pathSteps(ch *amqp.Channel) []func() error {
	var steps []func() error
	for i := 1; i <= t.Tiers(); i++ {
		steps = append(steps, t.queue(ch, t.TierQueue(i), t.tierArgs(i)))
	}
	steps = append(steps, t.queue(ch, t.Queue, t.workArgs()))
	for i := 1; i <= t.Tiers(); i++ {
		next := min(i+1, t.Tiers())
		steps = append(steps,
			t.bind(ch, t.TierQueue(next), t.TierKey(i), t.RetryExchange()),
			t.bind(ch, t.Queue, t.TierKey(i), t.RequeueExchange()),
		)
	}
	return steps
}

// userBindingSteps binds the work queue to the owned exchange and to
// Bindings.
func (t Topology) userBindingSteps(ch *amqp.Channel) []func() error {
	var steps []func() error
	for _, key := range t.bindingKeys() {
		steps = append(steps, t.bind(ch, t.Queue, key, t.Exchange))
	}
	for _, b := range t.Bindings {
		steps = append(steps, t.bind(ch, t.Queue, b.Key, b.Exchange))
	}
	return steps
}

func (t Topology) exchange(ch *amqp.Channel, name, kind string, args amqp.Table) func() error {
	return func() error {
		return declareError("exchange", name, ch.ExchangeDeclare(name, kind, true, false, false, false, args))
	}
}

func (t Topology) queue(ch *amqp.Channel, name string, args amqp.Table) func() error {
	return func() error {
		_, err := ch.QueueDeclare(name, true, false, false, false, args)
		return declareError("queue", name, err)
	}
}

func (t Topology) bind(ch *amqp.Channel, queue, key, exchange string) func() error {
	return func() error {
		err := ch.QueueBind(queue, key, exchange, false, nil)
		return declareError("binding", queue+" to "+exchange+" with key "+strconv.Quote(key), err)
	}
}

// exchangeBind binds exchange dest to the fanout exchange source.
func (t Topology) exchangeBind(ch *amqp.Channel, dest, source string) func() error {
	return func() error {
		return declareError("binding", dest+" to "+source, ch.ExchangeBind(dest, "", source, false, nil))
	}
}

func (t Topology) exchangeKind() string {
	if t.ExchangeKind == "" {
		return amqp.ExchangeTopic
	}
	return t.ExchangeKind
}

func (t Topology) bindingKeys() []string {
	if t.Exchange == "" {
		return nil
	}
	if len(t.BindingKeys) == 0 {
		return []string{"#"}
	}
	return t.BindingKeys
}
