package parkinglot

import (
	"context"
	"errors"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// walk is one pass over the parking queue. inspect sees each matched message;
// settle acts on it, and the message is acked when settle returns nil. With
// neither, or in a dry run, matched messages are kept.
type walk struct {
	inspect func(Message) error
	settle  func(context.Context, Message, amqp.Delivery) error

	ch     *amqp.Channel
	queue  string
	filter Filter
	run    run
	rep    Report
}

// walk takes at most Total messages, so it never meets one it put back.
func (w *walk) walk(ctx context.Context) error {
	for w.rep.Visited < w.rep.Total && !w.limitReached() {
		if err := ctx.Err(); err != nil {
			return err
		}
		d, ok, err := w.ch.Get(w.queue, false)
		if err != nil {
			return fmt.Errorf("parkinglot: get from %s: %w", w.queue, err)
		}
		if !ok {
			return nil // someone else took the rest
		}
		if err := w.visitOne(ctx, d); err != nil {
			return err
		}
		w.progress()
	}
	return nil
}

func (w *walk) limitReached() bool {
	return w.run.limit > 0 && w.rep.Matched >= w.run.limit
}

func (w *walk) visitOne(ctx context.Context, d amqp.Delivery) error {
	w.rep.Visited++
	m := NewMessage(d, time.Now())
	if !w.filter.Match(m) {
		w.rep.Kept++
		return nil
	}
	w.rep.Matched++
	acted, err := w.act(ctx, m, d)
	if acted {
		w.rep.Acted++
	} else {
		w.rep.Kept++ // left unacked, for putBack
	}
	return err
}

// act runs inspect and settle on a matched message, and acks it once settled.
func (w *walk) act(ctx context.Context, m Message, d amqp.Delivery) (acted bool, err error) {
	if w.inspect != nil {
		if err := w.inspect(m); err != nil {
			return false, err
		}
	}
	if w.settle == nil || w.run.dryRun {
		return false, nil
	}
	if err := w.settle(ctx, m, d); err != nil {
		return false, err
	}
	if err := d.Ack(false); err != nil {
		return false, fmt.Errorf("parkinglot: ack in %s (the message was acted on and stays parked too): %w", w.queue, err)
	}
	return true, nil
}

func (w *walk) progress() {
	if w.run.progress != nil && w.rep.Visited%w.run.every == 0 {
		w.run.progress(w.rep)
	}
}

// putBack closes the walk's channel: the broker returns every message on it
// that was not acked, and a classic queue has them back in place by the time
// the close completes. (A basic.nack would return them asynchronously.)
func (w *walk) putBack() error {
	if err := w.ch.Close(); err != nil && !errors.Is(err, amqp.ErrClosed) {
		return fmt.Errorf("parkinglot: put back %d messages in %s (the broker does so when the connection closes): %w", w.rep.Kept, w.queue, err)
	}
	return nil
}
