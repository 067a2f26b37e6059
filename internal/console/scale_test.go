package console

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlxretry/dlxretry"
	"github.com/dlxretry/dlxretry/internal/brokertest"
	"github.com/dlxretry/dlxretry/internal/parked"
	"github.com/dlxretry/dlxretry/internal/parkedtest"
)

// TestScale parks DLXRETRY_SCALE messages (100000 with DLXRETRY_SCALE=1)
// with six kinds of error and times the console's pages: the overview, a
// lot's page while its summary is read and after, pages of messages near
// the front and further in, a group's page, a message near the end and a
// group's dry-run count; it samples the heap while the summary is read.
func TestScale(t *testing.T) {
	n := scaleMessages(t)
	topo := parkedtest.Topology(t, "scale")
	start := time.Now()
	parkScale(t, topo, n)
	t.Logf("parked %d messages in %v", n, time.Since(start).Round(time.Millisecond))
	ts, _ := serveLot(t, topo)
	c := browser(t)
	lotURL := ts.URL + "/lots/" + topo.Queue

	timed(t, c, "overview", ts.URL+"/", "Parking lots")
	var peak atomic.Uint64
	stopSampling := sampleHeap(&peak)
	timed(t, c, "lot page, summary being read", lotURL, "Reading the parking queue")
	start = time.Now()
	lotPageWithin(t, c, ts.URL, topo.Queue, "", 10*time.Minute)
	scan := time.Since(start)
	stopSampling()
	t.Logf("summary of %d messages read in %v; heap in use at most %d MiB while reading", n, scan.Round(time.Millisecond), peak.Load()>>20)
	timed(t, c, "lot page 1 (50 messages)", lotURL, "m-000049")
	timed(t, c, "lot page 20", lotURL+"?page=20", "m-000999")
	timed(t, c, "group page 1", lotURL+"?group="+parked.GroupID("order 1 not found"), "order ")
	last := fmt.Sprintf("m-%06d", n-1)
	timed(t, c, "message page, last message", lotURL+"/messages/"+last, "Death history")
	timed(t, c, "confirm, dry-run count of a group", lotURL+"/confirm?action=replay&group="+parked.GroupID("order 1 not found"), "Replay ")
	if limit := 500 << 20; peak.Load() > uint64(limit) {
		t.Errorf("heap in use reached %d MiB reading %d messages", peak.Load()>>20, n)
	}
}

func scaleMessages(t *testing.T) int {
	switch v := os.Getenv("DLXRETRY_SCALE"); v {
	case "":
		t.Skip("set DLXRETRY_SCALE=1 to time the console with 100000 parked messages (or to a number of messages)")
	case "1":
		return 100000
	default:
		var n int
		if _, err := fmt.Sscan(v, &n); err != nil || n < 1000 {
			t.Fatalf("DLXRETRY_SCALE=%q: want 1 or a number of messages, 1000 or more", v)
		}
		return n
	}
	return 0
}

// parkScale parks n messages, ids m-000000 and up, in batches.
func parkScale(t *testing.T, topo dlxretry.Topology, n int) {
	t.Helper()
	fleet := parkedtest.Fleet()
	batch := make([]parkedtest.Message, 0, 1000)
	for i := range n {
		m := fleet[i%len(fleet)]
		m.ID = fmt.Sprintf("m-%06d", i)
		m.Error = strings.Replace(m.Error, "4", fmt.Sprint(i), 1)
		batch = append(batch, m)
		if len(batch) == cap(batch) || i == n-1 {
			parkedtest.Park(t, topo, batch...)
			batch = batch[:0]
		}
	}
}

// serveLot serves a console for topo's parking lot.
func serveLot(t *testing.T, topo dlxretry.Topology) (*httptest.Server, *Server) {
	t.Helper()
	conn, err := dlxretry.Dial(context.Background(), brokertest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	srv, err := New(Config{Conn: conn, Queues: []string{topo.Queue}})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		ts.Close()
		srv.Close()
	})
	return ts, srv
}

// timed loads a page, checks that it shows want and logs how long it took.
func timed(t *testing.T, c *http.Client, what, url, want string) {
	t.Helper()
	start := time.Now()
	code, body := get(t, c, url)
	took := time.Since(start)
	if code != http.StatusOK || !strings.Contains(body, want) {
		t.Errorf("%s: %d, no %q in %s", what, code, want, text(body))
	}
	t.Logf("%-40s %v", what, took.Round(time.Millisecond))
}

// sampleHeap records the largest HeapInuse seen until the returned func is called.
func sampleHeap(peak *atomic.Uint64) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-done:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return func() { close(done); <-finished }
}
