package dlxretry

import (
	"context"
	"errors"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// RetireReport says what [Topology.RetireTiers] found. Its zero value
// reports nothing retired and nothing waiting.
type RetireReport struct {
	// Waiting maps each tier queue of another schedule that still held
	// messages to how many it held. RetireTiers deleted the others.
	Waiting map[string]int
	// Retired lists the other schedules (their Delays) whose tier queues are
	// all gone.
	Retired [][]time.Duration
}

// Done reports that no tier of another schedule holds messages any more.
func (r RetireReport) Done() bool { return len(r.Waiting) == 0 }

// RetireTiers makes t's schedule the only one in use, and deletes the tier
// queues of every other schedule recorded for Queue as they empty.
//
// First it makes t's schedule the active one, the one first failures enter:
// already so after t was first declared, and otherwise (after a rollback to
// a schedule declared before) by recording it as the newest, binding its
// tier 1 and unbinding the others'. Then it marks every other schedule
// retired, so that no Declare binds or declares it again, and removes the
// routes into its tiers: a message that leaves one of them and fails again
// finds no binding for its key in the retry exchange, whose alternate
// exchange sends it to the active schedule's tier 1. None is dropped. After
// a moment for messages under way, it deletes each of those tier queues
// that is empty. A tier that still holds messages is kept and reported in
// Waiting; it empties within its delay. Call RetireTiers again, until the
// report is Done. Once all tiers of a schedule are gone it also unbinds
// their keys from the requeue exchange.
//
// Run it from one place once a rollout is complete: two RetireTiers with
// different schedules at once would each make its own active. Queues
// declared by hand are not recorded and not touched. With
// DeadLetterByPolicy, clear the policies of the retired schedules' tiers
// ([Topology.Policies] of a Topology with the retired Delays names them).
//
// RetireTiers opens channels on conn and closes them; it checks ctx between
// operations.
func (t Topology) RetireTiers(ctx context.Context, conn *amqp.Connection) (RetireReport, error) {
	if err := t.Validate(); err != nil {
		return RetireReport{}, err
	}
	ch, err := conn.Channel()
	if err != nil {
		return RetireReport{}, fmt.Errorf("dlxretry: retire tiers: %w", err)
	}
	defer closeChannel(ch)
	if err := runSteps(ctx, t.baseSteps(ch)); err != nil {
		return RetireReport{}, err
	}
	if err := t.declareSchedule(ctx, ch, true); err != nil {
		return RetireReport{}, err
	}
	v, err := t.markRetired(ctx, recordStore{t, ch})
	if err != nil {
		return RetireReport{}, err
	}
	return t.deleteOldTiers(ctx, conn, ch, v)
}

// markRetired records every other schedule as retired, then checks that
// t's is still the active one.
func (t Topology) markRetired(ctx context.Context, store recordStore) (scheduleView, error) {
	v, err := store.read(ctx)
	if err != nil {
		return v, err
	}
	seq := v.maxSeq()
	for _, delays := range v.schedules() {
		s := t.withDelays(delays)
		if s.schedule() == t.schedule() || v.retired(s.schedule()) {
			continue
		}
		seq++
		if err := store.write(ctx, eventRetired, delays, seq); err != nil {
			return v, err
		}
	}
	if v, err = store.read(ctx); err != nil {
		return v, err
	}
	if act, _ := v.active(); act.schedule() != t.schedule() {
		return v, fmt.Errorf("dlxretry: retire tiers of %s: schedule %v was activated meanwhile", t.Queue, act.delays())
	}
	return v, nil
}

// retireGrace is how long RetireTiers lets messages already routed to an
// old tier, or dead-lettered out of one, arrive before it counts and
// deletes.
const retireGrace = time.Second

// oldTier is a tier queue of another schedule: its name, its key and the
// tier that key routes to.
type oldTier struct{ queue, key, next string }

// retiring is another schedule and those of its tiers that t does not share.
type retiring struct {
	delays []time.Duration
	tiers  []oldTier
}

// deleteOldTiers cuts the routes into the tiers of every other schedule,
// then deletes those that are empty.
func (t Topology) deleteOldTiers(ctx context.Context, conn *amqp.Connection, ch *amqp.Channel, v scheduleView) (RetireReport, error) {
	schedules := t.retiring(v)
	if err := t.cutRoutes(ctx, conn, schedules); err != nil {
		return RetireReport{}, err
	}
	report := RetireReport{Waiting: map[string]int{}}
	for _, s := range schedules {
		gone, err := t.deleteEmpty(ctx, conn, s.tiers, report.Waiting)
		if err != nil {
			return report, err
		}
		if gone {
			report.Retired = append(report.Retired, s.delays)
			if err := t.unbindRequeueKeys(ctx, ch, s.tiers); err != nil {
				return report, err
			}
		}
	}
	return report, nil
}

// cutRoutes unbinds each old tier's key from the retry exchange, then
// waits retireGrace for messages already routed.
func (t Topology) cutRoutes(ctx context.Context, conn *amqp.Connection, schedules []retiring) error {
	cut := false
	for _, s := range schedules {
		for _, tier := range s.tiers {
			err := quietly(conn, func(c *amqp.Channel) error { return c.QueueUnbind(tier.next, tier.key, t.RetryExchange(), nil) })
			if err != nil {
				return declareError("binding", tier.next+" to "+t.RetryExchange()+" with key "+tier.key, err)
			}
			cut = true
		}
	}
	if !cut {
		return nil
	}
	return sleep(ctx, retireGrace)
}

// retiring lists the other schedules with the tiers t does not share.
func (t Topology) retiring(v scheduleView) []retiring {
	keep := map[string]bool{}
	for i := 1; i <= t.Tiers(); i++ {
		keep[t.TierQueue(i)] = true
	}
	var out []retiring
	for _, delays := range v.schedules() {
		s := t.withDelays(delays)
		if s.schedule() == t.schedule() {
			continue
		}
		r := retiring{delays: delays}
		for i := 1; i <= s.Tiers(); i++ {
			if !keep[s.TierQueue(i)] {
				r.tiers = append(r.tiers, oldTier{s.TierQueue(i), s.TierKey(i), s.TierQueue(min(i+1, s.Tiers()))})
			}
		}
		out = append(out, r)
	}
	return out
}

// deleteEmpty deletes each of tiers that is empty, records in waiting those
// that are not, and reports whether all are gone.
func (t Topology) deleteEmpty(ctx context.Context, conn *amqp.Connection, tiers []oldTier, waiting map[string]int) (bool, error) {
	gone := true
	for _, tier := range tiers {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		n, err := t.deleteIfEmpty(ctx, conn, tier.queue)
		if err != nil {
			return false, err
		}
		if n > 0 {
			waiting[tier.queue], gone = n, false
		}
	}
	return gone, nil
}

// unbindRequeueKeys removes the requeue bindings of tiers that are gone:
// nothing dead-letters with their keys any more.
func (t Topology) unbindRequeueKeys(ctx context.Context, ch *amqp.Channel, tiers []oldTier) error {
	for _, tier := range tiers {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := ch.QueueUnbind(t.Queue, tier.key, t.RequeueExchange(), nil); err != nil {
			return declareError("binding", t.Queue+" to "+t.RequeueExchange()+" with key "+tier.key, err)
		}
	}
	return nil
}

// deleteIfEmpty deletes queue q if it is empty, and otherwise returns how
// many messages it holds; a queue that does not exist counts as deleted.
// Nothing routes into q any more. Classic queues are deleted with if-empty;
// quorum queues, which do not support it, once they have counted empty
// twice, retireGrace apart, so that messages being dead-lettered out of
// them have arrived.
func (t Topology) deleteIfEmpty(ctx context.Context, conn *amqp.Connection, q string) (int, error) {
	n, err := count(conn, q)
	if err != nil || n > 0 {
		return n, err
	}
	if t.Type == Quorum {
		if err := sleep(ctx, retireGrace); err != nil {
			return 0, err
		}
		if n, err := count(conn, q); err != nil || n > 0 {
			return n, err
		}
	}
	err = quietly(conn, func(c *amqp.Channel) error {
		_, err := c.QueueDelete(q, false, t.Type != Quorum, false)
		return err
	})
	var ae *amqp.Error
	if errors.As(err, &ae) && ae.Code == amqp.PreconditionFailed {
		return max(1, n), nil // not empty after all
	}
	return 0, declareError("queue", q, err)
}

// count is the number of messages in queue q, 0 if it does not exist.
func count(conn *amqp.Connection, q string) (int, error) {
	var n int
	err := quietly(conn, func(c *amqp.Channel) error {
		got, err := c.QueueDeclarePassive(q, true, false, false, false, nil)
		n = got.Messages
		return err
	})
	return n, declareError("queue", q, err)
}

// quietly runs f on a channel of its own, which a failure of f closes, and
// treats NOT_FOUND as success.
func quietly(conn *amqp.Connection, f func(*amqp.Channel) error) error {
	c, err := conn.Channel()
	if err != nil {
		return err
	}
	defer closeChannel(c)
	err = f(c)
	var ae *amqp.Error
	if errors.As(err, &ae) && ae.Code == amqp.NotFound {
		return nil
	}
	return err
}

// closeChannel closes a channel whose work is done. An error closing it
// changes nothing: what ran on it is settled, and the broker closes the
// channel with the connection at worst.
func closeChannel(ch *amqp.Channel) { _ = ch.Close() }
