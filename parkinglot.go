package dlxretry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// HeaderReplays is how many times [ParkingLot.Replay] has sent a message back
// to its work queue, as int64. Replay writes it on the copy it publishes; it
// survives retries and a new parking, so a parked message that has it failed
// again after a replay.
const HeaderReplays = "x-dlxretry-replays"

// ParkingLot inspects and acts on the messages parked for one work queue:
// [ParkingLot.List] and [ParkingLot.Each] read them, [ParkingLot.Replay]
// sends them back to the work queue, [ParkingLot.Drop] deletes them and
// [ParkingLot.Move] publishes them elsewhere. Each operation selects messages
// with a [Filter]. Create a ParkingLot with [NewParkingLot].
//
// # Visiting each message once
//
// RabbitMQ cannot peek at a queue. An operation reads the parking queue's
// message count when it starts, then takes up to that many messages with
// basic.get on a channel of its own, without acknowledging them. A message
// the operation acts on is acked only once its fate is sealed: after the
// broker confirmed the replayed or moved copy, or after the dropped message's
// JSON line was written. Every other message stays unacknowledged until the
// operation ends and closes the channel, and the broker then returns them to
// the queue: nothing is lost. A classic queue puts them back where they
// were, in order, before the close completes. A quorum queue puts them back
// ahead of the rest a moment later, but RabbitMQ 3.x does not keep their
// order among themselves; the operation waits (up to a second) until they
// are back, so that the next one sees them. A channel never gets a message
// it holds unacknowledged,
// so the operation visits each message present when it started at most once,
// never one it put back, and stops after as many as it counted. Messages
// parked while it runs (a replayed message that failed again at once, say)
// wait behind the counted ones; it reaches them only if someone else took
// counted messages from under it.
//
// The cost of this is that an operation holds the messages it has visited
// unacknowledged until it ends: the broker keeps them (not the client, which
// keeps only the current message), they are invisible to a second operation
// running at the same time, and an operation must finish within the broker's
// consumer_timeout (30 minutes by default) or the broker closes its channel
// and returns the messages itself; the operation then fails, having acted on
// the messages it acked. One basic.get per message also makes an operation
// take about a network round trip per message. On a quorum parking queue
// each visit raises a message's x-delivery-count, which the topology's
// delivery limit never acts on.
//
// If an operation fails or ctx is cancelled, it stops at the message in hand
// and puts back everything it has not acted on; the [Report] it returns says
// what it did. A failure or a cancellation while a copy is on its way (after
// the publish, before the ack of the original) can leave a message in both
// places, never in neither.
//
// ctx is checked before each message and bounds the wait for each confirm;
// a basic.get in progress is not interrupted.
//
// A ParkingLot holds no channel between operations and is safe for concurrent
// use; its operations open their own channels on its connection, connecting
// first if needed. Its zero value is not usable: create it with
// [NewParkingLot].
type ParkingLot struct {
	conn *Conn
	own  bool     // conn was made for this ParkingLot: Close closes it
	topo Topology // only Queue is set: the names derive from it
	opts lotOptions
}

// Report says what an operation did. Visited = Acted + Kept.
type Report struct {
	Total   int `json:"total"`   // ready messages in the parking queue when the operation began
	Visited int `json:"visited"` // messages it took from the parking queue and looked at
	Matched int `json:"matched"` // visited messages the filter selected
	Acted   int `json:"acted"`   // matched messages replayed, dropped or moved: 0 in a dry run, List and Each
	Kept    int `json:"kept"`    // visited messages put back in the parking queue
}

// NewParkingLot returns a ParkingLot for the parked messages of the work
// queue queue (a [Topology].Queue): they wait in the queue
// [Topology.ParkingQueue] names. It works through broker: a URL, for a
// connection of its own made with the [ConnOption] values given (Close
// closes it), or a shared *[Conn]. It does not touch the broker.
func NewParkingLot[B Broker](broker B, queue string, opts ...ParkingLotOption) (*ParkingLot, error) {
	if err := validName("queue", queue); err != nil {
		return nil, err
	}
	o, err := newLotOptions(opts)
	if err != nil {
		return nil, err
	}
	conn, own, err := connFor(broker, o.connOptions)
	if err != nil {
		return nil, err
	}
	return &ParkingLot{conn: conn, own: own, topo: Topology{Queue: queue}, opts: o}, nil
}

// Close closes the ParkingLot's connection when it has one of its own (made
// from a URL), interrupting an operation in progress; a shared Conn stays
// open.
func (p *ParkingLot) Close() error {
	if p == nil || p.conn == nil {
		return invalid("ParkingLot", "not created by NewParkingLot")
	}
	if p.own {
		return p.conn.Close()
	}
	return nil
}

// Each calls fn with every parked message f selects, in queue order, and puts
// them all back. f.DryRun does not matter. An error from fn stops the walk
// and is returned. Each keeps one message in memory at a time.
func (p *ParkingLot) Each(ctx context.Context, f Filter, fn func(ParkedMessage) error) (Report, error) {
	if fn == nil {
		return Report{}, invalid("fn", "must not be nil")
	}
	return p.visit(ctx, f, &walk{inspect: fn})
}

// List returns the parked messages f selects, in queue order, and puts them
// all back. f.DryRun does not matter. It holds every listed message, bodies
// included, in memory: set f.Limit, or use [ParkingLot.Each], for a large
// parking queue.
func (p *ParkingLot) List(ctx context.Context, f Filter) ([]ParkedMessage, error) {
	var out []ParkedMessage
	_, err := p.Each(ctx, f, func(m ParkedMessage) error {
		out = append(out, m)
		return nil
	})
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
func (p *ParkingLot) Replay(ctx context.Context, f Filter) (Report, error) {
	if err := f.Validate(); err != nil {
		return Report{}, err
	}
	if err := p.checkQueue(ctx, p.topo.Queue); err != nil {
		return Report{}, err
	}
	return p.publishEach(ctx, f, func(d amqp.Delivery) (string, string, amqp.Publishing) {
		return "", p.topo.Queue, replayCopy(d)
	})
}

// Drop deletes the parked messages f selects. If w is not nil, each message is
// first written to it as one line of JSON (a [ParkedMessage], the body in
// base64) and w is flushed (Flush() error) or, failing that, synced (Sync()
// error, as *os.File has) before the message is acked; a failed write stops
// the operation and the message stays parked.
func (p *ParkingLot) Drop(ctx context.Context, f Filter, w io.Writer) (Report, error) {
	return p.visit(ctx, f, &walk{settle: func(_ context.Context, m ParkedMessage, _ amqp.Delivery) error {
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
func (p *ParkingLot) Move(ctx context.Context, f Filter, exchange, key string) (Report, error) {
	if exchange == p.topo.ParkingExchange() || (exchange == "" && key == p.topo.ParkingQueue()) {
		return Report{}, invalid("Move target", "%q is the parking lot itself", p.topo.ParkingQueue())
	}
	if err := f.Validate(); err != nil {
		return Report{}, err
	}
	if err := p.checkTarget(ctx, exchange, key); err != nil {
		return Report{}, err
	}
	return p.publishEach(ctx, f, func(d amqp.Delivery) (string, string, amqp.Publishing) {
		return exchange, key, publishingOf(d, withoutHeaders(d.Headers, "x-delivery-count"))
	})
}

// copyFunc says where a parked message goes and what is published.
type copyFunc func(d amqp.Delivery) (exchange, key string, msg amqp.Publishing)

// publishEach publishes a copy of each matched message, one at a time, with
// confirms and as mandatory ([confirmChannel]); the walk acks the original
// after the confirm. Publishing one at a time keeps the ack of each original
// tied to its own confirm, at a round trip per message.
func (p *ParkingLot) publishEach(ctx context.Context, f Filter, copyOf copyFunc) (Report, error) {
	if f.DryRun {
		return p.visit(ctx, f, &walk{})
	}
	ch, err := p.conn.Channel(ctx)
	if err != nil {
		return Report{}, err
	}
	defer ch.Close()
	cc, err := newConfirmChannel(ch)
	if err != nil {
		return Report{}, err
	}
	return p.visit(ctx, f, &walk{settle: func(ctx context.Context, _ ParkedMessage, d amqp.Delivery) error {
		exchange, key, msg := copyOf(d)
		if err := cc.publish(ctx, exchange, key, msg); err != nil {
			return fmt.Errorf("dlxretry: publish to exchange %q with key %q: %w", exchange, key, err)
		}
		return nil
	}})
}

// visit runs one operation: it counts the parking queue, walks it and puts
// back what it kept.
func (p *ParkingLot) visit(ctx context.Context, f Filter, w *walk) (Report, error) {
	if err := f.Validate(); err != nil {
		return Report{}, err
	}
	ch, err := p.conn.Channel(ctx)
	if err != nil {
		return Report{}, err
	}
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(p.topo.ParkingQueue(), true, false, false, false, nil)
	if err != nil {
		return Report{}, missing("parking queue", p.topo.ParkingQueue(), err)
	}
	w.ch, w.queue, w.filter, w.opts = ch, p.topo.ParkingQueue(), f, p.opts
	w.rep.Total = q.Messages
	err = w.run(ctx)
	if perr := w.putBack(); perr != nil {
		return w.rep, errors.Join(err, perr)
	}
	p.awaitPutBack(ctx, w.rep)
	return w.rep, err
}

// awaitPutBack waits, a second at most, until the parking queue holds as many
// ready messages as the operation left there, for queues that put returned
// messages back asynchronously (quorum queues). Others taking messages from
// the queue at the same time make it wait the full second.
func (p *ParkingLot) awaitPutBack(ctx context.Context, rep Report) {
	if rep.Kept == 0 {
		return
	}
	ch, err := p.conn.Channel(context.WithoutCancel(ctx))
	if err != nil {
		return
	}
	defer ch.Close()
	want := rep.Total - rep.Acted
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		q, err := ch.QueueDeclarePassive(p.topo.ParkingQueue(), true, false, false, false, nil)
		if err != nil || q.Messages >= want {
			return
		}
	}
}

// checkQueue checks that queue exists, on a channel of its own since a
// failed passive declaration closes the channel.
func (p *ParkingLot) checkQueue(ctx context.Context, queue string) error {
	ch, err := p.conn.Channel(ctx)
	if err != nil {
		return err
	}
	defer ch.Close()
	_, err = ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	return missing("queue", queue, err)
}

// checkTarget checks that a Move target exists: the exchange, or the queue
// when publishing through the default exchange.
func (p *ParkingLot) checkTarget(ctx context.Context, exchange, key string) error {
	if exchange == "" {
		return p.checkQueue(ctx, key)
	}
	ch, err := p.conn.Channel(ctx)
	if err != nil {
		return err
	}
	defer ch.Close()
	return missing("exchange", exchange, ch.ExchangeDeclarePassive(exchange, "", true, false, false, false, nil))
}

func missing(kind, name string, err error) error {
	var ae *amqp.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ae) && ae.Code == amqp.NotFound:
		return fmt.Errorf("dlxretry: %s %q does not exist: %w", kind, name, err)
	}
	return fmt.Errorf("dlxretry: inspect %s %q: %w", kind, name, err)
}

// walk is one pass over the parking queue. inspect sees each matched message;
// settle acts on it, and the message is acked when settle returns nil. With
// neither, or in a dry run, matched messages are kept.
type walk struct {
	inspect func(ParkedMessage) error
	settle  func(context.Context, ParkedMessage, amqp.Delivery) error

	ch     *amqp.Channel
	queue  string
	filter Filter
	opts   lotOptions
	rep    Report
}

// run takes at most Total messages, so it never meets one it put back.
func (w *walk) run(ctx context.Context) error {
	for w.rep.Visited < w.rep.Total && !w.limitReached() {
		if err := ctx.Err(); err != nil {
			return err
		}
		d, ok, err := w.ch.Get(w.queue, false)
		if err != nil {
			return fmt.Errorf("dlxretry: get from %s: %w", w.queue, err)
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
	return w.filter.Limit > 0 && w.rep.Matched >= w.filter.Limit
}

func (w *walk) visitOne(ctx context.Context, d amqp.Delivery) error {
	w.rep.Visited++
	m := newParkedMessage(d, time.Now())
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
func (w *walk) act(ctx context.Context, m ParkedMessage, d amqp.Delivery) (acted bool, err error) {
	if w.inspect != nil {
		if err := w.inspect(m); err != nil {
			return false, err
		}
	}
	if w.settle == nil || w.filter.DryRun {
		return false, nil
	}
	if err := w.settle(ctx, m, d); err != nil {
		return false, err
	}
	if err := d.Ack(false); err != nil {
		return false, fmt.Errorf("dlxretry: ack in %s (the message was acted on and stays parked too): %w", w.queue, err)
	}
	return true, nil
}

func (w *walk) progress() {
	if w.opts.progress != nil && w.rep.Visited%w.opts.progressEvery == 0 {
		w.opts.progress(w.rep)
	}
}

// putBack closes the walk's channel: the broker returns every message on it
// that was not acked, and a classic queue has them back in place by the time
// the close completes. (A basic.nack would return them asynchronously.)
func (w *walk) putBack() error {
	if err := w.ch.Close(); err != nil && !errors.Is(err, amqp.ErrClosed) {
		return fmt.Errorf("dlxretry: put back %d messages in %s (the broker does so when the connection closes): %w", w.rep.Kept, w.queue, err)
	}
	return nil
}
