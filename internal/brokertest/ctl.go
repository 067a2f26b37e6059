package brokertest

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Ctl runs rabbitmqctl with args and returns its output, failing the test
// if it fails. Without rabbitmqctl (a remote broker) the test skips, or
// fails when RequireEnv is set.
func Ctl(t testing.TB, args ...string) string {
	t.Helper()
	path, err := exec.LookPath("rabbitmqctl")
	if err != nil {
		msg := "rabbitmqctl not found: fault tests need the broker on this machine"
		if os.Getenv(RequireEnv) != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	out, err := exec.Command(path, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("rabbitmqctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// CloseConnections closes, with rabbitmqctl, every connection whose
// connection_name starts with prefix, and returns how many it closed. It
// does not touch t, so fault goroutines may call it.
func CloseConnections(prefix string) (int, error) {
	out, err := exec.Command("rabbitmqctl", "list_connections", "-q", "--no-table-headers", "pid", "client_properties").CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("rabbitmqctl list_connections: %v: %s", err, out)
	}
	n := 0
	for _, line := range strings.Split(string(out), "\n") {
		pid, props, ok := strings.Cut(line, "\t")
		if !ok || !strings.Contains(props, `{"connection_name","`+prefix) {
			continue
		}
		// A connection may close by itself meanwhile; that is not a failure.
		if exec.Command("rabbitmqctl", "close_connection", pid, "fault test").Run() == nil {
			n++
		}
	}
	return n, nil
}

// Cutter closes the connections named with prefix every interval until
// stopped, counting the cuts.
type Cutter struct {
	stop chan struct{}
	done chan struct{}
	cuts atomic.Int32
	err  error
}

// StartCutter starts cutting; call Stop to end it and learn the count.
func StartCutter(t testing.TB, prefix string, every time.Duration) *Cutter {
	t.Helper()
	Ctl(t, "status") // skips or fails here when rabbitmqctl is missing
	c := &Cutter{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for {
			select {
			case <-c.stop:
				return
			case <-time.After(every):
			}
			n, err := CloseConnections(prefix)
			if err != nil {
				c.err = err
				return
			}
			c.cuts.Add(int32(n))
		}
	}()
	t.Cleanup(func() { c.Stop() })
	return c
}

// Stop ends the cutting and returns how many connections it closed.
func (c *Cutter) Stop() (int, error) {
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	<-c.done
	return c.Cuts(), c.err
}

// Cuts is how many connections the cutter has closed so far.
func (c *Cutter) Cuts() int { return int(c.cuts.Load()) }

// RestartApp stops and starts the broker application (the Erlang node stays
// up), and makes sure it is started again when the test ends, even if it fails.
func RestartApp(t testing.TB, down time.Duration) {
	t.Helper()
	t.Cleanup(func() { Ctl(t, "start_app") })
	Ctl(t, "stop_app")
	time.Sleep(down)
	Ctl(t, "start_app")
	Ctl(t, "await_startup")
}
