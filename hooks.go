package dlxretry

import (
	"context"
	"time"
)

// Hooks are called as things happen, to feed metrics or traces. A nil field
// is skipped. Keep them quick, and safe for concurrent use.
//
// Each delivery a [Consumer] or [Wrap] handles gets OnDelivery, then exactly
// one of OnAck, OnRetry, OnPark or OnRelease, each called once the outcome
// is final: after the broker confirmed a parked copy, after the ack or nack
// was sent. They run on the goroutine that handles the delivery, and the
// ctx they get is the handler's: the one OnDelivery returned, so a hook can
// start a span there and end it in the outcome hook.
//
// OnPublish runs on the goroutine that called [Publisher.Publish], with its
// ctx; for [Publisher.PublishAsync] it runs on the Publisher's confirm
// goroutine, with a background ctx: keep it quick, and do not publish or
// wait on the Publisher from it. OnConnect and OnDisconnect run on the goroutine that connects, except
// OnDisconnect for a lost connection, which runs on the connection's own
// goroutine as soon as it is lost. A [Conn] calls OnConnect when its
// connection is up and OnDisconnect when an attempt failed or its
// connection was lost (the error wraps [ErrConnectionLost]). A [Consumer]
// calls them for its sessions instead: OnConnect once the topology is
// declared and deliveries flow, OnDisconnect when a session ended (its error
// says why; it wraps ErrConnectionLost when the connection was lost). Those of a Consumer or [Publisher] made from a URL
// also go to its own connection; with a shared Conn, the Conn's hooks report
// the connection.
type Hooks struct {
	// OnDelivery is called before the handler runs, with the context the
	// handler would get. The context it returns, if not nil, is given to the
	// handler and to the outcome hook instead: derive it from ctx.
	OnDelivery func(ctx context.Context, e DeliveryEvent) context.Context
	OnAck      func(ctx context.Context, e AckEvent)
	OnRetry    func(ctx context.Context, e RetryEvent)
	OnPark     func(ctx context.Context, e ParkEvent)
	OnRelease  func(ctx context.Context, e ReleaseEvent)
	OnPublish  func(ctx context.Context, e PublishEvent) // each [Publisher.Publish], after it settles

	OnConnect    func(ConnectEvent)    // a connection is up; for a Consumer, a session
	OnDisconnect func(DisconnectEvent) // a connection attempt failed or a connection was lost; for a Consumer, a session ended
}

// DeliveryEvent reports a delivery about to be handled.
type DeliveryEvent struct {
	Delivery *Delivery
	Queue    string
	Attempt  int // 1 for a first delivery
}

// AckEvent reports a delivery the handler succeeded with, acked.
type AckEvent struct {
	Delivery *Delivery
	Queue    string
	Attempt  int           // 1 for a first delivery
	Duration time.Duration // how long the handler ran
}

// RetryEvent reports a failed delivery sent to a retry tier.
type RetryEvent struct {
	Delivery *Delivery
	Queue    string
	Attempt  int // the attempt that failed
	Tier     int // the tier it waits in, 1-based
	Delay    time.Duration
	Err      error // why the handler failed
	// ParkErr is why the delivery is retried although it was due to be
	// parked: parking failed, and parking is tried again on its next
	// delivery. nil for an ordinary retry.
	ParkErr  error
	Duration time.Duration
}

// ParkReason says why a delivery was parked.
type ParkReason string

// The reasons a delivery is parked.
const (
	ParkPermanent  ParkReason = "permanent"  // the handler returned a [Permanent] error
	ParkExhausted  ParkReason = "exhausted"  // the last attempt failed
	ParkUnreadable ParkReason = "unreadable" // its x-death header cannot be trusted; the handler did not run
)

// ParkEvent reports a delivery the broker confirmed in the parking queue,
// then acked. A delivery that could not be parked is reported by OnRetry
// (with ParkErr) or OnRelease instead.
type ParkEvent struct {
	Delivery *Delivery
	Queue    string
	Attempt  int
	Reason   ParkReason
	Err      error // why it was parked
	Duration time.Duration
}

// ReleaseEvent reports a delivery left unsettled, or whose settlement
// failed: the broker delivers it again. It happens on shutdown (the handler
// failed after its ctx was cancelled), when the channel was lost or
// recovered, and when a message with an unreadable history could not be
// parked.
type ReleaseEvent struct {
	Delivery *Delivery
	Queue    string
	Attempt  int
	Err      error // why it was not settled
	Duration time.Duration
}

// PublishEvent reports the outcome of a [Publisher.Publish].
type PublishEvent struct {
	Exchange   string
	RoutingKey string
	Err        error // nil once confirmed
	Duration   time.Duration
}

// ConnectEvent reports a connection that is up.
type ConnectEvent struct {
	Broker string // the URL, password hidden
}

// DisconnectEvent reports a failed connection attempt, a lost connection
// (Err wraps [ErrConnectionLost]; RetryIn is 0: the Conn connects again when
// next needed) or, from a Consumer, a session that ended. Err never shows a
// password.
type DisconnectEvent struct {
	Broker  string // the URL, password hidden
	Err     error
	RetryIn time.Duration // the wait before the next attempt
}
