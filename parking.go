package dlxretry

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Headers the library writes on a parked message. The message keeps its own
// headers, x-death included, beside them, unless the parked copy would not
// fit in a frame (see [HeaderTrimmed]).
const (
	HeaderQueue              = "x-dlxretry-queue"                // the work queue it failed in
	HeaderError              = "x-dlxretry-error"                // the last error's text, bounded in length
	HeaderAttempts           = "x-dlxretry-attempts"             // deliveries it had, as int64
	HeaderParkedAt           = "x-dlxretry-parked-at"            // when it was parked, an AMQP timestamp
	HeaderOriginalExchange   = "x-dlxretry-original-exchange"    // the exchange it was first published to
	HeaderOriginalRoutingKey = "x-dlxretry-original-routing-key" // the key it was first published with
	HeaderPermanent          = "x-dlxretry-permanent"            // true if the handler said Permanent
	HeaderStack              = "x-dlxretry-stack"                // a panicking handler's stack, bounded in length
	// HeaderUnreadableDeaths holds, as text, an x-death header the broker
	// cannot have written (see [ErrUnreadableHistory]); the parked copy has
	// no x-death.
	HeaderUnreadableDeaths = "x-dlxretry-unreadable-x-death"
	// HeaderTrimmed lists, comma-separated, the headers left off the parked
	// copy so that it fits in one frame.
	HeaderTrimmed = "x-dlxretry-trimmed"
	// HeaderUncountedFailure, 1, marks a message the library itself sent to
	// tier 1: the broker recorded no rejection for that failure.
	HeaderUncountedFailure = "x-dlxretry-uncounted-failure"
)

// Bounds on what parking adds.
const (
	stackLimit      = 4 << 10
	historyLimit    = 4 << 10
	trimmedErrorLen = 256
)

// parker publishes failed messages to the parking exchange with publisher
// confirms and mandatory routing.
type parker struct {
	cc        *confirmChannel
	topo      Topology
	limit     int
	frameSize int
}

func newParker(ch *amqp.Channel, t Topology, errorTextLimit, frameSize int) (*parker, error) {
	if ch == nil {
		return nil, invalid("channel", "must not be nil")
	}
	cc, err := newConfirmChannel(ch)
	if err != nil {
		return nil, err
	}
	return &parker{cc: cc, topo: t, limit: errorTextLimit, frameSize: frameSize}, nil
}

// park returns nil once the broker has confirmed the parked copy.
func (p *parker) park(ctx context.Context, d *Delivery, cause error) error {
	msg := p.parked(d, cause, time.Now())
	if err := p.cc.publish(ctx, p.topo.ParkingExchange(), d.OriginalRoutingKey(), msg); err != nil {
		return fmt.Errorf("dlxretry: park in %s: %w", p.topo.ParkingExchange(), err)
	}
	return nil
}

// parked builds the parking copy: the same body and properties (see
// publishingOf) with the parking headers added, trimmed to fit a frame.
func (p *parker) parked(d *Delivery, cause error, now time.Time) amqp.Publishing {
	h := cloneHeaders(d.Headers, 10)
	if errors.Is(cause, ErrUnreadableHistory) {
		h[HeaderUnreadableDeaths] = truncateUTF8(fmt.Sprint(h[headerXDeath]), historyLimit)
		delete(h, headerXDeath)
	}
	h[HeaderQueue] = p.topo.Queue
	h[HeaderError] = truncateUTF8(errorText(cause), p.limit)
	h[HeaderAttempts] = int64(d.Attempt)
	h[HeaderParkedAt] = now.UTC().Truncate(time.Second)
	h[HeaderOriginalExchange] = d.OriginalExchange()
	h[HeaderOriginalRoutingKey] = d.OriginalRoutingKey()
	h[HeaderPermanent] = isPermanent(cause)
	if pe, ok := errors.AsType[*PanicError](cause); ok {
		h[HeaderStack] = truncateUTF8(string(pe.Stack), stackLimit)
	}
	msg := publishingOf(d.Delivery, h)
	fitFrame(&msg, p.frameSize)
	return msg
}

func cloneHeaders(src amqp.Table, extra int) amqp.Table {
	h := make(amqp.Table, len(src)+extra)
	for k, v := range src {
		h[k] = v
	}
	return h
}

func errorText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
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
