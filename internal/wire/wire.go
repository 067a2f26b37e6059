// Package wire reads and copies AMQP values as the broker hands them over,
// for the packages that read headers any publisher can set: a header value
// may have any type the AMQP table codec produces.
package wire

import (
	"math"

	amqp "github.com/rabbitmq/amqp091-go"
)

// String is v's text when v is a string or a byte array, else "".
func String(v any) string {
	switch s := v.(type) {
	case string:
		return s
	case []byte:
		return string(s)
	}
	return ""
}

// Int64 accepts every integer width the AMQP table codec can produce, and
// floats that hold a whole number.
func Int64(v any) (int64, bool) {
	switch n := v.(type) {
	case int64:
		return n, true
	case int32:
		return int64(n), true
	case int16:
		return int64(n), true
	case int8:
		return int64(n), true
	case int:
		return int64(n), true
	case uint8:
		return int64(n), true
	case uint16:
		return int64(n), true
	case uint32:
		return int64(n), true
	case uint64:
		if n > math.MaxInt64 {
			return 0, false
		}
		return int64(n), true
	case float64:
		if n != math.Trunc(n) || math.Abs(n) > 1<<62 {
			return 0, false
		}
		return int64(n), true
	case float32:
		return Int64(float64(n))
	}
	return 0, false
}

// ExactInt accepts the integer types of the AMQP table codec, never a float.
func ExactInt(v any) (int64, bool) {
	switch v.(type) {
	case float32, float64:
		return 0, false
	}
	return Int64(v)
}

// Clone copies a header table, with room for extra more.
func Clone(src amqp.Table, extra int) amqp.Table {
	h := make(amqp.Table, len(src)+extra)
	for k, v := range src {
		h[k] = v
	}
	return h
}

// Publishing copies a delivery's body and properties, persistent, with
// headers, without the expiration (it would expire the copy) or the user id
// (the broker checks it against the publishing connection's user).
func Publishing(d amqp.Delivery, headers amqp.Table) amqp.Publishing {
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
