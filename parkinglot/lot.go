package parkinglot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dlxretry/dlxretry"
	"github.com/dlxretry/dlxretry/internal/wire"
)

// Lot inspects and acts on the messages parked for one work queue, through
// a shared [dlxretry.Conn]: [Lot.List] and [Lot.Each] read them,
// [Lot.Replay] sends them back to the work queue, [Lot.Drop] deletes them
// and [Lot.Move] publishes them elsewhere. Each operation selects messages
// with a [Filter]; [Limit] and [DryRun] say how much of the selection it
// acts on. See the package documentation for how an operation visits the
// queue.
//
// A Lot holds no channel between operations and is safe for concurrent
// use; its operations open their own channels on the Conn, connecting first
// if needed. Its zero value is not usable: create it with [New].
type Lot struct {
	conn *dlxretry.Conn
	topo dlxretry.Topology // only Queue is set: the names derive from it
}

// New returns a Lot for the parked messages of the work queue queue (a
// [dlxretry.Topology].Queue): they wait in the queue
// [dlxretry.Topology.ParkingQueue] names. It works on conn, which it never
// closes, and does not touch the broker.
func New(conn *dlxretry.Conn, queue string) (*Lot, error) {
	if conn == nil {
		return nil, invalid("conn", "must not be nil")
	}
	if queue == "" || strings.HasPrefix(queue, "amq.") {
		return nil, invalid("queue", "must be a work queue's name, got %q", queue)
	}
	return &Lot{conn: conn, topo: dlxretry.Topology{Queue: queue}}, nil
}

// Queue is the work queue whose parked messages the Lot acts on.
func (l *Lot) Queue() string { return l.topo.Queue }

// Each calls fn with every parked message f selects, in queue order, and puts
// them all back. [DryRun] does not matter. An error from fn stops the walk
// and is returned. Each keeps one message in memory at a time.
func (l *Lot) Each(ctx context.Context, f Filter, fn func(Message) error, opts ...Option) (Report, error) {
	if fn == nil {
		return Report{}, invalid("fn", "must not be nil")
	}
	return l.visit(ctx, f, opts, &walk{inspect: fn})
}

// List returns the parked messages f selects, in queue order, and puts them
// all back. [DryRun] does not matter. It holds every listed message, bodies
// included, in memory: give a [Limit], or use [Lot.Each], for a large
// parking queue.
func (l *Lot) List(ctx context.Context, f Filter, opts ...Option) ([]Message, error) {
	var out []Message
	_, err := l.Each(ctx, f, func(m Message) error {
		out = append(out, m)
		return nil
	}, opts...)
	return out, err
}

// Replay sends the parked messages f selects back to the work queue with a
// fresh attempt budget. Each is published to the work queue itself (through
// the default exchange, with the queue's name as routing key), so that other
// queues bound to the exchange it was first published to do not get it
// twice. The copy has the body and properties of the parked message and its
// headers without the broker's death history (x-death, x-first-death-*,
// x-last-death-*, x-delivery-count) and without the headers parking added,
// except [HeaderOriginalExchange] and [HeaderOriginalRoutingKey]:
// [Delivery.OriginalRoutingKey] reads the latter. [HeaderReplays] is one more
// than it was. The handler sees Attempt 1 again, and a replayed message that
// keeps failing goes through the whole schedule before it is parked again.
//
// The copy is published with publisher confirms and as mandatory (and given
// a random MessageId if it has none, as parking does); a return
// (the work queue is gone) or a negative confirm stops the operation with an
// error, and the parked original is acked only after its copy was confirmed.
func (l *Lot) Replay(ctx context.Context, f Filter, opts ...Option) (Report, error) {
	if err := check(f, opts); err != nil {
		return Report{}, err
	}
	if err := l.checkQueue(ctx, l.topo.Queue); err != nil {
		return Report{}, err
	}
	return l.publishEach(ctx, f, opts, func(d amqp.Delivery) (string, string, amqp.Publishing) {
		return "", l.topo.Queue, replayCopy(d)
	})
}

// Drop deletes the parked messages f selects. If w is not nil, each message is
// first written to it as one line of JSON (a [Message], the body in
// base64) and w is flushed (Flush() error) or, failing that, synced (Sync()
// error, as *os.File has) before the message is acked; a failed write stops
// the operation and the message stays parked.
func (l *Lot) Drop(ctx context.Context, f Filter, w io.Writer, opts ...Option) (Report, error) {
	return l.visit(ctx, f, opts, &walk{settle: func(_ context.Context, m Message, _ amqp.Delivery) error {
		return writeLine(w, m)
	}})
}

// Move publishes the parked messages f selects to exchange with routing key
// key, then removes them from parking. Use exchange "" and a queue's name as
// key to move them to that queue. The copy keeps the body, properties and
// headers (x-death included) of the parked message, without the broker's
// x-delivery-count, and with a random MessageId if it has none. It is
// published with confirms and as mandatory, and the
// original is acked only after the confirm: a return (nothing bound to take
// it) or a negative confirm stops the operation with an error. Moving into
// the parking lot itself is refused.
func (l *Lot) Move(ctx context.Context, f Filter, exchange, key string, opts ...Option) (Report, error) {
	if exchange == l.topo.ParkingExchange() || (exchange == "" && key == l.topo.ParkingQueue()) {
		return Report{}, invalid("Move target", "%q is the parking lot itself", l.topo.ParkingQueue())
	}
	if err := check(f, opts); err != nil {
		return Report{}, err
	}
	if err := l.checkTarget(ctx, exchange, key); err != nil {
		return Report{}, err
	}
	return l.publishEach(ctx, f, opts, func(d amqp.Delivery) (string, string, amqp.Publishing) {
		return exchange, key, wire.Publishing(d, withoutHeaders(d.Headers, "x-delivery-count"))
	})
}

// copyFunc says where a parked message goes and what is published.
type copyFunc func(d amqp.Delivery) (exchange, key string, msg amqp.Publishing)

// publishEach publishes a copy of each matched message, one at a time, with
// confirms and as mandatory (a [dlxretry.Publisher] on the Lot's Conn); the
// walk acks the original after the confirm. Publishing one at a time keeps
// the ack of each original tied to its own confirm, at a round trip per
// message.
func (l *Lot) publishEach(ctx context.Context, f Filter, opts []Option, copyOf copyFunc) (Report, error) {
	if newRun(opts).dryRun {
		return l.visit(ctx, f, opts, &walk{})
	}
	pub, err := dlxretry.NewPublisher(l.conn)
	if err != nil {
		return Report{}, err
	}
	defer func() { _ = pub.Close() }() // on a shared Conn: closes only its channel, after the last confirm
	return l.visit(ctx, f, opts, &walk{settle: func(ctx context.Context, _ Message, d amqp.Delivery) error {
		exchange, key, msg := copyOf(d)
		if err := pub.Publish(ctx, exchange, key, msg); err != nil {
			return fmt.Errorf("parkinglot: publish to exchange %q with key %q: %w", exchange, key, err)
		}
		return nil
	}})
}

// visit runs one operation: it counts the parking queue, walks it and puts
// back what it kept.
func (l *Lot) visit(ctx context.Context, f Filter, opts []Option, w *walk) (Report, error) {
	if err := check(f, opts); err != nil {
		return Report{}, err
	}
	run := newRun(opts)
	ch, err := l.conn.Channel(ctx)
	if err != nil {
		return Report{}, err
	}
	defer closeChannel(ch)
	q, err := ch.QueueDeclarePassive(l.topo.ParkingQueue(), true, false, false, false, nil)
	if err != nil {
		return Report{}, missing("parking queue", l.topo.ParkingQueue(), err)
	}
	w.ch, w.queue, w.filter, w.run = ch, l.topo.ParkingQueue(), f, run
	w.rep.Total = q.Messages
	err = w.walk(ctx)
	if perr := w.putBack(); perr != nil {
		return w.rep, errors.Join(err, perr)
	}
	l.awaitPutBack(ctx, w.rep)
	return w.rep, err
}

// putBackWait bounds awaitPutBack.
const putBackWait = 5 * time.Second

// awaitPutBack waits, putBackWait at most, until the parking queue holds as
// many ready messages as the operation left there, for queues that put
// returned messages back asynchronously (quorum queues; on a busy 4.3 broker
// this took over a second). Others taking messages from the queue at the
// same time make it wait the full time.
func (l *Lot) awaitPutBack(ctx context.Context, rep Report) {
	if rep.Kept == 0 {
		return
	}
	ch, err := l.conn.Channel(context.WithoutCancel(ctx))
	if err != nil {
		return
	}
	defer closeChannel(ch)
	want := rep.Total - rep.Acted
	for deadline := time.Now().Add(putBackWait); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		q, err := ch.QueueDeclarePassive(l.topo.ParkingQueue(), true, false, false, false, nil)
		if err != nil || q.Messages >= want {
			return
		}
	}
}

// checkQueue checks that queue exists, on a channel of its own since a
// failed passive declaration closes the channel.
func (l *Lot) checkQueue(ctx context.Context, queue string) error {
	ch, err := l.conn.Channel(ctx)
	if err != nil {
		return err
	}
	defer closeChannel(ch)
	_, err = ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	return missing("queue", queue, err)
}

// checkTarget checks that a Move target exists: the exchange, or the queue
// when publishing through the default exchange.
func (l *Lot) checkTarget(ctx context.Context, exchange, key string) error {
	if exchange == "" {
		return l.checkQueue(ctx, key)
	}
	ch, err := l.conn.Channel(ctx)
	if err != nil {
		return err
	}
	defer closeChannel(ch)
	return missing("exchange", exchange, ch.ExchangeDeclarePassive(exchange, "", true, false, false, false, nil))
}

// check reports what makes an operation's filter or options unusable.
func check(f Filter, opts []Option) error {
	if err := f.Validate(); err != nil {
		return err
	}
	return newRun(opts).validate()
}
