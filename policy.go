package dlxretry

import (
	"regexp"
)

// DefaultPolicyPriority is the priority of the policies [Topology.Policies]
// returns. A queue has one effective policy, the matching one with the
// highest priority, so it must be above that of any other policy whose
// pattern matches the topology's queues (a team's catch-all ".*", say).
const DefaultPolicyPriority = 100

// Policy is a RabbitMQ policy that sets the dead-lettering of one queue of a
// [Topology], for teams that manage dead-lettering by policy rather than by
// queue arguments (see [Topology].DeadLetterByPolicy). Its zero value is not
// useful; get policies from [Topology.Policies]. It is plain data: change
// Priority, or add keys to Definition, before applying it.
//
// A queue has only one effective policy: one of these replaces any other
// policy that matched the queue (its ha-mode or max-length, say), so add
// such keys to Definition to keep them. Where a queue argument and a policy
// set the same key, the argument wins for the dead-letter exchange and
// routing key, the lower value for limits such as message-ttl, and on quorum
// queues the policy for overflow. A policy set after its queue was declared
// takes effect a moment later; one set before is in effect when the queue is
// declared.
//
// Encoded with encoding/json, a Policy is the body of the management HTTP
// API's PUT on [Policy.APIPath], and an entry of the "policies" list of a
// definitions file once "vhost" is added.
type Policy struct {
	// Name is "dlxretry." followed by the queue's name.
	Name string `json:"name"`
	// Pattern matches the queue's name and nothing else: ^name$ with the
	// regular expression's metacharacters escaped.
	Pattern string `json:"pattern"`
	// ApplyTo is "queues".
	ApplyTo  string `json:"apply-to"`
	Priority int    `json:"priority"`
	// Definition holds policy keys such as "dead-letter-exchange",
	// "dead-letter-routing-key" and "message-ttl" (an int64 of
	// milliseconds); quorum topologies add "dead-letter-strategy" and
	// "overflow".
	Definition map[string]any `json:"definition"`
}

// Policies returns the policies that give the work queue and each tier queue
// the dead-lettering that Declare sets as queue arguments when
// DeadLetterByPolicy is false: work queue first, then tiers 1 … K. The
// parking queue needs none. Each tier needs a policy of its own, since its
// TTL and dead-letter routing key are its own. It reports an invalid
// topology as Validate does.
//
// After a change of Delays, apply the new schedule's policies before it is
// first declared, and keep the old ones until [Topology.RetireTiers] has
// deleted the old tiers: a tier without its policy keeps its messages.
//
// What stays a queue argument in either mode: x-queue-type, the work
// queue's x-delivery-limit (quorum queues: a limit so large that it never
// applies, which must hold before any policy does) and the retry exchange's
// alternate-exchange. Policies are not removed by [Topology.Delete]; clear
// them with rabbitmqctl clear_policy ([Policy.ClearPolicyArgs]) or the
// management API's DELETE on [Policy.APIPath].
func (t Topology) Policies() ([]Policy, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	policies := []Policy{queuePolicy(t.Queue, t.workDefinition())}
	for i := 1; i <= t.Tiers(); i++ {
		policies = append(policies, queuePolicy(t.TierQueue(i), t.tierDefinition(i)))
	}
	return policies, nil
}

func queuePolicy(queue string, def map[string]any) Policy {
	return Policy{
		Name:       "dlxretry." + queue,
		Pattern:    "^" + regexp.QuoteMeta(queue) + "$",
		ApplyTo:    "queues",
		Priority:   DefaultPolicyPriority,
		Definition: def,
	}
}
