package dlxotel

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.41.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/dlxretry/dlxretry"
	"github.com/dlxretry/dlxretry/parkinglot"
)

// Attributes of a process span beside the messaging semantic conventions'.
const (
	// AttemptKey is the delivery's attempt: 1 for a first delivery.
	AttemptKey = attribute.Key("dlxretry.attempt")
	// FromTierKey is the retry tier (1-based) the delivery waited in before
	// this attempt; absent on a first delivery.
	FromTierKey = attribute.Key("dlxretry.from_tier")
	// FromDelayKey is that tier's delay, as a Go duration ("50ms", "1m0s").
	FromDelayKey = attribute.Key("dlxretry.from_delay")
	// ReplaysKey is how many times the message was replayed from the parking
	// lot ([dlxretry.HeaderReplays]); absent when never.
	ReplaysKey = attribute.Key("dlxretry.replays")
	// OutcomeKey is what became of the delivery: ack, retry, park or
	// release.
	OutcomeKey = attribute.Key("dlxretry.outcome")
	// RetryTierKey is the tier a retried delivery waits in next (1-based).
	RetryTierKey = attribute.Key("dlxretry.retry.tier")
	// RetryDelayKey is that tier's delay, as a Go duration.
	RetryDelayKey = attribute.Key("dlxretry.retry.delay")
	// ParkReasonKey is why a delivery was parked: permanent, exhausted or
	// unreadable.
	ParkReasonKey = attribute.Key("dlxretry.park.reason")
	// ParkFailedKey is true on a retry that happened because parking failed.
	ParkFailedKey = attribute.Key("dlxretry.park.failed")
)

// Outcomes, the values of [OutcomeKey].
const (
	OutcomeAck     = "ack"
	OutcomeRetry   = "retry"
	OutcomePark    = "park"
	OutcomeRelease = "release"
)

// spanName is "{operation} {destination}", the operation alone for the
// default exchange.
func spanName(op, exchange string) string {
	if exchange == "" {
		return op
	}
	return op + " " + exchange
}

func publishAttributes(exchange, key string, msg amqp.Publishing) []attribute.KeyValue {
	attrs := []attribute.KeyValue{
		semconv.MessagingSystemRabbitMQ,
		semconv.MessagingOperationTypeSend,
		semconv.MessagingOperationName("publish"),
		semconv.MessagingDestinationName(exchange),
		semconv.MessagingMessageBodySize(len(msg.Body)),
	}
	if key != "" {
		attrs = append(attrs, semconv.MessagingRabbitMQDestinationRoutingKey(key))
	}
	if msg.MessageId != "" {
		attrs = append(attrs, semconv.MessagingMessageID(msg.MessageId))
	}
	if msg.CorrelationId != "" {
		attrs = append(attrs, semconv.MessagingMessageConversationID(msg.CorrelationId))
	}
	return attrs
}

func processAttributes(e dlxretry.DeliveryEvent) []attribute.KeyValue {
	d := e.Delivery
	attrs := []attribute.KeyValue{
		semconv.MessagingSystemRabbitMQ,
		semconv.MessagingOperationTypeProcess,
		semconv.MessagingOperationName("process"),
		semconv.MessagingDestinationName(d.OriginalExchange()),
		semconv.MessagingDestinationSubscriptionName(e.Queue),
		semconv.MessagingRabbitMQMessageDeliveryTag(int(d.DeliveryTag)),
		semconv.MessagingMessageBodySize(len(d.Body)),
		AttemptKey.Int(e.Attempt),
	}
	if k := d.OriginalRoutingKey(); k != "" {
		attrs = append(attrs, semconv.MessagingRabbitMQDestinationRoutingKey(k))
	}
	if d.MessageId != "" {
		attrs = append(attrs, semconv.MessagingMessageID(d.MessageId))
	}
	if d.CorrelationId != "" {
		attrs = append(attrs, semconv.MessagingMessageConversationID(d.CorrelationId))
	}
	if tier, delay, ok := cameFrom(d, e.Queue); ok {
		attrs = append(attrs, FromTierKey.Int(tier), FromDelayKey.String(delay.String()))
	}
	if n, ok := d.Headers[parkinglot.HeaderReplays].(int64); ok && n > 0 {
		attrs = append(attrs, ReplaysKey.Int64(n))
	}
	return attrs
}

// cameFrom reads the tier a retried delivery waited in, and its delay, from
// the latest x-death entry: the tier queue it expired from, named
// Queue.retry.<tier>.<delay>.<hash> (see [dlxretry.Topology.TierQueue]).
// Only a delivery that came back through the topology's requeue exchange
// has one.
func cameFrom(d *dlxretry.Delivery, queue string) (tier int, delay time.Duration, ok bool) {
	if d.Exchange != (dlxretry.Topology{Queue: queue}).RequeueExchange() || len(d.Deaths) == 0 {
		return 0, 0, false
	}
	last := d.Deaths[0] // the broker puts the latest first
	rest, found := strings.CutPrefix(last.Queue, queue+".retry.")
	if !found || last.Reason != dlxretry.ReasonExpired {
		return 0, 0, false
	}
	first, tail, found := strings.Cut(rest, ".")
	end := strings.LastIndexByte(tail, '.')
	if !found || end < 0 {
		return 0, 0, false
	}
	tier, err := strconv.Atoi(first)
	if err != nil || tier < 1 {
		return 0, 0, false
	}
	delay, err = time.ParseDuration(tail[:end])
	if err != nil || delay <= 0 {
		return 0, 0, false
	}
	return tier, delay, true
}

// fail records err on span, with error.type.
func fail(span trace.Span, err error) {
	if err == nil {
		return
	}
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
	span.SetAttributes(semconv.ErrorTypeKey.String(errorType(err)))
}

// errorType is a short, bounded class of err for error.type.
func errorType(err error) string {
	var pe *dlxretry.PanicError
	var perm *dlxretry.PermanentError
	var ae *amqp.Error
	switch {
	case errors.As(err, &pe):
		return "panic"
	case errors.As(err, &perm):
		return "permanent"
	case errors.Is(err, dlxretry.ErrUnroutable):
		return "unroutable"
	case errors.Is(err, dlxretry.ErrNacked):
		return "nacked"
	case errors.Is(err, dlxretry.ErrUnconfirmed):
		return "unconfirmed"
	case errors.Is(err, dlxretry.ErrClosed):
		return "closed"
	case errors.Is(err, dlxretry.ErrRedeliveryLimit):
		return "redelivery_limit"
	case errors.Is(err, dlxretry.ErrUnreadableHistory):
		return "unreadable_history"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.As(err, &ae):
		return "amqp:" + strconv.Itoa(ae.Code)
	}
	return semconv.ErrorTypeOther.Value.AsString()
}
