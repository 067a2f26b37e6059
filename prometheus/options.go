package dlxprom

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dlxretry/dlxretry"
)

// Option configures a [Collector], given to [New].
type Option func(*options)

type options struct {
	handlerBuckets []float64
	publishBuckets []float64
	depthConn      *dlxretry.Conn
	depthQueues    []string
	depthTimeout   time.Duration
	err            error // the first invalid option
}

func defaultOptions() options {
	return options{
		handlerBuckets: prometheus.DefBuckets,
		publishBuckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		depthTimeout:   2 * time.Second,
	}
}

func (o *options) fail(format string, args ...any) {
	if o.err == nil {
		o.err = fmt.Errorf("dlxprom: "+format, args...)
	}
}

// WithHandlerBuckets sets the buckets, in seconds, of
// dlxretry_handler_duration_seconds. The default is prometheus.DefBuckets,
// 5ms to 10s.
func WithHandlerBuckets(b ...float64) Option {
	return func(o *options) { o.handlerBuckets = checkBuckets(o, "WithHandlerBuckets", b) }
}

// WithPublishBuckets sets the buckets, in seconds, of
// dlxretry_publish_duration_seconds. The default is 1ms to 5s.
func WithPublishBuckets(b ...float64) Option {
	return func(o *options) { o.publishBuckets = checkBuckets(o, "WithPublishBuckets", b) }
}

func checkBuckets(o *options, name string, b []float64) []float64 {
	if len(b) == 0 {
		o.fail("%s: no buckets", name)
	}
	for i := 1; i < len(b); i++ {
		if b[i] <= b[i-1] {
			o.fail("%s: buckets must increase, got %v after %v", name, b[i], b[i-1])
		}
	}
	return b
}

// WithParkingDepth makes the Collector report how many messages wait in the
// parking queue of each of the work queues named (a [dlxretry.Topology]'s
// Queue; the parking queue is [dlxretry.Topology.ParkingQueue]), as
// dlxretry_parking_queue_messages. At each scrape it declares each parking
// queue passively on a channel of conn, which the broker answers with the
// queue's count of ready messages without touching them. The channel stays
// open between scrapes; conn connects when first needed. The default reads
// no depth.
func WithParkingDepth(conn *dlxretry.Conn, queues ...string) Option {
	return func(o *options) {
		if conn == nil {
			o.fail("WithParkingDepth: nil Conn")
		}
		if len(queues) == 0 {
			o.fail("WithParkingDepth: no queue named")
		}
		for _, q := range queues {
			if q == "" {
				o.fail("WithParkingDepth: empty queue name")
			}
		}
		o.depthConn, o.depthQueues = conn, append(o.depthQueues, queues...)
	}
}

// WithParkingDepthTimeout bounds the reading of the parking queues' depth at
// each scrape: connecting if needed, opening a channel and the passive
// declarations. A queue not read in time has no sample in that scrape, and
// its dlxretry_parking_queue_read_errors_total goes up. The default is 2s.
func WithParkingDepthTimeout(d time.Duration) Option {
	return func(o *options) {
		if d <= 0 {
			o.fail("WithParkingDepthTimeout: must be above 0, got %v", d)
		}
		o.depthTimeout = d
	}
}
