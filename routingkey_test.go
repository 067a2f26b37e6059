package dlxretry_test

import (
	"testing"
	"time"

	"github.com/dlxretry/dlxretry"
)

// A message published with the empty routing key (which a "#" binding
// takes) still shows that key as its original one on a retry, not the
// tier key it came back with.
func TestEmptyRoutingKeyIsKeptThroughRetries(t *testing.T) {
	t.Parallel()
	for _, typ := range queueTypes {
		t.Run(string(typ), func(t *testing.T) {
			t.Parallel()
			topo := declare(t, typ, delaysMS(50), 3)
			r := newRecorder(map[string]int{"m": 1})
			run(t, topo, r.handle, dlxretry.WithHooks(r.hooks()))
			publish(t, topo.Exchange, "", "m")
			waitN(t, r.acks, 1, 10*time.Second)
			got := r.deliveries("m")
			if len(got) != 2 {
				t.Fatalf("delivered %d times, want 2", len(got))
			}
			if got[1].routingKey != topo.TierKey(1) || got[1].origKey != "" {
				t.Errorf("retry: routing key %q, original %q; want %q and the empty key", got[1].routingKey, got[1].origKey, topo.TierKey(1))
			}
		})
	}
}

// ParseDeaths keeps an empty routing key: it is the key the message was
// published with.
func TestParseDeathsKeepsEmptyRoutingKey(t *testing.T) {
	deaths, err := dlxretry.ParseDeaths(map[string]any{"x-death": []any{map[string]any{
		"queue": "orders", "reason": "rejected", "count": int64(1), "routing-keys": []any{""}}}})
	if err != nil {
		t.Fatal(err)
	}
	if key, ok := deaths.OriginalRoutingKey("orders"); !ok || key != "" {
		t.Errorf("OriginalRoutingKey = %q, %v; want the empty key, true", key, ok)
	}
}
