package dlxretry_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dlxretry/dlxretry"
	"github.com/dlxretry/dlxretry/internal/brokertest"
)

// childEnv, when set, makes the test binary a consumer process (see
// TestMain) for the topology its value holds as JSON.
const childEnv = "DLXRETRY_TEST_CHILD_TOPOLOGY"

// runChild consumes the mixed load until SIGTERM, printing "ok <body>" for
// each message the handler finishes, before it is acked, and "redelivered"
// for each delivery a killed consumer had left unacked. Each handler takes a
// moment, so that a kill finds messages in flight.
func runChild() int {
	var topo dlxretry.Topology
	if err := json.Unmarshal([]byte(os.Getenv(childEnv)), &topo); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	h := func(ctx context.Context, d *dlxretry.Delivery) error {
		if d.Redelivered {
			fmt.Println("redelivered")
		}
		time.Sleep(2 * time.Millisecond)
		err := outcome(loadID(d.Body), d.Attempt)
		if err == nil {
			fmt.Printf("ok %s\n", d.Body)
		}
		return err
	}
	c, err := dlxretry.NewConsumer(os.Getenv("RABBITMQ_URL"), topo, h,
		dlxretry.WithConcurrency(8), dlxretry.WithPrefetch(32))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := c.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	return 0
}

// startChild starts a consumer process and feeds what it reports into l.
func startChild(t *testing.T, l *mixedLoad, redelivered *atomic.Int32) (*exec.Cmd, <-chan struct{}) {
	t.Helper()
	spec, err := json.Marshal(l.topo)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(spec), "RABBITMQ_URL="+brokertest.URL(t))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		lines := bufio.NewScanner(out)
		for lines.Scan() {
			if lines.Text() == "redelivered" {
				redelivered.Add(1)
			}
			if body, ok := strings.CutPrefix(lines.Text(), "ok "); ok {
				l.mu.Lock()
				l.succeeded[loadID([]byte(body))]++
				l.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-done; _ = cmd.Wait() })
	return cmd, done
}

// A consumer process killed with SIGKILL mid-run, again and again, and
// started again loses nothing: its unacked messages return to the queue.
func TestLoadSurvivesConsumerKill(t *testing.T) {
	long(t)
	for _, typ := range queueTypes {
		t.Run(string(typ), func(t *testing.T) {
			l := newMixedLoad(t, loadSize(t), typ)
			pub := newPublisher(t, brokertest.Name(t, "pub"))
			published := make(chan int, 1)
			go func() { published <- l.publishAll(t, pub, l.n/5) }() // about 5s: the kills land mid-run

			const kills = 3
			var redelivered atomic.Int32
			for range kills {
				cmd, done := startChild(t, l, &redelivered)
				time.Sleep(1500 * time.Millisecond)
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				<-done
				_ = cmd.Wait()
			}
			cmd, done := startChild(t, l, &redelivered)
			retries := <-published
			l.waitSettled(t, 3*time.Minute)
			_ = cmd.Process.Signal(syscall.SIGTERM)
			<-done
			if err := cmd.Wait(); err != nil {
				t.Errorf("last consumer did not stop cleanly: %v", err)
			}
			dups := l.verify(t)
			t.Logf("%d messages, %d kills, %d redelivered, %d duplicates", l.n, kills, redelivered.Load(), dups)
			if redelivered.Load() == 0 {
				t.Error("no delivery was in flight at a kill: the test proved nothing")
			}
			// At most one duplicate per handler in flight (8) at each kill.
			if bound := kills*8 + retries; dups > bound {
				t.Errorf("%d duplicates, more than the %d that could have been in flight", dups, bound)
			}
		})
	}
}
