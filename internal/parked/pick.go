package parked

// This file acts on messages selected by id or error group, which a
// dlxretry.Filter cannot express. It follows dlxretry.ParkingLot's walk
// (count the queue, basic.get each message without acking it, ack a
// message only once its copy was confirmed or its line written, close the
// channel to put the rest back) and its copies (replayCopy, publishingOf).
// It goes away once the library's Filter can select by message id and by
// a function of the message.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dlxretry/dlxretry"
)

// action settles one selected message; the walk acks it when it returns nil.
type action func(ctx context.Context, m Message, d amqp.Delivery) error

// pick walks the parking queue once and runs act on the messages s selects.
func (l Lot) pick(ctx context.Context, s Selection, act action) (Report, error) {
	if err := s.Validate(); err != nil {
		return Report{}, err
	}
	ch, err := l.Conn.Channel(ctx)
	if err != nil {
		return Report{}, err
	}
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(l.ParkingQueue(), true, false, false, false, nil)
	switch {
	case notFound(err):
		return Report{}, fmt.Errorf("parking queue %q does not exist", l.ParkingQueue())
	case err != nil:
		return Report{}, fmt.Errorf("inspect parking queue %q: %w", l.ParkingQueue(), err)
	}
	rep := Report{Total: q.Messages}
	err = l.walk(ctx, ch, s, act, &rep)
	// Closing the channel puts back every message it did not ack.
	if cerr := ch.Close(); cerr != nil && !errors.Is(cerr, amqp.ErrClosed) {
		err = errors.Join(err, fmt.Errorf("put back %d messages in %s: %w", rep.Kept, l.ParkingQueue(), cerr))
	}
	l.awaitPutBack(ctx, rep)
	return rep, err
}

func (l Lot) walk(ctx context.Context, ch *amqp.Channel, s Selection, act action, rep *Report) error {
	for rep.Visited < rep.Total && (s.Filter.Limit == 0 || rep.Matched < s.Filter.Limit) {
		if err := ctx.Err(); err != nil {
			return err
		}
		d, ok, err := ch.Get(l.ParkingQueue(), false)
		if err != nil {
			return fmt.Errorf("get from %s: %w", l.ParkingQueue(), err)
		}
		if !ok {
			return nil // someone else took the rest
		}
		rep.Visited++
		if err := visit(ctx, s, act, d, rep); err != nil {
			return err
		}
		if l.Progress != nil && rep.Visited%l.every() == 0 {
			l.Progress(*rep)
		}
	}
	return nil
}

func visit(ctx context.Context, s Selection, act action, d amqp.Delivery, rep *Report) error {
	m := message(d, time.Now())
	if !s.Match(m) {
		rep.Kept++
		return nil
	}
	rep.Matched++
	if s.Filter.DryRun {
		rep.Kept++
		return nil
	}
	if err := act(ctx, m, d); err != nil {
		rep.Kept++
		return err
	}
	if err := d.Ack(false); err != nil {
		rep.Kept++
		return fmt.Errorf("ack (the message was acted on and stays parked too): %w", err)
	}
	rep.Acted++
	return nil
}

// awaitPutBack waits, a second at most, until the parking queue holds the
// messages the walk put back: a quorum queue returns them a moment after
// the channel closed.
func (l Lot) awaitPutBack(ctx context.Context, rep Report) {
	if rep.Kept == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	for ctx.Err() == nil {
		q, err := l.inspect(ctx, l.ParkingQueue())
		if err != nil || q.Messages >= rep.Total-rep.Acted {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// pickPublishing walks the parking queue once and publishes the copy copyOf
// makes of each message s selects, with confirms and as mandatory.
func (l Lot) pickPublishing(ctx context.Context, s Selection, copyOf func(amqp.Delivery) (exchange, key string, msg amqp.Publishing)) (Report, error) {
	pub, err := dlxretry.NewPublisher(l.Conn)
	if err != nil {
		return Report{}, err
	}
	defer pub.Close()
	return l.pick(ctx, s, func(ctx context.Context, _ Message, d amqp.Delivery) error {
		exchange, key, msg := copyOf(d)
		return pub.Publish(ctx, exchange, key, msg)
	})
}

// message reads a delivery as the library's ParkingLot does.
func message(d amqp.Delivery, now time.Time) Message {
	h := d.Headers
	m := Message{
		Queue:              text(h[dlxretry.HeaderQueue]),
		OriginalExchange:   text(h[dlxretry.HeaderOriginalExchange]),
		OriginalRoutingKey: text(h[dlxretry.HeaderOriginalRoutingKey]),
		Error:              text(h[dlxretry.HeaderError]),
		Attempts:           integer(h[dlxretry.HeaderAttempts]),
		Replays:            integer(h[dlxretry.HeaderReplays]),
		Size:               len(d.Body),
		RoutingKey:         d.RoutingKey,
		Redelivered:        d.Redelivered,
		MessageID:          d.MessageId,
		CorrelationID:      d.CorrelationId,
		ContentType:        d.ContentType,
		Timestamp:          d.Timestamp,
		Headers:            h,
		Body:               d.Body,
	}
	if m.OriginalRoutingKey == "" {
		m.OriginalRoutingKey = d.RoutingKey
	}
	m.Permanent, _ = h[dlxretry.HeaderPermanent].(bool)
	if at, ok := h[dlxretry.HeaderParkedAt].(time.Time); ok && !at.IsZero() {
		m.ParkedAt, m.Age = at, max(0, now.Sub(at))
	}
	return m
}

func text(v any) string {
	switch s := v.(type) {
	case string:
		return s
	case []byte:
		return string(s)
	}
	return ""
}

func integer(v any) int {
	switch n := v.(type) {
	case int64:
		return int(n)
	case int32:
		return int(n)
	case int16:
		return int(n)
	case int8:
		return int(n)
	case uint8:
		return int(n)
	case uint16:
		return int(n)
	case uint32:
		return int(n)
	case int:
		return n
	}
	return 0
}

// replayCopy is the library's replay copy: without the broker's death
// history and the headers parking wrote, the original key kept, the replay
// counted.
func replayCopy(d amqp.Delivery) amqp.Publishing {
	h := make(amqp.Table, len(d.Headers)+2)
	for k, v := range d.Headers {
		if !historyHeader(k) {
			h[k] = v
		}
	}
	if _, ok := h[dlxretry.HeaderOriginalRoutingKey]; !ok {
		h[dlxretry.HeaderOriginalRoutingKey] = d.RoutingKey
	}
	h[dlxretry.HeaderReplays] = int64(integer(d.Headers[dlxretry.HeaderReplays]) + 1)
	return publishingOf(d, h)
}

func historyHeader(k string) bool {
	switch k {
	case "x-death", "x-delivery-count":
		return true
	case dlxretry.HeaderOriginalExchange, dlxretry.HeaderOriginalRoutingKey, dlxretry.HeaderReplays:
		return false
	}
	for _, prefix := range []string{"x-first-death-", "x-last-death-", "x-dlxretry-"} {
		if strings.HasPrefix(k, prefix) {
			return true
		}
	}
	return false
}

func without(headers amqp.Table, drop ...string) amqp.Table {
	h := make(amqp.Table, len(headers))
	for k, v := range headers {
		h[k] = v
	}
	for _, k := range drop {
		delete(h, k)
	}
	return h
}

// publishingOf copies a delivery's body and properties, persistent, without
// the expiration or the user id.
func publishingOf(d amqp.Delivery, headers amqp.Table) amqp.Publishing {
	return amqp.Publishing{
		Headers:         headers,
		ContentType:     d.ContentType,
		ContentEncoding: d.ContentEncoding,
		DeliveryMode:    amqp.Persistent,
		Priority:        d.Priority,
		CorrelationId:   d.CorrelationId,
		ReplyTo:         d.ReplyTo,
		MessageId:       d.MessageId,
		Timestamp:       d.Timestamp,
		Type:            d.Type,
		AppId:           d.AppId,
		Body:            d.Body,
	}
}

// writeLine writes m as a JSON line to w, if w is not nil, and flushes or
// syncs w.
func writeLine(w io.Writer, m Message) error {
	if w == nil {
		return nil
	}
	if err := json.NewEncoder(w).Encode(m); err != nil {
		return fmt.Errorf("write dropped message: %w", err)
	}
	var err error
	switch f := w.(type) {
	case interface{ Flush() error }:
		err = f.Flush()
	case interface{ Sync() error }:
		err = f.Sync()
	}
	if err != nil {
		return fmt.Errorf("flush dropped message: %w", err)
	}
	return nil
}
