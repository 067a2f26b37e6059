package parkinglot

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dlxretry/dlxretry"
	"github.com/dlxretry/dlxretry/internal/wire"
)

// replayCopy is what Replay publishes: the parked message without its
// death history and parking headers, with the replay counted.
func replayCopy(d amqp.Delivery) amqp.Publishing {
	h := make(amqp.Table, len(d.Headers)+2)
	for k, v := range d.Headers {
		if !historyHeader(k) {
			h[k] = v
		}
	}
	if _, ok := h[dlxretry.HeaderOriginalRoutingKey]; !ok {
		// Parking publishes with the original key.
		h[dlxretry.HeaderOriginalRoutingKey] = d.RoutingKey
	}
	replays, _ := wire.Int64(d.Headers[HeaderReplays])
	h[HeaderReplays] = replays + 1
	return wire.Publishing(d, h)
}

// historyHeader tells the headers a replay drops: the broker's record of
// earlier deaths and deliveries (which 3.x would count again), and what
// parking wrote about the last failure.
func historyHeader(k string) bool {
	switch k {
	case "x-death", "x-delivery-count":
		return true
	case dlxretry.HeaderOriginalExchange, dlxretry.HeaderOriginalRoutingKey, HeaderReplays:
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

// writeLine writes m as a JSON line to w, if w is not nil, and flushes w.
func writeLine(w io.Writer, m Message) error {
	if w == nil {
		return nil
	}
	// An Encoder writes the whole line with one Write.
	if err := json.NewEncoder(w).Encode(m); err != nil {
		return fmt.Errorf("parkinglot: write dropped message: %w", err)
	}
	var err error
	switch f := w.(type) {
	case interface{ Flush() error }:
		err = f.Flush()
	case interface{ Sync() error }:
		err = f.Sync()
	}
	if err != nil {
		return fmt.Errorf("parkinglot: flush dropped message: %w", err)
	}
	return nil
}
