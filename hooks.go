package dlxretry

import "time"

// Hooks are called as things happen, to feed metrics or traces. A nil field
// is skipped. OnAck, OnRetry and OnPark run on the goroutine that handled the
// delivery, after the broker has been told the outcome; OnPublish on the
// goroutine that called Publish; OnConnect and OnDisconnect on the one that
// connects. Keep them quick, and safe for concurrent use.
type Hooks struct {
	OnAck        func(AckEvent)
	OnRetry      func(RetryEvent)
	OnPark       func(ParkEvent)
	OnPublish    func(PublishEvent)    // each [Publisher.Publish], after it settles
	OnConnect    func(ConnectEvent)    // a connection is up (and, for a Consumer, the topology declared)
	OnDisconnect func(DisconnectEvent) // a connection attempt failed or a connection was lost
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

// DisconnectEvent reports a failed connection attempt or a lost connection.
type DisconnectEvent struct {
	Broker  string
	Err     error
	RetryIn time.Duration // the wait before the next attempt
}
