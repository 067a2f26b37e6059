package parkinglot

import (
	"encoding/json"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dlxretry/dlxretry"
	"github.com/dlxretry/dlxretry/internal/wire"
)

// Message is a parked message as a [Lot] reads it: what parking
// recorded about it, from the headers package dlxretry names, and the message
// itself. A field whose header is missing (the message was not parked by
// this library) is left at its zero value, except OriginalRoutingKey. In
// JSON, as [Lot.Drop] writes it, Body is base64 and Age is
// age_seconds.
type Message struct {
	Queue              string    `json:"queue"`                // the work queue it failed in ([dlxretry.HeaderQueue])
	OriginalExchange   string    `json:"original_exchange"`    // [dlxretry.HeaderOriginalExchange]
	OriginalRoutingKey string    `json:"original_routing_key"` // [dlxretry.HeaderOriginalRoutingKey], or else RoutingKey
	Error              string    `json:"error"`                // the last error's text ([dlxretry.HeaderError])
	Attempts           int       `json:"attempts"`             // deliveries before it was parked ([dlxretry.HeaderAttempts])
	Permanent          bool      `json:"permanent"`            // the handler said Permanent ([dlxretry.HeaderPermanent])
	Replays            int       `json:"replays"`              // how often it was replayed before ([HeaderReplays])
	ParkedAt           time.Time `json:"parked_at"`            // when, to the second ([dlxretry.HeaderParkedAt]); zero if unknown
	// Age is how long it had been parked when it was read; 0 if ParkedAt is unknown.
	Age  time.Duration `json:"-"`
	Size int           `json:"size"` // the body's length in bytes

	RoutingKey      string     `json:"routing_key"` // the key it was parked with
	Redelivered     bool       `json:"redelivered"` // someone took it from parking before and put it back
	MessageID       string     `json:"message_id,omitempty"`
	CorrelationID   string     `json:"correlation_id,omitempty"`
	ContentType     string     `json:"content_type,omitempty"`
	ContentEncoding string     `json:"content_encoding,omitempty"`
	Type            string     `json:"type,omitempty"`
	AppID           string     `json:"app_id,omitempty"`
	ReplyTo         string     `json:"reply_to,omitempty"`
	Priority        uint8      `json:"priority,omitempty"`
	Timestamp       time.Time  `json:"timestamp,omitzero"`
	Headers         amqp.Table `json:"headers"` // all of them, the ones above included
	Body            []byte     `json:"body"`
}

// MarshalJSON adds age_seconds.
func (m Message) MarshalJSON() ([]byte, error) {
	type plain Message // without this method
	return json.Marshal(struct {
		plain
		AgeSeconds float64 `json:"age_seconds"`
	}{plain(m), m.Age.Seconds()})
}

// NewMessage reads a delivery from a parking queue, as the Lot's operations
// do, with its age as of now: for programs that consume a parking queue
// themselves.
func NewMessage(d amqp.Delivery, now time.Time) Message {
	h := d.Headers
	m := Message{
		Queue:              wire.String(h[dlxretry.HeaderQueue]),
		OriginalExchange:   wire.String(h[dlxretry.HeaderOriginalExchange]),
		OriginalRoutingKey: wire.String(h[dlxretry.HeaderOriginalRoutingKey]),
		Error:              wire.String(h[dlxretry.HeaderError]),
		Size:               len(d.Body),
		RoutingKey:         d.RoutingKey,
		Redelivered:        d.Redelivered,
		MessageID:          d.MessageId,
		CorrelationID:      d.CorrelationId,
		ContentType:        d.ContentType,
		ContentEncoding:    d.ContentEncoding,
		Type:               d.Type,
		AppID:              d.AppId,
		ReplyTo:            d.ReplyTo,
		Priority:           d.Priority,
		Timestamp:          d.Timestamp,
		Headers:            h,
		Body:               d.Body,
	}
	if m.OriginalRoutingKey == "" {
		m.OriginalRoutingKey = d.RoutingKey // parking publishes with the original key
	}
	m.Attempts = intHeader(h, dlxretry.HeaderAttempts)
	m.Replays = intHeader(h, HeaderReplays)
	m.Permanent, _ = h[dlxretry.HeaderPermanent].(bool)
	if at, ok := h[dlxretry.HeaderParkedAt].(time.Time); ok && !at.IsZero() {
		m.ParkedAt, m.Age = at, max(0, now.Sub(at))
	}
	return m
}

func intHeader(h amqp.Table, key string) int {
	n, _ := wire.Int64(h[key])
	return int(n)
}

// HeaderReplays is how many times [Lot.Replay] has sent a message back
// to its work queue, as int64. Replay writes it on the copy it publishes; it
// survives retries and a new parking, so a parked message that has it failed
// again after a replay.
const HeaderReplays = "x-dlxretry-replays"
