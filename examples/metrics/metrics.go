package main

import (
	"context"
	"errors"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dlxretry/dlxretry"
)

// metrics are the collectors the hooks feed. Prometheus collectors are safe
// for concurrent use, as hooks must be with WithConcurrency above 1.
type metrics struct {
	acks       *prometheus.CounterVec
	retries    *prometheus.CounterVec
	parks      *prometheus.CounterVec
	parkErrors *prometheus.CounterVec
	publishes  *prometheus.CounterVec
	handler    *prometheus.HistogramVec
}

// newMetrics creates the collectors and registers them with reg.
func newMetrics(reg prometheus.Registerer) *metrics {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "dlxretry", Name: name, Help: help}, labels)
	}
	m := &metrics{
		acks:       counter("acks_total", "Deliveries the handler succeeded with.", "queue"),
		retries:    counter("retries_total", "Failed deliveries sent to a retry tier, by tier.", "queue", "tier"),
		parks:      counter("parks_total", "Messages parked, by reason: permanent error or attempts used up.", "queue", "reason"),
		parkErrors: counter("park_errors_total", "Parkings that failed; the message went round the retry path again.", "queue"),
		publishes:  counter("publishes_total", "Publishes, by whether the broker confirmed them.", "exchange", "result"),
		handler: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "dlxretry",
			Name:      "handler_duration_seconds",
			Help:      "How long the handler ran, by outcome.",
			Buckets:   []float64{.001, .0025, .005, .01, .025, .1},
		}, []string{"queue", "outcome"}),
	}
	reg.MustRegister(m.acks, m.retries, m.parks, m.parkErrors, m.publishes, m.handler)
	return m
}

// hooks feed the collectors; give them to the Consumer and the Publisher.
func (m *metrics) hooks() dlxretry.Hooks {
	return dlxretry.Hooks{
		OnAck: func(_ context.Context, e dlxretry.AckEvent) {
			m.acks.WithLabelValues(e.Queue).Inc()
			m.handler.WithLabelValues(e.Queue, "ack").Observe(e.Duration.Seconds())
		},
		OnRetry: func(_ context.Context, e dlxretry.RetryEvent) {
			if e.ParkErr != nil {
				m.parkErrors.WithLabelValues(e.Queue).Inc()
			}
			m.retries.WithLabelValues(e.Queue, strconv.Itoa(e.Tier)).Inc()
			m.handler.WithLabelValues(e.Queue, "retry").Observe(e.Duration.Seconds())
		},
		OnPark: func(_ context.Context, e dlxretry.ParkEvent) {
			m.handler.WithLabelValues(e.Queue, "park").Observe(e.Duration.Seconds())
			m.parks.WithLabelValues(e.Queue, parkReason(e.Err)).Inc()
		},
		OnPublish: func(_ context.Context, e dlxretry.PublishEvent) {
			result := "confirmed"
			if e.Err != nil {
				result = "failed"
			}
			m.publishes.WithLabelValues(e.Exchange, result).Inc()
		},
	}
}

func parkReason(err error) string {
	var perm *dlxretry.PermanentError
	if errors.As(err, &perm) {
		return "permanent"
	}
	return "attempts"
}
