package dlxretry_test

import (
	"testing"
	"time"

	"github.com/dlxretry/dlxretry"
	"github.com/dlxretry/dlxretry/internal/brokertest"
)

// Under a mixed load, the consumer's and publisher's connections are cut
// again and again: every message is still acked or parked, and duplicates
// stay within what was in flight at the cuts.
func TestLoadSurvivesConnectionCuts(t *testing.T) {
	long(t)
	for _, typ := range queueTypes {
		t.Run(string(typ), func(t *testing.T) {
			l := newMixedLoad(t, loadSize(t), typ)
			name := brokertest.Name(t, "conn")
			const prefetch, workers = 32, 8
			run(t, l.topo, l.handle, dlxretry.WithConnectionName(name+".consumer"),
				dlxretry.WithConcurrency(workers), dlxretry.WithPrefetch(prefetch),
				dlxretry.WithReconnectDelay(50*time.Millisecond, time.Second))
			pub := newPublisher(t, name+".publisher")
			cutter := brokertest.StartCutter(t, name, 100*time.Millisecond)

			retries := l.publishAll(t, pub, l.n/8) // about 8s, long enough for several cuts
			l.waitSettled(t, 3*time.Minute)
			cuts, err := cutter.Stop()
			if err != nil {
				t.Fatal(err)
			}
			dups := l.verify(t)
			t.Logf("%d messages, %d connections cut, %d publishes repeated, %d duplicates", l.n, cuts, retries, dups)
			if cuts == 0 {
				t.Error("no connection was cut: the test proved nothing")
			}
			// A duplicate is a message whose handler finished but whose
			// ack or parking ack a cut lost: at most one per worker a cut.
			if bound := cuts*workers + retries; dups > bound {
				t.Errorf("%d duplicates, more than the %d that could have been in flight", dups, bound)
			}
		})
	}
}
