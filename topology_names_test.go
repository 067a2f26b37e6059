package dlxretry_test

import (
	"testing"
	"time"

	"github.com/dlxretry/dlxretry"
)

// TierQueue and TierKey take a tier number out of range as Delay does: the
// nearest tier, never a panic.
func TestTierNamesClampLikeDelay(t *testing.T) {
	topo := dlxretry.Topology{Queue: "orders", Delays: []time.Duration{time.Second, time.Minute}, MaxAttempts: 3}
	for _, c := range []struct{ i, tier int }{{-1, 1}, {0, 1}, {1, 1}, {2, 2}, {3, 2}, {99, 2}} {
		if got, want := topo.TierQueue(c.i), topo.TierQueue(c.tier); got != want {
			t.Errorf("TierQueue(%d) = %q, want %q", c.i, got, want)
		}
		if got, want := topo.TierKey(c.i), topo.TierKey(c.tier); got != want {
			t.Errorf("TierKey(%d) = %q, want %q", c.i, got, want)
		}
		if got, want := topo.Delay(c.i), topo.Delays[c.tier-1]; c.i > 0 && got != want {
			t.Errorf("Delay(%d) = %v, want %v", c.i, got, want)
		}
	}
	if topo.TierQueue(1) == topo.TierQueue(2) {
		t.Errorf("tiers 1 and 2 share the name %q", topo.TierQueue(1))
	}
	empty := dlxretry.Topology{Queue: "orders"}
	if q, k := empty.TierQueue(1), empty.TierKey(1); q != "" || k != "" {
		t.Errorf("no delays: TierQueue %q, TierKey %q, want empty", q, k)
	}
}
