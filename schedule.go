package dlxretry

import (
	"math"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// ExponentialDelays builds a retry schedule for [Topology].Delays: count
// delays starting at initial, each factor times the one before, none above
// maxDelay, rounded to whole milliseconds. There is no jitter: every message
// in a tier waits the same time, because the tier's queue TTL is the delay.
func ExponentialDelays(initial time.Duration, factor float64, maxDelay time.Duration, count int) ([]time.Duration, error) {
	switch {
	case initial < time.Millisecond:
		return nil, invalid("ExponentialDelays initial", "must be at least 1ms, got %v", initial)
	case math.IsNaN(factor) || factor < 1:
		return nil, invalid("ExponentialDelays factor", "must be at least 1, got %v", factor)
	case maxDelay < initial:
		return nil, invalid("ExponentialDelays maxDelay", "must be at least initial (%v), got %v", initial, maxDelay)
	case maxDelay > maxTierDelay:
		return nil, invalid("ExponentialDelays maxDelay", "must be at most %v, got %v", maxTierDelay, maxDelay)
	case count < 1:
		return nil, invalid("ExponentialDelays count", "must be at least 1, got %d", count)
	}
	b := &backoff.ExponentialBackOff{
		InitialInterval:     initial,
		Multiplier:          factor,
		MaxInterval:         maxDelay,
		RandomizationFactor: 0,
		MaxElapsedTime:      0,
		Stop:                backoff.Stop,
		Clock:               backoff.SystemClock,
	}
	b.Reset()
	delays := make([]time.Duration, count)
	for i := range delays {
		delays[i] = min(b.NextBackOff().Round(time.Millisecond), maxDelay.Truncate(time.Millisecond))
	}
	return delays, nil
}
