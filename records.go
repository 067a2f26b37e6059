package dlxretry

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// The schedules a topology has had are recorded in the broker, one message
// per event in the queue Queue.retry.schedules, which nothing consumes. A
// schedule is activated when it is first declared (or by
// [Topology.RetireTiers]); the newest activation is the one whose tier 1 the
// first-retry exchange feeds. It is retired once its tier queues are gone.
const (
	eventActivated = "activated"
	eventRetired   = "retired"
)

// maxRecords bounds one read of the records queue.
const maxRecords = 10000

// readAttempts bounds how often a read finds records held by another
// reader; it waits a random time up to readBackoff, doubled at each attempt
// and at most maxReadBackoff, before the next (about half a minute in all,
// at worst), so that the readers of many consumers connecting at once take
// turns.
const (
	readAttempts   = 25
	readBackoff    = 5 * time.Millisecond
	maxReadBackoff = 2 * time.Second
)

// scheduleRecord is one event of a schedule, a message's JSON body.
type scheduleRecord struct {
	Event    string    `json:"event"`
	DelaysMS []int64   `json:"delays_ms"`
	Seq      int64     `json:"seq"`
	ID       string    `json:"id"` // unique: seq and random hex
	At       time.Time `json:"at"`
}

func (r scheduleRecord) delays() []time.Duration {
	out := make([]time.Duration, len(r.DelaysMS))
	for i, ms := range r.DelaysMS {
		out[i] = time.Duration(ms) * time.Millisecond
	}
	return out
}

// schedule identifies the record's schedule.
func (r scheduleRecord) schedule() string { return delaysHash(r.delays()) }

// after orders records: by sequence number, ties by ID.
func (r scheduleRecord) after(o scheduleRecord) bool {
	return r.Seq > o.Seq || r.Seq == o.Seq && r.ID > o.ID
}

// parseRecord reads a record; id is its ID when it has one, and ok says
// whether it is an event this version knows, with valid delays.
func parseRecord(body []byte) (r scheduleRecord, id string, ok bool) {
	if json.Unmarshal(body, &r) != nil || r.ID == "" {
		return r, "", false
	}
	if r.Event != eventActivated && r.Event != eventRetired || len(r.DelaysMS) == 0 {
		return r, r.ID, false
	}
	for _, ms := range r.DelaysMS {
		if ms > math.MaxInt64/int64(time.Millisecond) || validDelay(0, time.Duration(ms)*time.Millisecond) != nil {
			return r, r.ID, false
		}
	}
	return r, r.ID, true
}

// scheduleView is every record, read at once, and how many had been written.
type scheduleView struct {
	records []scheduleRecord
	written int
}

func (v scheduleView) maxSeq() int64 {
	var n int64
	for _, r := range v.records {
		n = max(n, r.Seq)
	}
	return n
}

// nextActivationSeq is the sequence number of a new activation: above
// every record's, and of the other parity than the active one's, so that
// it binds to the other slot (see activator).
func (v scheduleView) nextActivationSeq() int64 {
	seq := v.maxSeq() + 1
	if act, ok := v.active(); ok && seq%2 == act.Seq%2 {
		seq++
	}
	return seq
}

// latest is the newest record of an event for a schedule.
func (v scheduleView) latest(event, schedule string) (scheduleRecord, bool) {
	var out scheduleRecord
	found := false
	for _, r := range v.records {
		if r.Event == event && r.schedule() == schedule && (!found || r.after(out)) {
			out, found = r, true
		}
	}
	return out, found
}

// active is the newest activation; ok is false when there is none.
func (v scheduleView) active() (scheduleRecord, bool) {
	var out scheduleRecord
	found := false
	for _, r := range v.records {
		if r.Event == eventActivated && (!found || r.after(out)) {
			out, found = r, true
		}
	}
	return out, found
}

// retired reports a schedule retired since its last activation.
func (v scheduleView) retired(schedule string) bool {
	ret, ok := v.latest(eventRetired, schedule)
	act, activated := v.latest(eventActivated, schedule)
	return ok && (!activated || ret.after(act))
}

// schedules lists each recorded schedule once, in the order first seen.
func (v scheduleView) schedules() [][]time.Duration {
	seen := map[string]bool{}
	var out [][]time.Duration
	for _, r := range v.records {
		if !seen[r.schedule()] {
			seen[r.schedule()] = true
			out = append(out, r.delays())
		}
	}
	return out
}

// recordStore reads and writes the records of t on ch. Readers take the
// records with basic.get and put them back, so a reader that meets another
// may see only some: the count queue, which holds one message per record
// ever written and is never read, tells a complete read from a partial one.
//
// For that count to be sound, a record must never be readable before it is
// counted, else a record written during a read could stand in for one
// another reader holds: a record reaches both queues with one publish (the
// count queue named in its BCC header), and a reader counts after its gets.
type recordStore struct {
	t  Topology
	ch *amqp.Channel
}

// declare declares the records queue and the count queue.
func (s recordStore) declare() error {
	for _, q := range []string{s.t.schedulesQueue(), s.t.scheduleCountQueue()} {
		if _, err := s.ch.QueueDeclare(q, true, false, false, false, s.t.plainArgs()); err != nil {
			return declareError("queue", q, err)
		}
	}
	return nil
}

// written is how many records have been written.
func (s recordStore) written() (int, error) {
	q, err := s.ch.QueueDeclare(s.t.scheduleCountQueue(), true, false, false, false, s.t.plainArgs())
	return q.Messages, declareError("queue", s.t.scheduleCountQueue(), err)
}

// read returns every record, waiting while other readers hold some.
func (s recordStore) read(ctx context.Context) (scheduleView, error) {
	for attempt := range readAttempts {
		v, complete, err := s.readOnce(ctx)
		if err != nil || complete {
			return v, err
		}
		wait := min(readBackoff<<min(attempt, 20), maxReadBackoff)
		if err := sleep(ctx, rand.N(wait)+1); err != nil {
			return v, err
		}
	}
	return scheduleView{}, fmt.Errorf("dlxretry: the schedule records in %s stay incomplete (%s counts more): "+
		"another client holds them, or they were removed", s.t.schedulesQueue(), s.t.scheduleCountQueue())
}

// readOnce takes every record and puts them back; complete is false when
// fewer records came than the count queue says, after the gets, were
// written. Every record that came was counted by then, so as many records
// as counted are all of them.
func (s recordStore) readOnce(ctx context.Context) (scheduleView, bool, error) {
	var v scheduleView
	var tags []uint64
	defer func() {
		for _, tag := range tags {
			s.ch.Nack(tag, false, true) // a closed channel requeues them anyway
		}
	}()
	ids := map[string]bool{}
	for len(tags) < maxRecords {
		if err := ctx.Err(); err != nil {
			return v, false, err
		}
		d, ok, err := s.ch.Get(s.t.schedulesQueue(), false)
		if err != nil {
			return v, false, fmt.Errorf("dlxretry: read %s: %w", s.t.schedulesQueue(), err)
		}
		if !ok {
			written, err := s.written()
			v.written = written
			return v, err == nil && len(ids) >= written, err
		}
		tags = append(tags, d.DeliveryTag)
		r, id, ok := parseRecord(d.Body)
		if ok && !ids[id] {
			v.records = append(v.records, r)
		}
		if id != "" {
			ids[id] = true
		}
	}
	return v, false, fmt.Errorf("dlxretry: %s holds more than %d messages", s.t.schedulesQueue(), maxRecords)
}

// write records an event of a schedule and counts it, with one publish to
// both queues and publisher confirms. It puts ch in confirm mode.
func (s recordStore) write(ctx context.Context, event string, delays []time.Duration, seq int64) error {
	r := scheduleRecord{Event: event, Seq: seq, ID: strconv.FormatInt(seq, 10) + "." + randomHex(), At: time.Now().UTC()}
	for _, d := range delays {
		r.DelaysMS = append(r.DelaysMS, d.Milliseconds())
	}
	body, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := s.ch.Confirm(false); err != nil {
		return fmt.Errorf("dlxretry: record schedule: confirm mode: %w", err)
	}
	msg := amqp.Publishing{DeliveryMode: amqp.Persistent, ContentType: "application/json",
		MessageId: r.ID, Timestamp: r.At, Body: body,
		Headers: amqp.Table{"BCC": []any{s.t.scheduleCountQueue()}}}
	return s.publish(ctx, s.t.schedulesQueue(), msg)
}

func (s recordStore) publish(ctx context.Context, queue string, msg amqp.Publishing) error {
	dc, err := s.ch.PublishWithDeferredConfirmWithContext(ctx, "", queue, false, false, msg)
	if err != nil {
		return fmt.Errorf("dlxretry: record schedule in %s: %w", queue, err)
	}
	acked, err := dc.WaitContext(ctx)
	switch {
	case err != nil:
		return fmt.Errorf("dlxretry: record schedule in %s: %w", queue, err)
	case !acked:
		return fmt.Errorf("dlxretry: record schedule in %s: %w", queue, ErrNacked)
	}
	return nil
}

func randomHex() string { return fmt.Sprintf("%08x", rand.Uint32()) }
