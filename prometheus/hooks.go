package dlxprom

import (
	"context"
	"errors"
	"strconv"
	"sync"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dlxretry/dlxretry"
)

// Hooks returns the [dlxretry.Hooks] that feed the Collector; give them with
// [dlxretry.WithHooks]. Call Hooks once for each Consumer, Publisher or
// Conn: every value it returns tracks the connection state of the one it is
// given to (dlxretry_connections_up counts those that are up). Deliveries
// and publishes are labelled by queue and exchange, so one Collector serves
// any number of them. To run them beside hooks of your own (or tracing),
// chain them, as dlxotel.Merge does.
//
// What the library reports decides what the connection series can show: a
// Consumer reports each session (up once its topology is declared and
// deliveries flow, down when the session ends), a Conn or a Publisher's own
// connection each connection made and each failed attempt. A connection
// lost while nothing uses it is seen only when it is made again (that
// counts a reconnect), and closing a Publisher or stopping a Consumer
// reports nothing, so dlxretry_connections_up still counts them.
func (c *Collector) Hooks() dlxretry.Hooks {
	s := &connState{c: c}
	return dlxretry.Hooks{
		OnDelivery:   c.delivered,
		OnAck:        c.acked,
		OnRetry:      c.retried,
		OnPark:       c.parked,
		OnRelease:    c.released,
		OnPublish:    c.published,
		OnConnect:    s.connected,
		OnDisconnect: s.disconnected,
	}
}

func (c *Collector) delivered(_ context.Context, e dlxretry.DeliveryEvent) context.Context {
	c.inFlight.WithLabelValues(e.Queue).Inc()
	return nil
}

// done counts a delivery's outcome and how long its handler ran.
func (c *Collector) done(queue, outcome string, seconds float64, ran bool) {
	c.inFlight.WithLabelValues(queue).Dec()
	c.deliveries.WithLabelValues(queue, outcome).Inc()
	if ran {
		c.handler.WithLabelValues(queue, outcome).Observe(seconds)
	}
}

func (c *Collector) acked(_ context.Context, e dlxretry.AckEvent) {
	c.done(e.Queue, "ack", e.Duration.Seconds(), true)
}

func (c *Collector) retried(_ context.Context, e dlxretry.RetryEvent) {
	c.retries.WithLabelValues(e.Queue, strconv.Itoa(e.Tier), e.Delay.String()).Inc()
	if e.ParkErr != nil {
		c.parkFailures.WithLabelValues(e.Queue).Inc()
	}
	c.done(e.Queue, "retry", e.Duration.Seconds(), true)
}

func (c *Collector) parked(_ context.Context, e dlxretry.ParkEvent) {
	c.parks.WithLabelValues(e.Queue, string(e.Reason)).Inc()
	// A message with an unreadable history is parked without running the handler.
	c.done(e.Queue, "park", e.Duration.Seconds(), e.Reason != dlxretry.ParkUnreadable)
}

func (c *Collector) released(_ context.Context, e dlxretry.ReleaseEvent) {
	c.done(e.Queue, "release", e.Duration.Seconds(), e.Duration > 0)
}

func (c *Collector) published(_ context.Context, e dlxretry.PublishEvent) {
	c.publishes.WithLabelValues(e.Exchange, publishResult(e.Err)).Inc()
	c.publish.WithLabelValues(e.Exchange).Observe(e.Duration.Seconds())
}

// publishResult is a bounded name for how a publish ended.
func publishResult(err error) string {
	var ae *amqp.Error
	switch {
	case err == nil:
		return "confirmed"
	case errors.Is(err, dlxretry.ErrUnroutable):
		return "unroutable"
	case errors.Is(err, dlxretry.ErrNacked):
		return "nacked"
	case errors.Is(err, dlxretry.ErrUnconfirmed):
		return "unconfirmed"
	case errors.Is(err, dlxretry.ErrClosed):
		return "closed"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.As(err, &ae):
		return "refused"
	}
	return "error"
}

// connState is one client's connection, as its hooks report it.
type connState struct {
	c  *Collector
	mu sync.Mutex
	up bool
	// seen: it has been up before, so the next connect is a reconnect.
	seen bool
}

func (s *connState) connected(dlxretry.ConnectEvent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen {
		s.c.reconnects.Inc()
	}
	s.seen = true
	if !s.up {
		s.up = true
		s.c.connsUp.Inc()
	}
}

func (s *connState) disconnected(dlxretry.DisconnectEvent) {
	s.c.connFailures.Inc()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.up {
		s.up = false
		s.c.connsUp.Dec()
	}
}
