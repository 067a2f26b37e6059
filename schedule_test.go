package dlxretry_test

import (
	"errors"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/dlxretry/dlxretry"
)

func TestExponentialDelays(t *testing.T) {
	const milli = time.Millisecond
	tests := []struct {
		name     string
		initial  time.Duration
		factor   float64
		maxDelay time.Duration
		count    int
		want     []time.Duration
	}{
		{name: "doubling up to the cap", initial: 100 * milli, factor: 2, maxDelay: time.Second, count: 6,
			want: []time.Duration{100 * milli, 200 * milli, 400 * milli, 800 * milli, time.Second, time.Second}},
		{name: "factor 1 is constant", initial: 5 * time.Second, factor: 1, maxDelay: time.Minute, count: 3,
			want: []time.Duration{5 * time.Second, 5 * time.Second, 5 * time.Second}},
		{name: "one delay", initial: time.Second, factor: 3, maxDelay: time.Hour, count: 1,
			want: []time.Duration{time.Second}},
		{name: "initial is the cap", initial: 2 * time.Second, factor: 2, maxDelay: 2 * time.Second, count: 3,
			want: []time.Duration{2 * time.Second, 2 * time.Second, 2 * time.Second}},
		{name: "rounded to whole milliseconds", initial: milli, factor: 1.5, maxDelay: time.Hour, count: 6,
			want: []time.Duration{milli, 2 * milli, 2 * milli, 3 * milli, 5 * milli, 8 * milli}},
		{name: "initial rounded", initial: 1500 * time.Microsecond, factor: 1, maxDelay: time.Second, count: 2,
			want: []time.Duration{2 * milli, 2 * milli}},
		{name: "infinite factor jumps to the cap", initial: time.Second, factor: math.Inf(1), maxDelay: time.Minute, count: 3,
			want: []time.Duration{time.Second, time.Minute, time.Minute}},
		{name: "hours", initial: time.Hour, factor: 10, maxDelay: 500 * time.Hour, count: 4,
			want: []time.Duration{time.Hour, 10 * time.Hour, 100 * time.Hour, 500 * time.Hour}},
		{name: "rounding stays under a cap that is not whole milliseconds",
			initial: milli, factor: 2, maxDelay: 1500 * time.Microsecond, count: 3,
			want: []time.Duration{milli, milli, milli}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := dlxretry.ExponentialDelays(tt.initial, tt.factor, tt.maxDelay, tt.count)
			if err != nil {
				t.Fatalf("ExponentialDelays() error = %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ExponentialDelays() = %v, want %v", got, tt.want)
			}
			checkSchedule(t, got, tt.maxDelay)
		})
	}
}

// checkSchedule checks what any schedule promises: whole milliseconds, at
// least 1ms, never falling, never above the cap, and valid for a Topology.
func checkSchedule(t *testing.T, delays []time.Duration, maxDelay time.Duration) {
	t.Helper()
	for i, d := range delays {
		if d < time.Millisecond || d%time.Millisecond != 0 || d > maxDelay || (i > 0 && d < delays[i-1]) {
			t.Errorf("delay %d = %v in %v", i, d, delays)
		}
	}
	if maxDelay > 24*time.Hour {
		return // longer than a tier queue's TTL may be
	}
	topo := dlxretry.Topology{Queue: "orders", Delays: delays, MaxAttempts: 1}
	if err := topo.Validate(); err != nil {
		t.Errorf("Topology with delays %v: %v", delays, err)
	}
}

func TestExponentialDelaysErrors(t *testing.T) {
	const milli = time.Millisecond
	tests := []struct {
		name      string
		initial   time.Duration
		factor    float64
		maxDelay  time.Duration
		count     int
		wantField string
	}{
		{name: "zero initial", initial: 0, factor: 2, maxDelay: time.Second, count: 3, wantField: "ExponentialDelays initial"},
		{name: "negative initial", initial: -time.Second, factor: 2, maxDelay: time.Second, count: 3, wantField: "ExponentialDelays initial"},
		{name: "initial under 1ms", initial: 999 * time.Microsecond, factor: 2, maxDelay: time.Second, count: 3, wantField: "ExponentialDelays initial"},
		{name: "factor under 1", initial: milli, factor: 0.5, maxDelay: time.Second, count: 3, wantField: "ExponentialDelays factor"},
		{name: "zero factor", initial: milli, factor: 0, maxDelay: time.Second, count: 3, wantField: "ExponentialDelays factor"},
		{name: "negative factor", initial: milli, factor: -2, maxDelay: time.Second, count: 3, wantField: "ExponentialDelays factor"},
		{name: "negative infinite factor", initial: milli, factor: math.Inf(-1), maxDelay: time.Second, count: 3, wantField: "ExponentialDelays factor"},
		{name: "NaN factor", initial: milli, factor: math.NaN(), maxDelay: time.Second, count: 3, wantField: "ExponentialDelays factor"},
		{name: "cap above a tier's longest TTL", initial: milli, factor: 2, maxDelay: 1000 * time.Hour, count: 3, wantField: "ExponentialDelays maxDelay"},
		{name: "cap under initial", initial: time.Second, factor: 2, maxDelay: 999 * milli, count: 3, wantField: "ExponentialDelays maxDelay"},
		{name: "zero count", initial: milli, factor: 2, maxDelay: time.Second, count: 0, wantField: "ExponentialDelays count"},
		{name: "negative count", initial: milli, factor: 2, maxDelay: time.Second, count: -1, wantField: "ExponentialDelays count"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := dlxretry.ExponentialDelays(tt.initial, tt.factor, tt.maxDelay, tt.count)
			var ce *dlxretry.ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("ExponentialDelays() = %v, %v; want a *ConfigError", got, err)
			}
			if ce.Field != tt.wantField {
				t.Errorf("Field = %q, want %q (error %q)", ce.Field, tt.wantField, err)
			}
			if got != nil {
				t.Errorf("delays = %v with an error", got)
			}
		})
	}
}
