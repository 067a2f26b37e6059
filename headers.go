package dlxretry

// Headers the library writes. Parking writes most of them on a parked
// message, which keeps its own headers, x-death included, beside them,
// unless the parked copy would not fit in a frame (see [HeaderTrimmed]).
// [Delivery.OriginalRoutingKey] and [Delivery.OriginalExchange] read the
// original key and exchange back from a replayed message. Any publisher can
// set them too: the library reads them as untrusted input.
const (
	HeaderQueue              = "x-dlxretry-queue"                // the work queue it failed in
	HeaderError              = "x-dlxretry-error"                // the last error's text, bounded in length
	HeaderAttempts           = "x-dlxretry-attempts"             // deliveries it had, as int64
	HeaderParkedAt           = "x-dlxretry-parked-at"            // when it was parked, an AMQP timestamp
	HeaderOriginalExchange   = "x-dlxretry-original-exchange"    // the exchange it was first published to
	HeaderOriginalRoutingKey = "x-dlxretry-original-routing-key" // the key it was first published with
	HeaderPermanent          = "x-dlxretry-permanent"            // true if the handler said Permanent
	HeaderStack              = "x-dlxretry-stack"                // a panicking handler's stack, bounded in length
	// HeaderUnreadableDeaths holds, as text, an x-death header the broker
	// cannot have written (see [ErrUnreadableHistory]); the parked copy has
	// no x-death.
	HeaderUnreadableDeaths = "x-dlxretry-unreadable-x-death"
	// HeaderTrimmed lists, comma-separated, the headers left off the parked
	// copy so that it fits in one frame.
	HeaderTrimmed = "x-dlxretry-trimmed"
	// HeaderUncountedFailure, 1, marks a message the library itself sent to
	// tier 1: the broker recorded no rejection for that failure.
	HeaderUncountedFailure = "x-dlxretry-uncounted-failure"
)
