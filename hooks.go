package dlxretry

import "time"

// Hooks are called as things happen, to feed metrics or traces. A nil field
// is skipped. OnAck, OnRetry and OnPark run on the goroutine that handled the
// delivery, after the broker has been told the outcome; OnPublish on the
// goroutine that called Publish; OnConnect and OnDisconnect on the one that
// connects. Keep them quick, and safe for concurrent use.
//
// A [Conn] calls OnConnect when its connection is up and OnDisconnect when
// an attempt failed. A [Consumer] calls them for its sessions instead:
// OnConnect once the topology is declared and deliveries flow, OnDisconnect
// when a session ended (its error says why, a lost connection included).
// Those of a Consumer or [Publisher] made from a URL also go to its own
// connection; with a shared Conn, the Conn's hooks report the connection.
type Hooks struct {
	OnAck        func(AckEvent)
	OnRetry      func(RetryEvent)
	OnPark       func(ParkEvent)
	OnPublish    func(PublishEvent)    // each [Publisher.Publish], after it settles
	OnConnect    func(ConnectEvent)    // a connection is up; for a Consumer, a session
	OnDisconnect func(DisconnectEvent) // a connection attempt failed; for a Consumer, also a session ended
}

// AckEvent reports a delivery the handler succeeded with.
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
	Err      error
	Duration time.Duration
}

// ParkEvent reports a delivery moved to the parking queue, or one that could
// not be (ParkErr is set and the message went round the retry path instead).
type ParkEvent struct {
	Delivery *Delivery
	Queue    string
	Attempt  int
	Err      error // why it was parked
	ParkErr  error // why parking failed, or nil
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

// DisconnectEvent reports a failed connection attempt or, from a Consumer,
// a session that ended. Err never shows a password.
type DisconnectEvent struct {
	Broker  string // the URL, password hidden
	Err     error
	RetryIn time.Duration // the wait before the next attempt
}
