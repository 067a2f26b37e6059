package dlxretry

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// QueueType selects the kind of queue a [Topology] declares.
type QueueType string

// Queue types.
const (
	// Classic queues: dead-lettering is at-most-once.
	Classic QueueType = "classic"
	// Quorum queues: replicated, with at-least-once dead-lettering.
	Quorum QueueType = "quorum"
)

// neverDeliveryLimit is the quorum x-delivery-limit the topology sets: a
// positive value so large that it means "never" on every broker version (on
// 3.x -1 drops a message on its first return; 4.x defaults to 20).
const neverDeliveryLimit = 1 << 30

// maxDelay is the longest tier delay: x-message-ttl is a 32-bit millisecond count.
const maxTierDelay = time.Duration(1<<31-1) * time.Millisecond

// Binding binds the work queue to an exchange declared by someone else.
type Binding struct {
	Exchange string
	Key      string
}

// Topology describes a work queue and its broker-routed retry path:
//
//	Queue            the work queue; dead-letters to Queue.retry
//	Queue.retry      direct exchange; tier key i routes to tier i+1,
//	                 anything else (a first failure) to its alternate
//	                 exchange Queue.retry.first, which feeds tier 1 of
//	                 the active schedule through Queue.retry.first.0
//	                 or Queue.retry.first.1
//	tier queues      one per delay, named Queue.retry.<i>.<delay>.<h>
//	                 (h hashes the delays from i to the last), with
//	                 queue TTL; they dead-letter to Queue.requeue
//	Queue.requeue    direct exchange that routes tier keys to Queue only
//	Queue.parking    exchange and queue for messages that will not succeed
//	Queue.retry.schedules, Queue.retry.schedules.count
//	                 queues that record the schedules declared
//
// A Topology is plain data; declare it with [Topology.Declare]. The zero value
// is not valid: Queue, Delays and MaxAttempts must be set. Type defaults to
// [Classic]; Exchange, Bindings and BindingKeys are optional. Delays and
// MaxAttempts may change from one deploy to the next: see
// [Topology.Declare] and [Topology.RetireTiers].
type Topology struct {
	// Queue is the work queue's name.
	Queue string
	// Delays is the retry schedule: Delays[0] is the wait after the first
	// failure, Delays[1] after the second, and the last one repeats. Each is a
	// whole number of milliseconds, at least 1ms.
	Delays []time.Duration
	// MaxAttempts is how many deliveries a message gets: once it has failed
	// MaxAttempts times it is parked. At least 1.
	MaxAttempts int
	// Type is Classic (the default when empty) or Quorum. Quorum queues get
	// at-least-once dead-lettering (x-dead-letter-strategy=at-least-once with
	// x-overflow=reject-publish) and a delivery limit that never triggers.
	Type QueueType
	// Exchange, when set, is a work exchange the topology owns: Declare
	// declares it (durable, of ExchangeKind) and binds Queue to it with each
	// of BindingKeys.
	Exchange string
	// ExchangeKind is the kind of Exchange; "topic" when empty.
	ExchangeKind string
	// BindingKeys bind Queue to Exchange; {"#"} when empty.
	BindingKeys []string
	// Bindings bind Queue to exchanges the user declares.
	Bindings []Binding
	// DeadLetterByPolicy, when true, leaves the dead-lettering of the work
	// and tier queues to RabbitMQ policies: Declare gives them none of the
	// arguments x-dead-letter-exchange, x-dead-letter-routing-key,
	// x-message-ttl, x-dead-letter-strategy and x-overflow, and
	// [Topology.Policies] returns the policies that set the same values.
	// Apply them before consumers start: until its policy applies, the work
	// queue drops the messages its consumer rejects instead of retrying
	// them. The default, false, declares the arguments. Changing it for
	// queues that exist makes Declare fail with a *[DeclareError] (the
	// broker compares arguments on re-declare).
	DeadLetterByPolicy bool
}

// RetryExchange is the name of the exchange Queue dead-letters into.
func (t Topology) RetryExchange() string { return t.Queue + ".retry" }

// FirstRetryExchange is the retry exchange's alternate exchange, which feeds
// tier 1 of the active schedule (through one of two exchanges of its own,
// Queue.retry.first.0 and Queue.retry.first.1; see [Topology.Declare]).
func (t Topology) FirstRetryExchange() string { return t.Queue + ".retry.first" }

// firstSlot names the exchange an activation with sequence number seq binds
// its tier 1 to: slot 0 is bound to the first-retry exchange and has slot 1
// as its alternate exchange, so slot 0's bindings take first failures when
// it has any, and slot 1's otherwise.
func (t Topology) firstSlot(seq int64) string {
	return t.FirstRetryExchange() + "." + strconv.FormatInt(seq%2, 10)
}

// RequeueExchange is where tier queues dead-letter to; it routes to Queue only.
func (t Topology) RequeueExchange() string { return t.Queue + ".requeue" }

// ParkingExchange is the exchange parked messages are published to.
func (t Topology) ParkingExchange() string { return t.Queue + ".parking" }

// ParkingQueue is the queue parked messages wait in.
func (t Topology) ParkingQueue() string { return t.Queue + ".parking" }

// Tiers is the number of tier queues: len(Delays).
func (t Topology) Tiers() int { return len(t.Delays) }

// TierQueue names tier i (1-based): Queue.retry.<i>.<delay>.<rest>, where
// rest is [Topology.TierKey]'s hash of the delays from tier i to the last.
// The name fixes every argument of the queue, so a changed schedule declares
// new queues rather than clashing with the old ones. Like [Topology.Delay],
// it takes i below 1 as 1 and above Tiers as the last tier; it is "" when
// there are no Delays.
func (t Topology) TierQueue(i int) string {
	if len(t.Delays) == 0 {
		return ""
	}
	i = t.clampTier(i)
	return t.Queue + ".retry." + strconv.Itoa(i) + "." + t.Delays[i-1].String() + "." + t.restHash(i)
}

// TierKey is the routing key a message carries after leaving tier i
// (1-based), Queue.tier.<i>.<rest>; it is what a handler sees as the routing
// key of a retry. rest, eight hex digits, hashes the delays from tier i to
// the last, which decide where the message goes next: a key names one path
// whatever schedules were declared before, so a changed schedule never
// routes a retry into two tiers. It takes i as [Topology.TierQueue] does.
func (t Topology) TierKey(i int) string {
	if len(t.Delays) == 0 {
		return ""
	}
	i = t.clampTier(i)
	return t.Queue + ".tier." + strconv.Itoa(i) + "." + t.restHash(i)
}

// clampTier brings a tier number into 1..Tiers.
func (t Topology) clampTier(i int) int { return min(max(i, 1), len(t.Delays)) }

// restHash identifies the rest of the schedule from tier i on.
func (t Topology) restHash(i int) string { return delaysHash(t.Delays[i-1:]) }

// delaysHash is eight hex digits of the SHA-256 of the delays in milliseconds.
func delaysHash(delays []time.Duration) string {
	h := sha256.New()
	for _, d := range delays {
		h.Write(strconv.AppendInt(nil, d.Milliseconds(), 10))
		h.Write([]byte{','})
	}
	return hex.EncodeToString(h.Sum(nil)[:4])
}

// Delay is the wait after the n-th failure (1-based): the last delay repeats.
func (t Topology) Delay(failures int) time.Duration { return t.Delays[t.tierFor(failures)-1] }

// tierFor is the tier a message enters after its n-th failure.
func (t Topology) tierFor(failures int) int {
	return max(1, min(failures, len(t.Delays)))
}

// Validate reports the first invalid field as a *[ConfigError].
func (t Topology) Validate() error {
	if err := validName("Topology.Queue", t.Queue); err != nil {
		return err
	}
	if len(t.Delays) == 0 {
		return invalid("Topology.Delays", "at least one delay is required")
	}
	for i, d := range t.Delays {
		if err := validDelay(i, d); err != nil {
			return err
		}
	}
	if t.MaxAttempts < 1 {
		return invalid("Topology.MaxAttempts", "must be at least 1, got %d", t.MaxAttempts)
	}
	if t.Type != "" && t.Type != Classic && t.Type != Quorum {
		return invalid("Topology.Type", "must be %q or %q, got %q", Classic, Quorum, t.Type)
	}
	return t.validateBindings()
}

func validName(field, name string) error {
	if name == "" {
		return invalid(field, "must not be empty")
	}
	// The longest derived name adds ".retry.schedules.count" or a tier
	// suffix (at most 40 bytes); AMQP names are at most 255 bytes.
	if len(name) > 200 {
		return invalid(field, "must be at most 200 bytes, got %d", len(name))
	}
	if len(name) >= 4 && name[:4] == "amq." {
		return invalid(field, "must not start with the reserved prefix \"amq.\"")
	}
	return nil
}

func validDelay(i int, d time.Duration) error {
	field := "Topology.Delays[" + strconv.Itoa(i) + "]"
	switch {
	case d < time.Millisecond:
		return invalid(field, "must be at least 1ms, got %v", d)
	case d%time.Millisecond != 0:
		return invalid(field, "must be a whole number of milliseconds, got %v", d)
	case d > maxTierDelay:
		return invalid(field, "must be at most %v, got %v", maxTierDelay, d)
	}
	return nil
}

func (t Topology) validateBindings() error {
	if t.Exchange == "" {
		if t.ExchangeKind != "" || len(t.BindingKeys) > 0 {
			return invalid("Topology.Exchange", "must be set when ExchangeKind or BindingKeys are")
		}
	} else if err := validName("Topology.Exchange", t.Exchange); err != nil {
		return err
	} else if t.ownExchange(t.Exchange) {
		return invalid("Topology.Exchange", "%q is one of the topology's own exchanges", t.Exchange)
	}
	switch t.ExchangeKind {
	case "", amqp.ExchangeDirect, amqp.ExchangeTopic, amqp.ExchangeFanout, amqp.ExchangeHeaders:
	default:
		return invalid("Topology.ExchangeKind", "must be direct, topic, fanout or headers, got %q", t.ExchangeKind)
	}
	for i, b := range t.Bindings {
		field := "Topology.Bindings[" + strconv.Itoa(i) + "].Exchange"
		if b.Exchange == "" {
			return invalid(field, "must not be empty (the default exchange takes no bindings)")
		}
		if t.ownExchange(b.Exchange) {
			return invalid(field, "%q is one of the topology's own exchanges", b.Exchange)
		}
	}
	return nil
}

func (t Topology) ownExchange(name string) bool {
	switch name {
	case t.RetryExchange(), t.FirstRetryExchange(), t.firstSlot(0), t.firstSlot(1), t.RequeueExchange(), t.ParkingExchange():
		return true
	}
	return false
}

// workArgs: the work queue dead-letters into the retry exchange keeping the
// message's routing key (no x-dead-letter-routing-key), so a first failure
// falls through to the alternate exchange and later ones follow tier keys.
// The dead-lettering comes from workDefinition (policy.go).
func (t Topology) workArgs() amqp.Table {
	args := t.deadLetterArgs(t.workDefinition())
	if t.Type == Quorum {
		args["x-queue-type"] = string(Quorum)
		args["x-delivery-limit"] = neverDeliveryLimit
	}
	return args
}

func (t Topology) tierArgs(i int) amqp.Table {
	args := t.deadLetterArgs(t.tierDefinition(i))
	if t.Type == Quorum {
		args["x-queue-type"] = string(Quorum)
	}
	return args
}

// plainArgs are the arguments of the queues that neither expire nor
// dead-letter: the parking queue and the schedule records' queues.
func (t Topology) plainArgs() amqp.Table {
	if t.Type != Quorum {
		return nil
	}
	return amqp.Table{"x-queue-type": string(Quorum), "x-delivery-limit": neverDeliveryLimit}
}

// workDefinition is the work queue's dead-lettering, in policy keys: into
// the retry exchange, keeping the message's routing key.
func (t Topology) workDefinition() map[string]any {
	return t.withQuorumDeadLettering(map[string]any{
		"dead-letter-exchange": t.RetryExchange(),
	})
}

// tierDefinition is tier i's TTL and dead-lettering, in policy keys.
func (t Topology) tierDefinition(i int) map[string]any {
	return t.withQuorumDeadLettering(map[string]any{
		"message-ttl":             t.Delays[i-1].Milliseconds(),
		"dead-letter-exchange":    t.RequeueExchange(),
		"dead-letter-routing-key": t.TierKey(i),
	})
}

// withQuorumDeadLettering adds at-least-once dead-lettering for quorum
// queues; it needs overflow reject-publish, or it silently falls back to
// at-most-once.
func (t Topology) withQuorumDeadLettering(def map[string]any) map[string]any {
	if t.Type == Quorum {
		def["dead-letter-strategy"] = "at-least-once"
		def["overflow"] = "reject-publish"
	}
	return def
}

// deadLetterArgs turns a definition into queue arguments ("x-" and the
// policy key), or into none when policies carry it.
func (t Topology) deadLetterArgs(def map[string]any) amqp.Table {
	args := amqp.Table{}
	if t.DeadLetterByPolicy {
		return args
	}
	for k, v := range def {
		args["x-"+k] = v
	}
	return args
}

func (t Topology) schedulesQueue() string { return t.Queue + ".retry.schedules" }

func (t Topology) scheduleCountQueue() string { return t.Queue + ".retry.schedules.count" }

// schedule identifies t's schedule.
func (t Topology) schedule() string { return delaysHash(t.Delays) }

// withDelays is t with another schedule.
func (t Topology) withDelays(delays []time.Duration) Topology {
	t.Delays = delays
	return t
}
