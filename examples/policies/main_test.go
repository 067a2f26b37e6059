package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/dlxretry/dlxretry"
	"github.com/dlxretry/dlxretry/internal/brokertest"
)

// TestPolicies runs the example under names of its own and checks that it
// applied the policies, retried and parked by them, and cleared them.
func TestPolicies(t *testing.T) {
	brokerURL := brokertest.URL(t)
	requireRabbitmqctl(t)
	cfg := config{brokerURL: brokerURL, prefix: brokertest.Name(t, "pol")}
	topo := topology(cfg.prefix)
	policies := cleanUp(t, topo)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := runWith(ctx, cfg, &out); err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	t.Logf("output:\n%s", out.String())

	for _, line := range []string{
		"applied 3 policies with rabbitmqctl",
		"declared " + topo.Queue + " and its tiers without dead-letter arguments",
		"ack     hello11 (attempt 1)",
		"retry   hello12 attempt 2 failed: callback down -> tier 2 (400ms)",
		"ack     hello12 (attempt 3)",
		"park    hello99 after 3 attempts: callback down",
		"summary: 3 messages, 2 acked, 4 retries, 1 parked",
		"deleted topology " + topo.Queue,
		"cleared 3 policies",
	} {
		if !strings.Contains(out.String(), line+"\n") {
			t.Errorf("output lacks the line %q", line)
		}
	}
	listed := listPolicies(t)
	for i, p := range policies {
		if !strings.Contains(out.String(), shellCommand("rabbitmqctl", setPolicyArgs(p, "/"))+"\n") {
			t.Errorf("output lacks the command that sets %s", p.Name)
		}
		queue := topo.Queue
		if i > 0 {
			queue = topo.TierQueue(i)
		}
		if !strings.Contains(out.String(), fmt.Sprintf("  %-40s policy %s\n", queue, p.Name)) {
			t.Errorf("output does not show %s with its policy", queue)
		}
		if strings.Contains(listed, p.Name+"\t") {
			t.Errorf("policy %s is still there after the run", p.Name)
		}
	}
}

// Without rabbitmqctl the example prints the policies and stops before it
// declares anything; it needs no broker.
func TestWithoutRabbitmqctl(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	t.Setenv("DLXRETRY_RABBITMQCTL", "")
	var out bytes.Buffer
	err := runWith(context.Background(), config{brokerURL: "amqp://guest:guest@127.0.0.1:1/", prefix: "p"}, &out)
	if !errors.Is(err, errApplyFirst) {
		t.Fatalf("run without rabbitmqctl: %v, want errApplyFirst", err)
	}
	for _, want := range []string{
		`rabbitmqctl set_policy --vhost / --priority 100 --apply-to queues dlxretry.p.orders '^p\.orders$' '{"dead-letter-exchange":"p.orders.retry"}'`,
		"or PUT /api/policies/%2F/dlxretry.p.orders.retry.1.200ms.e25fec7b {",
		"rabbitmqctl not found: cannot apply the policies",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestShellCommand(t *testing.T) {
	got := shellCommand("rabbitmqctl", []string{"set_policy", "--vhost", "/", "a b", `^q\.x$`, `{"k":"it's"}`, ""})
	want := `rabbitmqctl set_policy --vhost / 'a b' '^q\.x$' '{"k":"it'\''s"}' ''`
	if got != want {
		t.Errorf("shellCommand = %s\nwant          %s", got, want)
	}
}

// requireRabbitmqctl skips the test without rabbitmqctl, or fails it where
// a broker is required (CI).
func requireRabbitmqctl(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath(ctlCommand()[0]); err != nil {
		msg := "rabbitmqctl not found: this test sets policies with it"
		if os.Getenv(brokertest.RequireEnv) != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

// cleanUp deletes the topology and clears those of its policies that are
// still there when the test ends, whatever happened; it returns the policies.
func cleanUp(t *testing.T, topo dlxretry.Topology) []dlxretry.Policy {
	t.Helper()
	policies, err := topo.Policies()
	if err != nil {
		t.Fatal(err)
	}
	ch := brokertest.Channel(t)
	t.Cleanup(func() {
		_ = topo.Delete(context.Background(), ch)
		listed := listPolicies(t)
		for _, p := range policies {
			if !strings.Contains(listed, p.Name+"\t") {
				continue
			}
			if out, err := exec.Command(ctlCommand()[0], append(ctlCommand()[1:], clearPolicyArgs(p, "/")...)...).CombinedOutput(); err != nil {
				t.Errorf("clear policy %s: %v\n%s", p.Name, err, out)
			}
		}
	})
	return policies
}

func listPolicies(t *testing.T) string {
	t.Helper()
	out, err := exec.Command(ctlCommand()[0], append(ctlCommand()[1:], "list_policies", "--vhost", "/", "--no-table-headers", "--quiet")...).CombinedOutput()
	if err != nil {
		t.Fatalf("list_policies: %v\n%s", err, out)
	}
	return string(out)
}
