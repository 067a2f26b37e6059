package brokertest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// CtlEnv names the variable that holds the command controlling the broker
// under test, split on spaces, for a broker that the machine's own
// rabbitmqctl does not manage: CI sets it to "/abs/path/.ci/brokers ctl 4.0"
// with RABBITMQ_URL pointing at that node. Use an absolute path: tests run
// in their package's directory.
const CtlEnv = "DLXRETRY_RABBITMQCTL"

// CtlCommand returns the command, as words, that runs rabbitmqctl against
// the broker under test: the words of DLXRETRY_RABBITMQCTL, or
// ["rabbitmqctl"] when it is unset. Append the rabbitmqctl arguments.
func CtlCommand() []string {
	if words := strings.Fields(os.Getenv(CtlEnv)); len(words) > 0 {
		return words
	}
	return []string{"rabbitmqctl"}
}

// ctlCmd is the command that runs rabbitmqctl args against the broker under
// test.
func ctlCmd(args ...string) *exec.Cmd {
	words := CtlCommand()
	return exec.Command(words[0], append(words[1:len(words):len(words)], args...)...)
}

// ctlName is how messages name the control command.
func ctlName() string { return strings.Join(CtlCommand(), " ") }

// Ctl runs rabbitmqctl (CtlCommand) with args and returns its output,
// failing the test if it fails. Without the command (a remote broker) the
// test skips, or fails when RequireEnv is set. The first call in a process
// also checks that the command controls the broker that URL returns (see
// CheckCtlTarget), so that a fault cannot land on another broker unseen.
func Ctl(t testing.TB, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath(CtlCommand()[0]); err != nil {
		msg := fmt.Sprintf("%s not found: fault tests need the broker on this machine (set %s for another one)", CtlCommand()[0], CtlEnv)
		if os.Getenv(RequireEnv) != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	URL(t)
	if err := CheckCtlTarget(); err != nil {
		t.Fatal(err)
	}
	out, err := ctlCmd(args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", ctlName(), strings.Join(args, " "), err, out)
	}
	return string(out)
}

// CtlRun is Ctl for goroutines other than the test's: it returns the
// error instead of failing the test. Call Ctl on the test's goroutine first,
// so that a missing command skips the test.
func CtlRun(args ...string) (string, error) {
	if err := CheckCtlTarget(); err != nil {
		return "", err
	}
	out, err := ctlCmd(args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", ctlName(), strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

var (
	targetOnce sync.Once
	targetErr  error
)

// CheckCtlTarget returns an error unless the node that CtlCommand controls
// has an AMQP listener on the port of the broker under test (the URL that
// URL returns), checked once per process: a test whose control command
// reached another broker than its connections would cut, stop or alarm
// that other broker and could pass without any fault. It does not touch a
// testing.TB, so goroutines may call it.
func CheckCtlTarget() error {
	targetOnce.Do(func() { targetErr = checkCtlTarget() })
	return targetErr
}

func checkCtlTarget() error {
	once.Do(func() { url, urlErr = find() })
	if urlErr != nil {
		return fmt.Errorf("no broker under test: %v", urlErr)
	}
	uri, err := amqp.ParseURI(url)
	if err != nil {
		return fmt.Errorf("broker URL %q: %v", url, err)
	}
	var stderr bytes.Buffer
	cmd := ctlCmd("status", "--formatter", "json")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("%s status: %v\n%s%s", ctlName(), err, out, stderr.Bytes())
	}
	// Some versions print a line before the JSON document.
	if i := bytes.IndexByte(out, '{'); i > 0 {
		out = out[i:]
	}
	var status struct {
		Listeners []struct {
			Node     string `json:"node"`
			Protocol string `json:"protocol"`
			Port     int    `json:"port"`
		} `json:"listeners"`
	}
	if err := json.NewDecoder(bytes.NewReader(out)).Decode(&status); err != nil {
		return fmt.Errorf("%s status --formatter json: %v", ctlName(), err)
	}
	protocol := "amqp"
	if uri.Scheme == "amqps" {
		protocol = "amqp/ssl"
	}
	var found []string
	for _, l := range status.Listeners {
		if l.Protocol == protocol && l.Port == uri.Port {
			return nil
		}
		if strings.HasPrefix(l.Protocol, "amqp") {
			found = append(found, l.Node+" "+l.Protocol+" "+strconv.Itoa(l.Port))
		}
	}
	return fmt.Errorf("%q controls a node whose AMQP listeners are %v, not the broker under test on port %d; "+
		"set %s to a command for that broker (CI: \"$PWD/.ci/brokers ctl VERSION\")",
		ctlName(), found, uri.Port, CtlEnv)
}

// CloseConnections closes, with rabbitmqctl (CtlCommand), every connection
// whose connection_name starts with prefix, and returns how many it closed.
// It does not touch t, so fault goroutines may call it.
func CloseConnections(prefix string) (int, error) {
	if err := CheckCtlTarget(); err != nil {
		return 0, err
	}
	out, err := ctlCmd("list_connections", "-q", "--no-table-headers", "pid", "client_properties").CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("%s list_connections: %v: %s", ctlName(), err, out)
	}
	n := 0
	for _, line := range strings.Split(string(out), "\n") {
		pid, props, ok := strings.Cut(line, "\t")
		if !ok || !strings.Contains(props, `{"connection_name","`+prefix) {
			continue
		}
		// A connection may close by itself meanwhile; that is not a failure.
		if ctlCmd("close_connection", pid, "fault test").Run() == nil {
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
