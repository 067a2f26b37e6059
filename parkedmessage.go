package dlxretry

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// ParkedMessage is a parked message as a [ParkingLot] reads it: what parking
// recorded about it, from the headers parking.go names, and the message
// itself. A field whose header is missing (the message was not parked by
// this library) is left at its zero value, except OriginalRoutingKey. In
// JSON, as [ParkingLot.Drop] writes it, Body is base64 and Age is
// age_seconds.
type ParkedMessage struct {
	Queue              string    `json:"queue"`                // the work queue it failed in (HeaderQueue)
	OriginalExchange   string    `json:"original_exchange"`    // HeaderOriginalExchange
	OriginalRoutingKey string    `json:"original_routing_key"` // HeaderOriginalRoutingKey, or else RoutingKey
	Error              string    `json:"error"`                // the last error's text (HeaderError)
	Attempts           int       `json:"attempts"`             // deliveries before it was parked (HeaderAttempts)
	Permanent          bool      `json:"permanent"`            // the handler said Permanent (HeaderPermanent)
	Replays            int       `json:"replays"`              // how often it was replayed before (HeaderReplays)
	ParkedAt           time.Time `json:"parked_at"`            // when, to the second (HeaderParkedAt); zero if unknown
	// Age is how long it had been parked when it was read; 0 if ParkedAt is unknown.
	Age  time.Duration `json:"-"`
	Size int           `json:"size"` // the body's length in bytes

	RoutingKey    string     `json:"routing_key"` // the key it was parked with
	Redelivered   bool       `json:"redelivered"` // someone took it from parking before and put it back
	MessageID     string     `json:"message_id,omitempty"`
	CorrelationID string     `json:"correlation_id,omitempty"`
	ContentType   string     `json:"content_type,omitempty"`
	Timestamp     time.Time  `json:"timestamp,omitzero"`
	Headers       amqp.Table `json:"headers"` // all of them, the ones above included
	Body          []byte     `json:"body"`
}

// MarshalJSON adds age_seconds.
func (m ParkedMessage) MarshalJSON() ([]byte, error) {
	type plain ParkedMessage // without this method
	return json.Marshal(struct {
		plain
		AgeSeconds float64 `json:"age_seconds"`
	}{plain(m), m.Age.Seconds()})
}

func newParkedMessage(d amqp.Delivery, now time.Time) ParkedMessage {
	h := d.Headers
	m := ParkedMessage{
		Queue:              asString(h[HeaderQueue]),
		OriginalExchange:   asString(h[HeaderOriginalExchange]),
		OriginalRoutingKey: asString(h[HeaderOriginalRoutingKey]),
		Error:              asString(h[HeaderError]),
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
		m.OriginalRoutingKey = d.RoutingKey // parking publishes with the original key
	}
	m.Attempts = intHeader(h, HeaderAttempts)
	m.Replays = intHeader(h, HeaderReplays)
	m.Permanent, _ = h[HeaderPermanent].(bool)
	if at, ok := h[HeaderParkedAt].(time.Time); ok && !at.IsZero() {
		m.ParkedAt, m.Age = at, max(0, now.Sub(at))
	}
	return m
}

func intHeader(h amqp.Table, key string) int {
	n, _ := asInt64(h[key])
	return int(n)
}

// Filter selects parked messages. Its zero value selects all of them; each
// field set narrows the selection. Limit and DryRun say how much to act on.
type Filter struct {
	// OriginalQueue selects messages that failed in this work queue.
	OriginalQueue string
	// ErrorContains selects messages whose error text contains it.
	ErrorContains string
	// OlderThan selects messages parked at least this long ago, NewerThan
	// those parked less than this long ago. Either excludes messages whose
	// parking time is unknown.
	OlderThan, NewerThan time.Duration
	// Headers selects messages that have each of these headers, with a value
	// whose text is the one given: strings and byte arrays as they are,
	// numbers in decimal, booleans as true or false, timestamps in RFC 3339.
	Headers map[string]string
	// Limit, when above 0, stops an operation once that many messages matched.
	Limit int
	// DryRun makes Replay, Drop and Move act on nothing: the report says
	// what they would have done. The messages are still visited, and put back.
	DryRun bool
}

// Validate reports a field that cannot be used as a *[ConfigError].
func (f Filter) Validate() error {
	switch {
	case f.OlderThan < 0:
		return invalid("Filter.OlderThan", "must not be negative, got %v", f.OlderThan)
	case f.NewerThan < 0:
		return invalid("Filter.NewerThan", "must not be negative, got %v", f.NewerThan)
	case f.NewerThan > 0 && f.OlderThan >= f.NewerThan:
		return invalid("Filter.NewerThan", "%v with OlderThan %v selects nothing", f.NewerThan, f.OlderThan)
	case f.Limit < 0:
		return invalid("Filter.Limit", "must not be negative, got %d", f.Limit)
	}
	return nil
}

// Match tells whether f selects m.
func (f Filter) Match(m ParkedMessage) bool {
	switch {
	case f.OriginalQueue != "" && m.Queue != f.OriginalQueue,
		f.ErrorContains != "" && !strings.Contains(m.Error, f.ErrorContains),
		f.OlderThan > 0 && (m.ParkedAt.IsZero() || m.Age < f.OlderThan),
		f.NewerThan > 0 && (m.ParkedAt.IsZero() || m.Age >= f.NewerThan):
		return false
	}
	for k, want := range f.Headers {
		v, ok := m.Headers[k]
		if !ok || headerText(v) != want {
			return false
		}
	}
	return true
}

// headerText is the text a Filter compares a header value with.
func headerText(v interface{}) string {
	if n, ok := asInt64(v); ok {
		return strconv.FormatInt(n, 10)
	}
	switch x := v.(type) {
	case string:
		return x
	case []byte:
		return string(x)
	case bool:
		return strconv.FormatBool(x)
	case float32:
		return strconv.FormatFloat(float64(x), 'g', -1, 32)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case time.Time:
		return x.UTC().Format(time.RFC3339)
	}
	return fmt.Sprint(v)
}

// replayCopy is what Replay publishes: the parked message without its
// death history and parking headers, with the replay counted.
func replayCopy(d amqp.Delivery) amqp.Publishing {
	h := make(amqp.Table, len(d.Headers)+2)
	for k, v := range d.Headers {
		if !historyHeader(k) {
			h[k] = v
		}
	}
	if _, ok := h[HeaderOriginalRoutingKey]; !ok {
		// Parking publishes with the original key.
		h[HeaderOriginalRoutingKey] = d.RoutingKey
	}
	replays, _ := asInt64(d.Headers[HeaderReplays])
	h[HeaderReplays] = replays + 1
	return publishingOf(d, h)
}

// historyHeader tells the headers a replay drops: the broker's record of
// earlier deaths and deliveries (which 3.x would count again), and what
// parking wrote about the last failure.
func historyHeader(k string) bool {
	switch k {
	case headerXDeath, "x-delivery-count":
		return true
	case HeaderOriginalExchange, HeaderOriginalRoutingKey, HeaderReplays:
		return false
	}
	for _, prefix := range []string{"x-first-death-", "x-last-death-", "x-dlxretry-"} {
		if strings.HasPrefix(k, prefix) {
			return true
		}
	}
	return false
}

func withoutHeaders(headers amqp.Table, drop ...string) amqp.Table {
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
// the expiration (it would expire the copy) or the user id (the broker checks
// it against the publishing connection's user).
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

// writeLine writes m as a JSON line to w, if w is not nil, and flushes w.
func writeLine(w io.Writer, m ParkedMessage) error {
	if w == nil {
		return nil
	}
	// An Encoder writes the whole line with one Write.
	if err := json.NewEncoder(w).Encode(m); err != nil {
		return fmt.Errorf("dlxretry: write dropped message: %w", err)
	}
	var err error
	switch f := w.(type) {
	case interface{ Flush() error }:
		err = f.Flush()
	case interface{ Sync() error }:
		err = f.Sync()
	}
	if err != nil {
		return fmt.Errorf("dlxretry: flush dropped message: %w", err)
	}
	return nil
}
