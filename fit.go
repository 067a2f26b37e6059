package dlxretry

import (
	"cmp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	amqp "github.com/rabbitmq/amqp091-go"
)

// A message's properties travel in one content header frame, which must fit
// the connection's negotiated frame size; a larger one makes the broker close
// the connection (FRAME_ERROR). These sizes follow amqp091-go's encoder.
const (
	frameOverhead  = 8  // type, channel, size, frame end
	headerFixed    = 14 // class, weight, body size, property flags
	fitMargin      = 64
	trimmedReserve = 1 << 10 // room kept for HeaderTrimmed itself
	// trimmedErrorLen is what is left of the error text when the copy is trimmed.
	trimmedErrorLen = 256
)

// fitFrame trims msg's headers until its header frame fits frameSize: first
// what parking adds at length (the stack, then most of the error text), then
// the death history, then the largest of the message's own headers. What it
// leaves off is named in HeaderTrimmed.
func fitFrame(msg *amqp.Publishing, frameSize int) {
	budget := frameSize - frameOverhead - headerFixed - fitMargin - propertiesSize(msg)
	h := msg.Headers
	if tableSize(h) <= budget {
		return
	}
	budget -= trimmedReserve
	var trimmed []string
	drop := func(k string) {
		if _, ok := h[k]; ok {
			delete(h, k)
			trimmed = append(trimmed, k)
		}
	}
	drop(HeaderStack)
	if s, ok := h[HeaderError].(string); ok && tableSize(h) > budget {
		h[HeaderError] = truncateUTF8(s, trimmedErrorLen)
	}
	for _, k := range []string{headerXDeath, HeaderUnreadableDeaths, "x-first-death-queue", "x-first-death-reason",
		"x-first-death-exchange", "x-last-death-queue", "x-last-death-reason", "x-last-death-exchange"} {
		if tableSize(h) > budget {
			drop(k)
		}
	}
	for _, k := range largestOwnHeaders(h) {
		if tableSize(h) <= budget {
			break
		}
		drop(k)
	}
	if len(trimmed) > 0 {
		h[HeaderTrimmed] = truncateUTF8(strings.Join(trimmed, ","), trimmedReserve-64)
	}
}

// largestOwnHeaders lists the headers the library did not write, largest first.
func largestOwnHeaders(h amqp.Table) []string {
	keys := make([]string, 0, len(h))
	for k := range h {
		if !strings.HasPrefix(k, "x-dlxretry-") {
			keys = append(keys, k)
		}
	}
	size := func(k string) int { return fieldSize(h[k]) }
	slices.SortFunc(keys, func(a, b string) int { return cmp.Compare(size(b), size(a)) })
	return keys
}

// propertiesSize is the encoded size of msg's properties other than headers.
func propertiesSize(msg *amqp.Publishing) int {
	n := 2 + 8 // delivery mode, priority; timestamp
	for _, s := range []string{msg.ContentType, msg.ContentEncoding, msg.CorrelationId, msg.ReplyTo,
		msg.Expiration, msg.MessageId, msg.Type, msg.UserId, msg.AppId} {
		n += 1 + len(s)
	}
	return n
}

// tableSize is the encoded size of a field table, its length prefix included.
func tableSize(t amqp.Table) int {
	n := 4
	for k, v := range t {
		n += 1 + len(k) + fieldSize(v)
	}
	return n
}

// fieldSize is the encoded size of a field value, its type tag included.
func fieldSize(v any) int {
	switch v := v.(type) {
	case bool, byte, int8:
		return 2
	case int16, uint16:
		return 3
	case int, int32, uint32, float32:
		return 5
	case int64, float64, time.Time:
		return 9
	case amqp.Decimal:
		return 6
	case string:
		return 5 + len(v)
	case []byte:
		return 5 + len(v)
	case []any:
		n := 5
		for _, e := range v {
			n += fieldSize(e)
		}
		return n
	case amqp.Table:
		return 1 + tableSize(v)
	}
	return 1 // void
}

// truncateUTF8 cuts s to at most n bytes without splitting a rune, marking the cut.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "…"
	cut := n - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}
