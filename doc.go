// Package dlxretry gives RabbitMQ consumers a retry path that the broker
// routes: a message whose handler fails waits in a delay queue and comes back
// to its work queue later, and after enough failures it is parked in a queue
// of its own where a person or a script can look at it, replay it or drop it.
// There is no hot requeue loop, no sleeping in the consumer, and no publish by
// the client on the retry path: each retry is one basic.nack, and the broker
// moves the message and counts the failures.
//
// # Topology
//
// A [Topology] describes a work queue Q and its delay schedule d1 … dK
// ([Topology].Delays; the last delay repeats). [Topology.Declare] declares:
//
//	        publisher (key "order.created")
//	                     |
//	                     v
//	  your exchange, or Topology.Exchange
//	                     |
//	                     v
//	+-------------> Q (work queue) ---- handler fails: basic.nack(requeue=false),
//	|                    |              the broker dead-letters the message
//	|                    v
//	|             Q.retry (direct) ---- key Q.tier.i.<h> -------------+
//	|                    |                                            |
//	|        any other key (a first failure)                          |
//	|                    v                                            |
//	|   Q.retry.first (fanout; alternate exchange of Q.retry)         |
//	|                    v                                            |
//	|   Q.retry.first.0 (fanout), or while it has no binding          |
//	|   Q.retry.first.1 (fanout; alternate exchange of .0)            v
//	|                    |                        tier i+1 (the last tier: itself)
//	|                    v                                            |
//	|    tier 1 of the active schedule                                |
//	|                    |                                            |
//	|    tier queues Q.retry.<i>.<delay>.<h>: x-message-ttl = di, no consumers;
//	|    when it expires the broker dead-letters with key Q.tier.i.<h>
//	|                    |                                            |
//	|                    v                                            |
//	+-- keys Q.tier.* -- Q.requeue (direct) <-------------------------+
//
//	consumer --- MaxAttempts failures, or Permanent ---> Q.parking (fanout) ---> Q.parking (queue)
//	             (published with confirms, then the original is acked)
//
//	Q.retry.schedules, Q.retry.schedules.count: the schedules declared (see below)
//
// Q has x-dead-letter-exchange = Q.retry and no dead-letter routing key, so a
// rejected message keeps the key it has. The exchanges are declared before
// the queues that dead-letter into them. <h> is eight hex digits that hash
// the delays from tier i to the last: the tier's delay and where its messages
// go next. A declaration that clashes with what the broker has is reported
// as a *[DeclareError] naming the entity and the argument. Declare is
// idempotent: [Consumer.Run] calls it after every reconnect.
// [Topology.Delete] removes it all.
//
// # Changing the schedule
//
// Delays may change between deploys; so may MaxAttempts, which only decides
// when a message is parked. A tier's name and key fix its arguments and its
// next tier, so a key never routes to two tiers: messages waiting in the
// old tiers when the schedule changes finish on the old path, once each,
// and new first failures take the new one.
//
// Declare records each schedule in the queue Q.retry.schedules, which
// nothing consumes (one JSON message per event; Q.retry.schedules.count
// lets a reader that met another tell that it has not seen them all). The
// schedule declared for the first time most recently is the active one, and
// only its tier 1 takes first failures. Each activation binds tier 1 to
// Q.retry.first.0 or Q.retry.first.1 in turn, so that a switch is a single
// binding change: no first failure is copied or lost. Declaring a schedule
// declared before does not make it active again: during a rolling deploy,
// consumers still running the old schedule send their first failures into
// the new one. Declares of two different new schedules at the same moment
// may copy a few first failures while they race, and end with one active.
//
// The old tiers stay until [Topology.RetireTiers] deletes them as they
// empty. To go back to an older schedule, deploy it and call RetireTiers with
// it: that makes it the active schedule again and retires the newer one.
//
// # How a failure travels
//
//  1. The handler fails. The consumer nacks without requeue. The broker
//     dead-letters the message to Q.retry with the routing key it has.
//  2. First failure: the key is the publisher's own. Q.retry has no binding
//     for it, so its alternate exchange Q.retry.first sends it to tier 1.
//  3. The tier's queue TTL expires; the broker dead-letters the message to
//     Q.requeue with the tier's key ([Topology.TierKey]), which routes only to
//     Q, never to other queues bound to the same exchange.
//  4. Next failure: the key is now the tier key; Q.retry routes it to the next
//     tier. The last tier's key loops on the last tier.
//  5. Once a message has failed [Topology].MaxAttempts times, or its handler
//     returned a [Permanent] error, the consumer publishes a copy to
//     Q.parking with publisher confirms and acks the original only after the
//     confirm: a crash in between leaves a duplicate in parking, never a loss.
//
// Because every message in a tier has the same delay, a short retry never
// waits behind a long one. Every message in the cycle re-enters it by a
// rejection, which RabbitMQ requires of dead-letter cycles; Q itself must
// not dead-letter for any other reason (no TTL, no length limit on it).
//
// # Handlers
//
// A [Handler] returns the outcome of a delivery:
//
//   - nil: the delivery is acked.
//   - an error: it is retried after the next delay of the schedule.
//   - an error wrapped with [Permanent]: it is parked now.
//
// A handler that panics has failed with a *[PanicError]; one that runs past
// [WithHandlerTimeout] sees its context cancelled, and what it returns still
// decides. A panic is logged at Error with its stack, and the parked copy
// carries the stack in [HeaderStack]. The [Delivery] a handler gets cannot be
// acked, nacked or rejected by it (those return [ErrSettledByLibrary]).
//
// [Delivery].Attempt is 1 on a first delivery, whatever x-death header its
// publisher wrote. On a delivery that came back through the retry path (its
// exchange is Q.requeue) it is one more than the number of failures so far,
// which the broker counts: the count of the x-death entry for (Q, rejected)
// ([Deaths.Rejections]). On a retry the delivery's RoutingKey is the tier
// key; [Delivery.OriginalRoutingKey] and [Delivery.OriginalExchange] give
// where the message was first published.
//
// # Hostile headers
//
// Any publisher can set x-death, x-delivery-count and the library's own
// headers, with any AMQP type. An x-death the broker cannot have written (not
// an array of tables, a count that is not a positive integer, more rejections
// than MaxAttempts allows by far) fails with [ErrUnreadableHistory]: the
// message is parked at once, without running the handler and without being
// handed to the broker's dead-lettering (RabbitMQ 3.x crashes the queue on
// some of them), with the header moved aside under [HeaderUnreadableDeaths].
// A first delivery carrying a well-formed x-death entry for Q, or a routing
// key in the tier keys' namespace, would skip or shorten the schedule if
// nacked; its first failure is instead published to tier 1 by the consumer
// (confirmed, then acked), without that x-death and marked with
// [HeaderUncountedFailure].
//
// # Redeliveries
//
// A message whose handler crashes the process, or whose connection dies, is
// redelivered by the broker without a rejection. Quorum queues count these
// returns in the x-delivery-count header; when a redelivered message has come
// back more than [WithRedeliveryLimit] times in its current attempt (5 by
// default; on RabbitMQ 4.x, whose count can span attempts, more than
// (limit+1) × attempt − 1 times in all) the consumer records the failure
// [ErrRedeliveryLimit] without
// running the handler again and nacks the message, so a poison message enters
// the retry cycle, and eventually parking, instead of crashing consumers
// forever. The topology gives quorum queues an x-delivery-limit so large that
// the broker never applies it, because the broker's own limit would
// dead-letter without a rejection. Classic queues do not count redeliveries.
//
// # Running
//
// [NewConsumer] checks a topology, a handler and [Option] values; [Consumer.Run]
// connects, declares, consumes with the configured concurrency and prefetch,
// and returns after its context is cancelled and the handlers in flight have
// finished (or [WithShutdownTimeout] passed). When a connection or channel
// fails, or the broker cancels the consumer, Run reconnects with capped
// exponential backoff and jitter, trying the brokers of [WithURLs] in turn,
// and declares again. Users with their own consume loop use [Wrap], which
// turns a handler into a function that settles each delivery the same way.
//
// A [Publisher] publishes persistent messages with publisher confirms and
// mandatory routing; [Publisher.Publish] returns nil only once the broker has
// confirmed a message that reached a queue, pipelines the confirms of
// concurrent callers, reconnects when needed, and waits within its context
// while the broker blocks publishing.
//
// The Consumer and the Publisher dial with amqp091-go's Config.Recovery off
// and supervise their own connections. [Wrap] may run on a connection with
// Config.Recovery on: once it sees its channel recovered it settles nothing
// more on it (a recovered channel numbers deliveries anew, so an old delivery
// tag may name another message) and closes it; the broker redelivers.
//
// Parked messages keep their body, headers and most properties (persistent,
// without an expiration), and get the
// headers [HeaderQueue], [HeaderError], [HeaderAttempts], [HeaderParkedAt],
// [HeaderOriginalExchange], [HeaderOriginalRoutingKey] and [HeaderPermanent].
// A parked copy always fits in one frame: if the message's headers and these
// would not, the stack, most of the error text, the death history and then
// the message's largest headers are left off, and [HeaderTrimmed] names them.
//
// # Concurrency
//
// A [Topology] is plain data and may be shared. A [Consumer] is run once, by
// one call of [Consumer.Run]. With [WithConcurrency] above 1 the handler and
// the [Hooks] are called from several goroutines at once, so they must be safe
// for concurrent use. The function returned by [Wrap] is safe for concurrent
// use.
//
// Nothing is logged unless a *slog.Logger is given with [WithLogger]; [Hooks]
// report each ack, retry, park, publish, connect and disconnect, for metrics.
// A [Publisher] is safe for concurrent use.
//
// # Broker versions
//
// RabbitMQ 3.13.0–3.13.2 can drop dead-lettered messages in cycles like this
// one; 3.13.3 and later only keep them with the feature flag
// message_containers_deaths_v2 enabled. The consumer logs a warning when it
// connects to a 3.13 broker. 3.10–3.12 and 4.x work as described.
package dlxretry
