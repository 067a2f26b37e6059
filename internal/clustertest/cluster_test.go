package clustertest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// The variables that point the tests at a cluster (see the package doc).
const (
	urlsEnv     = "DLXRETRY_CLUSTER_URLS"
	ctlEnv      = "DLXRETRY_CLUSTER_CTL"
	requireEnv  = "DLXRETRY_REQUIRE_CLUSTER"
	messagesEnv = "DLXRETRY_CLUSTER_MESSAGES"
	downEnv     = "DLXRETRY_CLUSTER_DOWNTIME"
	reportEnv   = "DLXRETRY_CLUSTER_REPORT"
)

// cluster is the 3-node cluster under test. Node n (1-based) is urls[n-1]
// and names[n-1].
type cluster struct {
	urls  []string
	names []string // Erlang node names, as list_queues reports leaders
	ctl   []string // the control command's words
	// confirmTimeout is the nodes' dead_letter_worker_publisher_confirm_timeout.
	confirmTimeout time.Duration
}

var (
	clusterOnce sync.Once
	theCluster  *cluster
	clusterErr  error
)

// getCluster returns the cluster under test, or skips the test (fails it
// when DLXRETRY_REQUIRE_CLUSTER is set) when there is none.
func getCluster(t *testing.T) *cluster {
	t.Helper()
	if os.Getenv(urlsEnv) == "" || os.Getenv(ctlEnv) == "" {
		msg := fmt.Sprintf("no cluster: set %s and %s (see .ci/cluster)", urlsEnv, ctlEnv)
		if os.Getenv(requireEnv) != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	clusterOnce.Do(func() { theCluster, clusterErr = findCluster() })
	if clusterErr != nil {
		t.Fatal(clusterErr)
	}
	return theCluster
}

func findCluster() (*cluster, error) {
	c := &cluster{
		urls: strings.FieldsFunc(os.Getenv(urlsEnv), func(r rune) bool { return r == ',' || r == ' ' || r == '\n' }),
		ctl:  strings.Fields(os.Getenv(ctlEnv)),
	}
	if len(c.urls) != 3 {
		return nil, fmt.Errorf("%s: want 3 URLs, got %d", urlsEnv, len(c.urls))
	}
	// A cluster left with a node down by an earlier run starts again.
	if !c.allUp() {
		if out, err := c.command("start"); err != nil {
			return nil, fmt.Errorf("%s start: %v\n%s", c.ctlName(), err, out)
		}
	}
	for n := 1; n <= 3; n++ {
		name, err := c.checkNode(n)
		if err != nil {
			return nil, err
		}
		c.names = append(c.names, name)
	}
	out, err := c.command("ctl", "1", "eval", "application:get_env(rabbit, dead_letter_worker_publisher_confirm_timeout, 180000).")
	if err != nil {
		return nil, fmt.Errorf("read dead_letter_worker_publisher_confirm_timeout: %v\n%s", err, out)
	}
	ms, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		return nil, fmt.Errorf("dead_letter_worker_publisher_confirm_timeout: %q is not a number of milliseconds", out)
	}
	c.confirmTimeout = time.Duration(ms) * time.Millisecond
	return c, nil
}

// checkNode returns node n's Erlang name, and an error unless the control
// command's node n listens on the port of the n-th URL: a fault must land
// on the node the test thinks it hits.
func (c *cluster) checkNode(n int) (string, error) {
	u, err := amqp.ParseURI(c.urls[n-1])
	if err != nil {
		return "", fmt.Errorf("%s: %v", urlsEnv, err)
	}
	out, err := c.command("ctl", strconv.Itoa(n), "status", "--formatter", "json")
	if err != nil {
		return "", fmt.Errorf("%s ctl %d status: %v\n%s", c.ctlName(), n, err, out)
	}
	if i := strings.IndexByte(out, '{'); i > 0 {
		out = out[i:]
	}
	var status struct {
		Listeners []struct {
			Node     string `json:"node"`
			Protocol string `json:"protocol"`
			Port     int    `json:"port"`
		} `json:"listeners"`
	}
	if err := json.Unmarshal([]byte(out), &status); err != nil {
		return "", fmt.Errorf("%s ctl %d status --formatter json: %v", c.ctlName(), n, err)
	}
	for _, l := range status.Listeners {
		if l.Protocol == "amqp" && l.Port == u.Port {
			return l.Node, nil
		}
	}
	return "", fmt.Errorf("node %d of %s has no AMQP listener on port %d (the %d-th URL of %s)", n, c.ctlName(), u.Port, n, urlsEnv)
}

func (c *cluster) ctlName() string { return strings.Join(c.ctl, " ") }

// command runs the control command with args, bounded by two minutes (a
// node's startup is bounded by the script itself).
func (c *cluster) command(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.ctl[0], append(c.ctl[1:len(c.ctl):len(c.ctl)], args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// do runs the control command, failing the test if it fails.
func (c *cluster) do(t *testing.T, args ...string) string {
	t.Helper()
	out, err := c.command(args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", c.ctlName(), strings.Join(args, " "), err, out)
	}
	return out
}

// up reports whether node n answers AMQP.
func (c *cluster) up(n int) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	conn, err := amqp.DialConfig(c.urls[n-1], amqp.Config{Dial: func(network, addr string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}})
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

func (c *cluster) allUp() bool {
	for n := 1; n <= 3; n++ {
		if !c.up(n) {
			return false
		}
	}
	return true
}

// ensureUp starts again whatever an earlier test left down.
func (c *cluster) ensureUp(t *testing.T) {
	t.Helper()
	if !c.allUp() {
		t.Logf("a node is down; %s start", c.ctlName())
		c.do(t, "start")
	}
}

// order is the cluster's URLs starting with node first, for clients that
// should connect to that node.
func (c *cluster) order(first int) []string {
	var out []string
	for i := range 3 {
		out = append(out, c.urls[(first-1+i)%3])
	}
	return out
}

// host is the address of node n's URL, for reports.
func (c *cluster) host(n int) string {
	u, err := url.Parse(c.urls[n-1])
	if err != nil {
		return c.urls[n-1]
	}
	return u.Host
}

// queueInfo is what list_queues says of one queue.
type queueInfo struct {
	Name     string `json:"name"`
	Leader   string `json:"leader"`
	Messages int    `json:"messages"`
}

// queues lists the queues whose names start with prefix, asking node n.
func (c *cluster) queues(t *testing.T, n int, prefix string) []queueInfo {
	t.Helper()
	out := c.do(t, "ctl", strconv.Itoa(n), "list_queues", "name", "leader", "messages", "--formatter", "json")
	if i := strings.IndexByte(out, '['); i > 0 {
		out = out[i:]
	}
	var all []queueInfo
	if err := json.Unmarshal([]byte(out), &all); err != nil {
		t.Fatalf("list_queues --formatter json: %v\n%s", err, out)
	}
	var mine []queueInfo
	for _, q := range all {
		if strings.HasPrefix(q.Name, prefix) {
			mine = append(mine, q)
		}
	}
	return mine
}

// nodeOf is the number of the node named name, 0 if none.
func (c *cluster) nodeOf(name string) int {
	for i, n := range c.names {
		if n == name {
			return i + 1
		}
	}
	return 0
}
