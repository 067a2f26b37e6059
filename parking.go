package dlxretry

import (
	"context"
	"fmt"
	"time"
	"unicode/utf8"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Headers the library writes on a parked message. The message keeps its own
// headers, x-death included, beside them.
const (
	HeaderQueue              = "x-dlxretry-queue"                // the work queue it failed in
	HeaderError              = "x-dlxretry-error"                // the last error's text, bounded in length
	HeaderAttempts           = "x-dlxretry-attempts"             // deliveries it had, as int64
	HeaderParkedAt           = "x-dlxretry-parked-at"            // when it was parked, an AMQP timestamp
	HeaderOriginalExchange   = "x-dlxretry-original-exchange"    // the exchange it was first published to
	HeaderOriginalRoutingKey = "x-dlxretry-original-routing-key" // the key it was first published with
	HeaderPermanent          = "x-dlxretry-permanent"            // true if the handler said Permanent
)

// parker publishes failed messages to the parking exchange with publisher
// confirms and mandatory routing.
type parker struct {
	cc    *confirmChannel
	topo  Topology
	limit int
}

func newParker(ch *amqp.Channel, t Topology, errorTextLimit int) (*parker, error) {
	if ch == nil {
		return nil, invalid("channel", "must not be nil")
	}
	cc, err := newConfirmChannel(ch)
	if err != nil {
		return nil, err
	}
	return &parker{cc: cc, topo: t, limit: errorTextLimit}, nil
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
// publishingOf) with the parking headers added.
func (p *parker) parked(d *Delivery, cause error, now time.Time) amqp.Publishing {
	h := make(amqp.Table, len(d.Headers)+7)
	for k, v := range d.Headers {
		h[k] = v
	}
	h[HeaderQueue] = p.topo.Queue
	h[HeaderError] = truncateUTF8(errorText(cause), p.limit)
	h[HeaderAttempts] = int64(d.Attempt)
	h[HeaderParkedAt] = now.UTC().Truncate(time.Second)
	h[HeaderOriginalExchange] = d.OriginalExchange()
	h[HeaderOriginalRoutingKey] = d.OriginalRoutingKey()
	h[HeaderPermanent] = isPermanent(cause)
	return publishingOf(d.Delivery, h)
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
