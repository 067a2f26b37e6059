package dlxotel

import (
	amqp "github.com/rabbitmq/amqp091-go"
)

// headerCarrier reads and writes the trace context in AMQP headers. Headers
// are untrusted: a value that is not a string reads as absent, and the
// propagator checks the format of what it reads.
type headerCarrier amqp.Table

func (c headerCarrier) Get(key string) string {
	v, _ := c[key].(string)
	return v
}

func (c headerCarrier) Set(key, value string) { c[key] = value }

func (c headerCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// cloneHeaders copies h, so that injecting never changes the caller's table.
func cloneHeaders(h amqp.Table) amqp.Table {
	out := make(amqp.Table, len(h)+2)
	for k, v := range h {
		out[k] = v
	}
	return out
}
