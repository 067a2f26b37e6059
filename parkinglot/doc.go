// Package parkinglot is the operator's API for parked messages: it reads,
// replays, drops and moves the messages a [dlxretry.Consumer] or
// [dlxretry.Wrap] parked for a work queue, which wait in the queue
// [dlxretry.Topology.ParkingQueue] names. The dlxretry command and its web
// console are built on it. A service that only consumes and publishes does
// not need it.
//
//	conn, _ := dlxretry.NewConn("amqp://guest:guest@localhost:5672/")
//	lot, _ := parkinglot.New(conn, "orders")
//	rep, err := lot.Replay(ctx, parkinglot.Filter{ErrorContains: "timeout"}, parkinglot.Limit(100))
//
// # Visiting each message once
//
// RabbitMQ cannot peek at a queue. An operation reads the parking queue's
// message count when it starts, then takes up to that many messages with
// basic.get on a channel of its own, without acknowledging them. A message
// the operation acts on is acked only once its fate is sealed: after the
// broker confirmed the replayed or moved copy, or after the dropped message's
// JSON line was written. Every other message stays unacknowledged until the
// operation ends and closes the channel, and the broker then returns them to
// the queue: nothing is lost. A classic queue puts them back where they
// were, in order, before the close completes. A quorum queue puts them back
// ahead of the rest a moment later, but RabbitMQ 3.x does not keep their
// order among themselves; the operation waits (up to a second) until they
// are back, so that the next one sees them. A channel never gets a message
// it holds unacknowledged,
// so the operation visits each message present when it started at most once,
// never one it put back, and stops after as many as it counted. Messages
// parked while it runs (a replayed message that failed again at once, say)
// wait behind the counted ones; it reaches them only if someone else took
// counted messages from under it.
//
// The cost of this is that an operation holds the messages it has visited
// unacknowledged until it ends: the broker keeps them (not the client, which
// keeps only the current message), they are invisible to a second operation
// running at the same time, and an operation must finish within the broker's
// consumer_timeout (30 minutes by default) or the broker closes its channel
// and returns the messages itself; the operation then fails, having acted on
// the messages it acked. One basic.get per message also makes an operation
// take about a network round trip per message. On a quorum parking queue
// each visit raises a message's x-delivery-count, which the topology's
// delivery limit never acts on.
//
// If an operation fails or ctx is cancelled, it stops at the message in hand
// and puts back everything it has not acted on; the [Report] it returns says
// what it did. A failure or a cancellation while a copy is on its way (after
// the publish, before the ack of the original) can leave a message in both
// places, never in neither.
//
// ctx is checked before each message and bounds the wait for each confirm;
// a basic.get in progress is not interrupted.
package parkinglot
