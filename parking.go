package dlxretry

import (
	"context"
	"errors"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dlxretry/dlxretry/internal/wire"
)

// Bounds on what parking adds.
const (
	stackLimit   = 4 << 10
	historyLimit = 4 << 10
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
	h := wire.Clone(d.Headers, 10)
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
	if pe, ok := asType[*PanicError](cause); ok {
		h[HeaderStack] = truncateUTF8(string(pe.Stack), stackLimit)
	}
	msg := wire.Publishing(d.Delivery, h)
	fitFrame(&msg, p.frameSize)
	return msg
}

func errorText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
