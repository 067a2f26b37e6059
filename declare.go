package dlxretry

import (
	"context"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Declare declares every exchange, queue and binding of the topology on ch,
// exchanges first so that no queue dead-letters into a missing exchange. It is
// idempotent: run it again after every reconnect. If something exists with
// other arguments it returns a *[DeclareError] naming it and the argument,
// and the broker closes ch. ctx is checked between declarations.
//
// Declare records the schedule (Delays) in the broker the first time it is
// declared, with a confirmed publish that puts ch in confirm mode (a
// listener registered with NotifyPublish on ch sees that confirmation), and
// reads the records with basic.get on ch, returning them with basic.nack. The
// newest schedule recorded is the active one: Declare declares its tiers,
// binds its tier 1 to the first-retry exchange and unbinds the tier 1 of
// every other schedule, so that every first failure enters one tier. A
// schedule declared before stays inactive when declared again: a consumer
// with an older schedule, still running during a rolling deploy, retries
// its messages on the newest one. See [Topology.RetireTiers] for going back
// to an older schedule and for removing old tiers.
func (t Topology) Declare(ctx context.Context, ch *amqp.Channel) error {
	if err := t.Validate(); err != nil {
		return err
	}
	if err := runSteps(ctx, t.baseSteps(ch)); err != nil {
		return err
	}
	return t.declareSchedule(ctx, ch, false)
}

// Delete deletes every queue and exchange the topology declares, messages
// and all, including the work queue, the parking queue, an owned Exchange,
// the tier queues of every schedule recorded for Queue (not only Delays')
// and the schedule records. Entities that do not exist are skipped. Use it
// in tests and migrations.
func (t Topology) Delete(ctx context.Context, ch *amqp.Channel) error {
	if err := t.Validate(); err != nil {
		return err
	}
	store := recordStore{t, ch}
	if err := store.declare(); err != nil {
		return err
	}
	v, err := store.read(ctx)
	if err != nil {
		return err
	}
	queues := append(t.allTierQueues(v), t.Queue, t.ParkingQueue(), t.schedulesQueue(), t.scheduleCountQueue())
	for _, q := range queues {
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, err := ch.QueueDelete(q, false, false, false); err != nil {
			return declareError("queue", q, err)
		}
	}
	exchanges := []string{t.RetryExchange(), t.FirstRetryExchange(), t.firstSlot(0), t.firstSlot(1),
		t.RequeueExchange(), t.ParkingExchange()}
	if t.Exchange != "" {
		exchanges = append(exchanges, t.Exchange)
	}
	for _, x := range exchanges {
		if err := ch.ExchangeDelete(x, false, false); err != nil {
			return declareError("exchange", x, err)
		}
	}
	return nil
}

// allTierQueues names the tier queues of t and of every recorded schedule,
// each once.
func (t Topology) allTierQueues(v scheduleView) []string {
	seen := map[string]bool{}
	var out []string
	for _, delays := range append([][]time.Duration{t.Delays}, v.schedules()...) {
		s := t.withDelays(delays)
		for i := 1; i <= s.Tiers(); i++ {
			if q := s.TierQueue(i); !seen[q] {
				seen[q] = true
				out = append(out, q)
			}
		}
	}
	return out
}
