package dlxretry

import (
	"errors"
	"fmt"
	"regexp"

	amqp "github.com/rabbitmq/amqp091-go"
)

// ErrClosed is returned by what runs on a [Conn] or [Publisher] after its
// Close, and by waits that Close interrupted.
var ErrClosed = errors.New("dlxretry: closed")

// ErrConnectTimeout is wrapped by the *[ConnectError] of a first connection
// that did not come up within [WithConnectTimeout].
var ErrConnectTimeout = errors.New("dlxretry: no connection within the connect timeout")

// ConnectError reports a connection that could not be made and that trying
// again will not make: the broker refused it (credentials, vhost or
// permissions: errors.As with *amqp.Error gives its reply code), or no
// broker answered within [WithConnectTimeout] (errors.Is with
// [ErrConnectTimeout]). It wraps the last attempt's error. Its text never
// shows a password.
//
// RabbitMQ answers bad credentials by closing the connection during the
// login, which a broker going down or a proxy losing its backend at that
// moment also does: such a close is taken for refused credentials only when
// the next attempt, made at once, ends the same way.
type ConnectError struct {
	Broker   string // the URL of the last attempt, password hidden
	Attempts int
	Err      error
}

func (e *ConnectError) Error() string {
	return fmt.Sprintf("dlxretry: connect to %s (%d attempts): %v", e.Broker, e.Attempts, e.Err)
}

func (e *ConnectError) Unwrap() error { return e.Err }

// ErrUnroutable is wrapped by publish errors when the broker returned a
// mandatory message because no queue was bound to take it.
var ErrUnroutable = errors.New("dlxretry: message unroutable")

// ErrUnconfirmed is wrapped by publish errors when the channel or connection
// closed before the broker confirmed the message: it may or may not have
// been routed, and publishing it again may make a duplicate. A publish the
// broker refused, which it did not route, is not ErrUnconfirmed: its error
// wraps the broker's *amqp.Error.
var ErrUnconfirmed = errors.New("dlxretry: channel closed before the broker confirmed the message")

// ErrNacked is wrapped by publish errors when the broker answered a publish
// with a negative confirm: it refused responsibility for the message, and
// publishing it again is the usual answer. A full queue with x-overflow
// reject-publish nacks. In a cluster a nack can be transient: a channel
// opened just after the node leading a queue went down nacks every publish
// until that node returns, while a fresh channel works; the Publisher moves
// to a fresh channel after eight nacks in a row, after a pause.
var ErrNacked = errors.New("dlxretry: message nacked by broker")

// ErrConnectionLost is wrapped by the error of a connection that was up and
// was lost (the broker closed it, its node went down, the network failed):
// the one a [Conn] reports to [Hooks].OnDisconnect, and the one that ends a
// [Consumer]'s session. It wraps the cause too, often an *amqp.Error.
var ErrConnectionLost = errors.New("dlxretry: connection lost")

// ErrConsumerCancelled is why a session ends when the broker cancels the
// consumer, for example because its queue was deleted; [Consumer.Run]
// reconnects and declares the topology again.
var ErrConsumerCancelled = errors.New("dlxretry: the broker cancelled the consumer")

// ErrSettledByLibrary is what [Delivery]'s Ack, Nack and Reject return: the
// library acks, retries or parks the delivery from what the handler returns.
var ErrSettledByLibrary = errors.New("dlxretry: the library settles deliveries; return nil, an error or Permanent(err) instead")

// ErrRedeliveryLimit is the failure recorded, without running the handler,
// for a delivery that came back unacked more times than WithRedeliveryLimit
// allows: its handler keeps crashing the consumer.
var ErrRedeliveryLimit = errors.New("dlxretry: delivery came back unacked too often")

// ErrShutdownTimeout is wrapped by the *[ShutdownError] that [Consumer.Run]
// returns when handlers were still running at the shutdown timeout.
var ErrShutdownTimeout = errors.New("dlxretry: handlers still running at the shutdown timeout")

// ErrUnreadableHistory is the failure recorded, without running the handler,
// for a message whose x-death header the broker cannot have written: an entry
// that is not a table, a count that is not a positive integer, or more
// rejections than the schedule allows. Any publisher can set such a header,
// and handing the message to the broker's dead-lettering could crash the
// queue (RabbitMQ 3.x does arithmetic on the count), so the message is parked
// with the header moved aside under [HeaderUnreadableDeaths].
var ErrUnreadableHistory = errors.New("dlxretry: unreadable x-death header")

// ConfigError reports an invalid [Topology] field or option value.
type ConfigError struct {
	Field   string // for example "Topology.Delays[1]" or "WithPrefetch"
	Problem string
}

func (e *ConfigError) Error() string {
	return "dlxretry: invalid " + e.Field + ": " + e.Problem
}

func invalid(field, format string, args ...any) *ConfigError {
	return &ConfigError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

// DeclareError reports a failed declaration. When an entity exists with other
// arguments (the broker's PRECONDITION_FAILED), Argument names the one that
// differs. It wraps the broker's error, so errors.As with *amqp.Error works.
// The channel the declaration ran on is closed by the broker after such an error.
type DeclareError struct {
	Kind     string // "queue", "exchange" or "binding"
	Name     string
	Argument string // the inequivalent argument, when the broker named one
	Err      error
}

func (e *DeclareError) Error() string {
	if e.Argument != "" {
		return fmt.Sprintf("dlxretry: %s %q exists with a different %s: %v", e.Kind, e.Name, e.Argument, e.Err)
	}
	return fmt.Sprintf("dlxretry: declare %s %q: %v", e.Kind, e.Name, e.Err)
}

func (e *DeclareError) Unwrap() error { return e.Err }

var inequivalentArg = regexp.MustCompile(`inequivalent arg '([^']+)'`)

func declareError(kind, name string, err error) error {
	if err == nil {
		return nil
	}
	de := &DeclareError{Kind: kind, Name: name, Err: err}
	var ae *amqp.Error
	if errors.As(err, &ae) && ae.Code == amqp.PreconditionFailed {
		if m := inequivalentArg.FindStringSubmatch(ae.Reason); m != nil {
			de.Argument = m[1]
		}
	}
	return de
}

// asType finds the first error in err's tree of type T, as errors.As does
// (an error's own As method included), without the allocation errors.As
// makes for its target: isPermanent runs on every failure.
func asType[T error](err error) (T, bool) {
	var zero T
	for err != nil {
		if t, ok := err.(T); ok {
			return t, true
		}
		if x, ok := err.(interface{ As(any) bool }); ok {
			var t T
			if x.As(&t) {
				return t, true
			}
		}
		switch x := err.(type) {
		case interface{ Unwrap() error }:
			err = x.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range x.Unwrap() {
				if t, ok := asType[T](e); ok {
					return t, true
				}
			}
			return zero, false
		default:
			return zero, false
		}
	}
	return zero, false
}
