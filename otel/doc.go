// Package dlxotel traces messages through dlxretry's retry path with
// OpenTelemetry: one trace shows a message's publish, each attempt to
// handle it, the delays between them, and its parking.
//
// It is a module of its own (github.com/dlxretry/dlxretry/otel), so that the
// library itself does not depend on OpenTelemetry.
//
// On the publishing side, [Publisher] wraps a [dlxretry.Publisher]: each
// Publish runs in a publish span whose context goes into the message's
// headers as W3C Trace Context (traceparent, tracestate). [Inject] writes
// the context alone, for messages published another way.
//
// On the consuming side, [Hooks] returns [dlxretry.Hooks] that run each
// delivery in a process span, a child of the publish span, ended when the
// library has settled the delivery, with the attempt, the retry tier and
// delay the delivery came from, and the outcome: ack, retry, park or
// release. [Merge] combines them with other hooks.
//
// RabbitMQ keeps a message's headers when it dead-letters it, and dlxretry
// keeps them when it parks it and when the parking lot replays it, so the
// context the publisher wrote comes back with every attempt:
//
//	publish orders                         producer   ──────
//	  process orders  attempt 1  retry     consumer     ──
//	  process orders  attempt 2  retry     consumer          ──   (tier 1, 1s later)
//	  process orders  attempt 3  park      consumer                   ──  (tier 2, 5s later)
//
// Why a child and not only a link: the messaging semantic conventions say a
// process span SHOULD link to the message's creation context and leave its
// parent to the instrumentation. A retried message is handled several times,
// minutes apart; as children of the publish span the attempts appear in one
// trace, in order, which is what a person following one message wants. Each
// process span also carries the link. [WithLinkOnly] makes each attempt a
// trace of its own instead, joined by the link, for systems where one
// message's life is too long for one trace.
//
// Attributes follow the OpenTelemetry semantic conventions for messaging
// (v1.41.0, [go.opentelemetry.io/otel/semconv/v1.41.0]); those of dlxretry
// are named by the constants [AttemptKey] and the ones after it.
package dlxotel
