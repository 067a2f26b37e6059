package dlxretry

import (
	"errors"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dlxretry/dlxretry/internal/wire"
)

// Reasons the broker gives in an x-death entry.
const (
	ReasonRejected  = "rejected"
	ReasonExpired   = "expired"
	ReasonMaxLen    = "maxlen"
	ReasonDelivery  = "delivery_limit"
	headerXDeath    = "x-death"
	xdeathQueue     = "queue"
	xdeathReason    = "reason"
	xdeathCount     = "count"
	xdeathTime      = "time"
	xdeathExchange  = "exchange"
	xdeathKeys      = "routing-keys"
	xdeathOrigExpir = "original-expiration"
)

// Death is one entry of the broker's x-death header: the message was
// dead-lettered Count times from Queue for Reason.
type Death struct {
	Queue              string
	Reason             string
	Count              int64
	Time               time.Time // when it first happened; later deaths raise Count only
	Exchange           string    // the exchange the message had been published to
	RoutingKeys        []string  // its routing keys at that time, CC and BCC included
	OriginalExpiration string    // the per-message expiration it had, if any
}

// Deaths is the parsed x-death header, in the order the broker sent it. Only
// the first entry is reliably the latest (3.10 reorders the older ones on
// each dead-lettering), so look entries up with [Deaths.Find]. The zero value
// (nil) means the message was never dead-lettered.
type Deaths []Death

// ParseDeaths reads the x-death header from headers. It never panics: an entry
// that is not a table, or lacks a queue or reason, is skipped, and a field of
// the wrong type is left at its zero value. The error, when not nil, says what
// was skipped; the Deaths returned hold every entry that could be read.
func ParseDeaths(headers amqp.Table) (Deaths, error) {
	raw, ok := headers[headerXDeath]
	if !ok || raw == nil {
		return nil, nil
	}
	list, ok := raw.([]any)
	if !ok {
		return nil, fmt.Errorf("dlxretry: x-death is a %T, not an array", raw)
	}
	deaths := make(Deaths, 0, len(list))
	keys := make([]string, 0, countKeys(list)) // one array for every entry's RoutingKeys
	var skipped int
	for _, item := range list {
		d, ok := parseDeath(item, &keys)
		if !ok {
			skipped++
			continue
		}
		deaths = append(deaths, d)
	}
	if skipped > 0 {
		return deaths, fmt.Errorf("dlxretry: x-death: %d of %d entries unreadable", skipped, len(list))
	}
	return deaths, nil
}

// countKeys is how many routing keys the entries of list hold, at most.
func countKeys(list []any) int {
	n := 0
	for _, item := range list {
		if t, ok := asTable(item); ok {
			keys, _ := t[xdeathKeys].([]any)
			n += len(keys)
		}
	}
	return n
}

// parseDeath reads one entry, appending its routing keys to keys (whose
// capacity holds them all) and slicing them off for the entry.
func parseDeath(item any, keys *[]string) (Death, bool) {
	t, ok := asTable(item)
	if !ok {
		return Death{}, false
	}
	d := Death{
		Queue:              wire.String(t[xdeathQueue]),
		Reason:             wire.String(t[xdeathReason]),
		Exchange:           wire.String(t[xdeathExchange]),
		OriginalExpiration: wire.String(t[xdeathOrigExpir]),
		Time:               asTime(t[xdeathTime]),
	}
	if d.Queue == "" || d.Reason == "" {
		return Death{}, false
	}
	d.Count, _ = wire.Int64(t[xdeathCount])
	if raw, ok := t[xdeathKeys].([]any); ok {
		start := len(*keys)
		for _, k := range raw {
			switch k.(type) {
			case string, []byte: // "" too: the key of a message published without one
				*keys = append(*keys, wire.String(k))
			}
		}
		// Capped, so that appending to one entry's keys never writes into
		// the next entry's.
		d.RoutingKeys = (*keys)[start:len(*keys):len(*keys)]
	}
	return d, true
}

// Find returns the entry for queue and reason, if there is one.
func (ds Deaths) Find(queue, reason string) (Death, bool) {
	for _, d := range ds {
		if d.Queue == queue && d.Reason == reason {
			return d, true
		}
	}
	return Death{}, false
}

// Rejections is how many times the message was rejected from queue: the count
// of its {queue, rejected} entry, or 0. With the topology of this package it
// is the number of failed attempts so far.
func (ds Deaths) Rejections(queue string) int64 {
	d, _ := ds.Find(queue, ReasonRejected)
	if d.Count < 0 {
		return 0
	}
	return d.Count
}

// OriginalRoutingKey is the routing key the message had when it was first
// rejected from queue, and false if it never was.
func (ds Deaths) OriginalRoutingKey(queue string) (string, bool) {
	d, ok := ds.Find(queue, ReasonRejected)
	if !ok || len(d.RoutingKeys) == 0 {
		return "", false
	}
	return d.RoutingKeys[0], true
}

func asTable(v any) (amqp.Table, bool) {
	switch t := v.(type) {
	case amqp.Table:
		return t, true
	case map[string]any:
		return amqp.Table(t), true
	}
	return nil, false
}

func asTime(v any) time.Time {
	if t, ok := v.(time.Time); ok {
		return t
	}
	if n, ok := wire.Int64(v); ok {
		return time.Unix(n, 0)
	}
	return time.Time{}
}

// Bounds on a death history the broker could have written.
const (
	maxDeathEntries = 256     // one per (queue, reason) the message passed through
	maxDeathCount   = 1 << 31 // far beyond any real cycle, far below an overflow
	// rejectionSlack is how far the work queue's rejection count may exceed
	// MaxAttempts: each failed parking attempt adds a round.
	rejectionSlack = 100
)

// checkDeaths returns an error wrapping ErrUnreadableHistory when headers
// hold an x-death header that the broker cannot have written for a work
// queue whose messages are parked after maxAttempts failures.
func checkDeaths(headers amqp.Table, queue string, maxAttempts int) error {
	raw, ok := headers[headerXDeath]
	if !ok {
		return nil
	}
	list, ok := raw.([]any)
	if !ok {
		return fmt.Errorf("%w: a %T, not an array", ErrUnreadableHistory, raw)
	}
	if len(list) > maxDeathEntries {
		return fmt.Errorf("%w: %d entries", ErrUnreadableHistory, len(list))
	}
	seen := make(map[[2]string]bool, len(list))
	for i, item := range list {
		q, reason, err := checkDeath(item, queue, maxAttempts)
		if err == nil && seen[[2]string{q, reason}] {
			err = fmt.Errorf("a second entry for %q, %q", q, reason)
		}
		if err != nil {
			return fmt.Errorf("%w: entry %d: %v", ErrUnreadableHistory, i, err)
		}
		seen[[2]string{q, reason}] = true
	}
	return nil
}

func checkDeath(item any, queue string, maxAttempts int) (q, reason string, err error) {
	t, ok := item.(amqp.Table)
	if !ok {
		return "", "", fmt.Errorf("a %T, not a table", item)
	}
	q, okQ := t[xdeathQueue].(string)
	reason, okR := t[xdeathReason].(string)
	if !okQ || !okR || q == "" || reason == "" {
		return "", "", errors.New("queue or reason missing or not a string")
	}
	limit := int64(maxDeathCount)
	if q == queue && reason == ReasonRejected {
		limit = int64(maxAttempts) + rejectionSlack
	}
	count, ok := wire.ExactInt(t[xdeathCount])
	if !ok || count < 1 || count > limit {
		return "", "", fmt.Errorf("count %v (%T) is not an integer between 1 and %d", t[xdeathCount], t[xdeathCount], limit)
	}
	return q, reason, checkDeathFields(t)
}

// checkDeathFields checks the optional fields' types.
func checkDeathFields(t amqp.Table) error {
	for _, f := range []string{xdeathExchange, xdeathOrigExpir} {
		if v, ok := t[f]; ok {
			if _, ok := v.(string); !ok {
				return fmt.Errorf("%s is a %T, not a string", f, v)
			}
		}
	}
	if v, ok := t[xdeathTime]; ok {
		if _, ok := v.(time.Time); !ok {
			return fmt.Errorf("time is a %T, not a timestamp", v)
		}
	}
	if v, ok := t[xdeathKeys]; ok {
		keys, ok := v.([]any)
		if !ok {
			return fmt.Errorf("routing-keys is a %T, not an array", v)
		}
		for _, k := range keys {
			if _, ok := k.(string); !ok {
				return fmt.Errorf("a routing key is a %T, not a string", k)
			}
		}
	}
	return nil
}
