package dlxprom

import (
	"github.com/prometheus/client_golang/prometheus"
)

const namespace = "dlxretry"

// Collector is a prometheus.Collector of what dlxretry's [Collector.Hooks]
// report, and of the depth of parking queues ([WithParkingDepth]). Register
// it once, with prometheus.MustRegister(c) or a registry of your own, and
// give its hooks to each Consumer, Publisher and Conn. Create it with [New];
// the zero value is not usable. It is safe for concurrent use.
//
// Its series, all prefixed dlxretry_, with labels whose values come from
// your topology and code (queue and exchange names, the delays of the
// schedule), never from message headers:
//
//	deliveries_total{queue,outcome}          counter: outcome ack, retry, park or release
//	retries_total{queue,tier,delay}          counter: tier "1"…, delay as Go prints it ("50ms", "1m0s")
//	parks_total{queue,reason}                counter: reason permanent, exhausted or unreadable
//	park_failures_total{queue}               counter: parkings that failed (the message was retried instead)
//	handler_duration_seconds{queue,outcome}  histogram: how long the handler ran
//	handlers_in_flight{queue}                gauge: handlers running now
//	publishes_total{exchange,result}         counter: result confirmed, unroutable, nacked, unconfirmed, refused, closed, timeout, canceled or error
//	publish_duration_seconds{exchange}       histogram: Publish calls until confirmed or failed
//	connections_up                           gauge: clients (see Hooks) whose connection or session is up
//	reconnects_total                         counter: connections or sessions up again after an earlier one
//	connection_failures_total                counter: failed connection attempts and ended sessions
//	parking_queue_messages{queue}            gauge: messages ready in the queue's parking queue, read at scrape time
//	parking_queue_read_errors_total{queue}   counter: scrapes that could not read it
type Collector struct {
	deliveries   *prometheus.CounterVec
	retries      *prometheus.CounterVec
	parks        *prometheus.CounterVec
	parkFailures *prometheus.CounterVec
	handler      *prometheus.HistogramVec
	inFlight     *prometheus.GaugeVec
	publishes    *prometheus.CounterVec
	publish      *prometheus.HistogramVec
	connsUp      prometheus.Gauge
	reconnects   prometheus.Counter
	connFailures prometheus.Counter
	depth        *depthReader // nil without WithParkingDepth
}

// New checks the options and returns a Collector. It does not connect.
func New(opts ...Option) (*Collector, error) {
	o := defaultOptions()
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	if o.err != nil {
		return nil, o.err
	}
	c := &Collector{
		deliveries:   counterVec("deliveries_total", "Deliveries handled, by outcome: ack, retry, park, or release (left for the broker to deliver again).", "queue", "outcome"),
		retries:      counterVec("retries_total", "Failed deliveries sent to a retry tier, by tier and its delay.", "queue", "tier", "delay"),
		parks:        counterVec("parks_total", "Messages parked, by reason: permanent (the handler said so), exhausted (the last attempt failed) or unreadable (an x-death header that cannot be trusted).", "queue", "reason"),
		parkFailures: counterVec("park_failures_total", "Parkings that failed; the message went round the retry path again.", "queue"),
		handler: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "handler_duration_seconds",
			Help:    "How long the handler ran, by outcome.",
			Buckets: o.handlerBuckets,
		}, []string{"queue", "outcome"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "handlers_in_flight",
			Help: "Deliveries being handled now: handler running, or outcome not yet settled.",
		}, []string{"queue"}),
		publishes: counterVec("publishes_total", "Publisher.Publish calls, by result: confirmed, unroutable, nacked, unconfirmed, refused (by the broker), closed, timeout, canceled or error.", "exchange", "result"),
		publish: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "publish_duration_seconds",
			Help:    "How long Publisher.Publish took, until the broker confirmed the message or it failed.",
			Buckets: o.publishBuckets,
		}, []string{"exchange"}),
		connsUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "connections_up",
			Help: "Clients (one per Hooks call: a Conn, a Publisher's connection or a Consumer's session) that are connected.",
		}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "reconnects_total",
			Help: "Connections or Consumer sessions that came up again after an earlier one.",
		}),
		connFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "connection_failures_total",
			Help: "Failed connection attempts and ended Consumer sessions.",
		}),
	}
	if o.depthConn != nil {
		c.depth = newDepthReader(o.depthConn, o.depthQueues, o.depthTimeout)
	}
	return c, nil
}

func counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help}, labels)
}

func (c *Collector) collectors() []prometheus.Collector {
	return []prometheus.Collector{c.deliveries, c.retries, c.parks, c.parkFailures, c.handler, c.inFlight,
		c.publishes, c.publish, c.connsUp, c.reconnects, c.connFailures}
}

// Describe sends the descriptions of every series, for prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c.collectors() {
		m.Describe(ch)
	}
	if c.depth != nil {
		c.depth.describe(ch)
	}
}

// Collect sends the current values, for prometheus.Collector. With
// [WithParkingDepth] it reads the parking queues' depth first, within
// [WithParkingDepthTimeout].
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range c.collectors() {
		m.Collect(ch)
	}
	if c.depth != nil {
		c.depth.collect(ch)
	}
}
