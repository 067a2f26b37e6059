package dlxretry

import (
	"context"
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"
)

// maxRounds bounds how often declaring a schedule starts over because
// records were written meanwhile.
const maxRounds = 20

// activator declares the active schedule and moves the first-retry
// exchange's binding to its tier 1.
//
// An activation binds its tier 1 to one of two slot exchanges, by the
// parity of its sequence number, which differs from the activation before
// it: slot 0 routes first failures while it has a binding, slot 1 (its
// alternate exchange) otherwise. So a switch changes the route with a
// single binding change, never two at once (copies) or none (a loss):
// binding the new activation to an empty slot 0, or unbinding the old one
// from slot 0 once the new one waits in slot 1.
//
// Each activation binds with a key of its own, its record's ID, and an
// activation is only unbound by a client that has already bound a newer
// one: however clients interleave, the newest activation ever bound stays
// bound, so the first-retry exchange always feeds a tier.
type activator struct {
	t     Topology
	ch    *amqp.Channel
	store recordStore
	bound map[string]bool // activations this call bound
}

// declareSchedule records t's schedule if it has never been activated (or,
// with promote, unless it is the active one), declares the active schedule
// and binds it. It starts over when records were written meanwhile, so that
// it ends having acted on every record.
func (t Topology) declareSchedule(ctx context.Context, ch *amqp.Channel, promote bool) error {
	a := activator{t: t, ch: ch, store: recordStore{t, ch}, bound: map[string]bool{}}
	for range maxRounds {
		v, err := a.store.read(ctx)
		if err != nil {
			return err
		}
		if a.needsActivation(v, promote) {
			if err := a.store.write(ctx, eventActivated, t.Delays, v.nextActivationSeq()); err != nil {
				return err
			}
			continue
		}
		if err := runSteps(ctx, a.steps(v)); err != nil {
			return err
		}
		if n, err := a.store.written(); err != nil || n == v.written {
			return err
		}
	}
	return fmt.Errorf("dlxretry: declare %s: the schedule records kept changing", t.Queue)
}

func (a *activator) needsActivation(v scheduleView, promote bool) bool {
	if _, ok := v.latest(eventActivated, a.t.schedule()); !ok {
		return true
	}
	act, _ := v.active()
	return promote && act.schedule() != a.t.schedule()
}

// steps declares the active schedule's path, binds its tier 1 and unbinds
// the tier 1 of every older activation.
func (a *activator) steps(v scheduleView) []func() error {
	act, _ := v.active()
	live := a.t.withDelays(act.delays())
	steps := live.pathSteps(a.ch)
	steps = append(steps, func() error {
		a.bound[act.ID] = true
		return live.bind(a.ch, live.TierQueue(1), act.ID, live.firstSlot(act.Seq))()
	})
	for _, r := range v.records {
		if r.Event == eventActivated && r.ID != act.ID && (a.bound[r.ID] || !v.retired(r.schedule())) {
			steps = append(steps, a.unbind(r))
		}
	}
	return append(steps, live.userBindingSteps(a.ch)...)
}

// unbind removes an older activation's binding, from slot 0 first: with
// the newer activation bound to slot 1, that is the switch. Its tier 1 is
// declared first, as unbinding a queue that does not exist closes the
// channel.
func (a *activator) unbind(r scheduleRecord) func() error {
	old := a.t.withDelays(r.delays())
	return func() error {
		if err := old.queue(a.ch, old.TierQueue(1), old.tierArgs(1))(); err != nil {
			return err
		}
		for _, slot := range []string{old.firstSlot(0), old.firstSlot(1)} {
			if err := a.ch.QueueUnbind(old.TierQueue(1), r.ID, slot, nil); err != nil {
				return declareError("binding", old.TierQueue(1)+" to "+slot+" with key "+r.ID, err)
			}
		}
		delete(a.bound, r.ID)
		return nil
	}
}
