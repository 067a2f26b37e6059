package dlxprom

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dlxretry/dlxretry"
)

// depthReader reads the parking queues' depth with passive declarations:
// the broker answers with the ready message count, and no message is read.
type depthReader struct {
	conn    *dlxretry.Conn
	queues  []string // work queues
	timeout time.Duration
	desc    *prometheus.Desc
	errors  *prometheus.CounterVec

	// busy is held by the goroutine reading the depths, which owns ch; a
	// read that overruns its scrape keeps it until the broker answers or
	// the connection dies, and later scrapes wait for it within their own
	// timeout.
	busy chan struct{}
	ch   *amqp.Channel
}

func newDepthReader(conn *dlxretry.Conn, queues []string, timeout time.Duration) *depthReader {
	return &depthReader{
		conn: conn, queues: queues, timeout: timeout,
		desc: prometheus.NewDesc(namespace+"_parking_queue_messages",
			"Messages ready in the parking queue of the work queue the queue label names, read with a passive declaration at scrape time.",
			[]string{"queue"}, nil),
		errors: counterVec("parking_queue_read_errors_total",
			"Scrapes that could not read the depth of the parking queue of the work queue the queue label names in time.", "queue"),
		busy: make(chan struct{}, 1),
	}
}

func (r *depthReader) describe(ch chan<- *prometheus.Desc) {
	ch <- r.desc
	r.errors.Describe(ch)
}

// depth is one queue's answer.
type depth struct {
	queue    string
	messages int
	err      error
}

// collect sends a sample for each parking queue read within the timeout,
// and counts an error for each other one.
func (r *depthReader) collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	answers := make(chan depth, len(r.queues)) // buffered: a late reader never blocks
	select {
	case r.busy <- struct{}{}:
		go r.read(ctx, answers)
	case <-ctx.Done():
	}
	pending := make(map[string]bool, len(r.queues))
	for _, q := range r.queues {
		pending[q] = true
	}
	for len(pending) > 0 && ctx.Err() == nil {
		select {
		case a := <-answers:
			delete(pending, a.queue)
			if a.err != nil {
				r.errors.WithLabelValues(a.queue).Inc()
				continue
			}
			ch <- prometheus.MustNewConstMetric(r.desc, prometheus.GaugeValue, float64(a.messages), a.queue)
		case <-ctx.Done():
		}
	}
	for q := range pending {
		r.errors.WithLabelValues(q).Inc()
	}
	r.errors.Collect(ch)
}

// read declares each parking queue passively and sends the answers; it holds
// busy until it returns.
func (r *depthReader) read(ctx context.Context, answers chan<- depth) {
	defer func() { <-r.busy }()
	for _, q := range r.queues {
		if ctx.Err() != nil {
			return // the scrape counted the rest as errors
		}
		n, err := r.readOne(ctx, dlxretry.Topology{Queue: q}.ParkingQueue())
		answers <- depth{queue: q, messages: n, err: err}
	}
}

func (r *depthReader) readOne(ctx context.Context, parking string) (int, error) {
	if r.ch == nil || r.ch.IsClosed() {
		ch, err := r.conn.Channel(ctx)
		if err != nil {
			return 0, err
		}
		r.ch = ch
	}
	// A queue that does not exist closes the channel; the next read opens
	// another.
	q, err := r.ch.QueueDeclarePassive(parking, true, false, false, false, nil)
	return q.Messages, err
}
