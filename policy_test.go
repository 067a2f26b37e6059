package dlxretry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dlxretry/dlxretry"
	"github.com/dlxretry/dlxretry/internal/brokertest"
)

func TestPolicies(t *testing.T) {
	topo := dlxretry.Topology{Queue: "orders", Delays: delaysMS(1000, 60000), MaxAttempts: 5}
	classic := []dlxretry.Policy{
		{Name: "dlxretry.orders", Pattern: `^orders$`, ApplyTo: "queues", Priority: dlxretry.DefaultPolicyPriority,
			Definition: map[string]any{"dead-letter-exchange": "orders.retry"}},
		{Name: "dlxretry.orders.retry.1.1s.e9865ce3", Pattern: `^orders\.retry\.1\.1s\.e9865ce3$`, ApplyTo: "queues", Priority: dlxretry.DefaultPolicyPriority,
			Definition: map[string]any{"message-ttl": int64(1000),
				"dead-letter-exchange": "orders.requeue", "dead-letter-routing-key": "orders.tier.1.e9865ce3"}},
		{Name: "dlxretry.orders.retry.2.1m0s.2bff3c73", Pattern: `^orders\.retry\.2\.1m0s\.2bff3c73$`, ApplyTo: "queues", Priority: dlxretry.DefaultPolicyPriority,
			Definition: map[string]any{"message-ttl": int64(60000),
				"dead-letter-exchange": "orders.requeue", "dead-letter-routing-key": "orders.tier.2.2bff3c73"}},
	}
	quorum := make([]dlxretry.Policy, len(classic))
	for i, p := range classic {
		def := map[string]any{"dead-letter-strategy": "at-least-once", "overflow": "reject-publish"}
		for k, v := range p.Definition {
			def[k] = v
		}
		p.Definition = def
		quorum[i] = p
	}
	for _, c := range []struct {
		typ  dlxretry.QueueType
		want []dlxretry.Policy
	}{{dlxretry.Classic, classic}, {dlxretry.Quorum, quorum}} {
		t.Run(string(c.typ), func(t *testing.T) {
			topo := topo
			topo.Type = c.typ
			for _, byPolicy := range []bool{false, true} {
				topo.DeadLetterByPolicy = byPolicy
				got, err := topo.Policies()
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, c.want) {
					t.Errorf("DeadLetterByPolicy=%v: Policies() =\n%#v\nwant\n%#v", byPolicy, got, c.want)
				}
			}
		})
	}
}

func ExampleTopology_Policies() {
	topo := dlxretry.Topology{
		Queue:              "orders",
		Delays:             []time.Duration{time.Second, time.Minute},
		MaxAttempts:        5,
		DeadLetterByPolicy: true,
	}
	policies, err := topo.Policies()
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, p := range policies {
		def, _ := json.Marshal(p.Definition)
		fmt.Println(p.Name, p.Pattern, p.Priority, string(def))
	}
	// Output:
	// dlxretry.orders ^orders$ 100 {"dead-letter-exchange":"orders.retry"}
	// dlxretry.orders.retry.1.1s.e9865ce3 ^orders\.retry\.1\.1s\.e9865ce3$ 100 {"dead-letter-exchange":"orders.requeue","dead-letter-routing-key":"orders.tier.1.e9865ce3","message-ttl":1000}
	// dlxretry.orders.retry.2.1m0s.2bff3c73 ^orders\.retry\.2\.1m0s\.2bff3c73$ 100 {"dead-letter-exchange":"orders.requeue","dead-letter-routing-key":"orders.tier.2.2bff3c73","message-ttl":60000}
}

func TestPoliciesOfInvalidTopology(t *testing.T) {
	_, err := dlxretry.Topology{Queue: "orders", MaxAttempts: 3}.Policies()
	var ce *dlxretry.ConfigError
	if !errors.As(err, &ce) || ce.Field != "Topology.Delays" {
		t.Fatalf("Policies() error %v, want a ConfigError for Topology.Delays", err)
	}
}

// The broker reads patterns as PCRE; for the escaped literal names here Go's
// regexp agrees with it.
func TestPolicyPatternMatchesOnlyItsQueue(t *testing.T) {
	queue := "shop.orders+eu(1)[a]{2}|x^$*?\\"
	topo := dlxretry.Topology{Queue: queue, Delays: delaysMS(250), MaxAttempts: 2}
	policies, err := topo.Policies()
	if err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{queue, topo.TierQueue(1)} {
		re := regexp.MustCompile(policies[i].Pattern)
		if !re.MatchString(name) {
			t.Errorf("pattern %s does not match %q", policies[i].Pattern, name)
		}
		for _, other := range []string{"x" + name, name + "x", name + ".parking", strings.Replace(name, ".", "X", 1)} {
			if re.MatchString(other) {
				t.Errorf("pattern %s matches %q", policies[i].Pattern, other)
			}
		}
	}
}

func TestPolicyJSON(t *testing.T) {
	topo := dlxretry.Topology{Queue: "orders", Delays: delaysMS(1000), MaxAttempts: 5}
	policies, err := topo.Policies()
	if err != nil {
		t.Fatal(err)
	}
	p := policies[1]
	p.Priority = 7
	body, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	const wantBody = `{"name":"dlxretry.orders.retry.1.1s.63f03d3c","pattern":"^orders\\.retry\\.1\\.1s\\.63f03d3c$","apply-to":"queues","priority":7,` +
		`"definition":{"dead-letter-exchange":"orders.requeue","dead-letter-routing-key":"orders.tier.1.63f03d3c","message-ttl":1000}}`
	if string(body) != wantBody {
		t.Errorf("JSON body\n%s\nwant\n%s", body, wantBody)
	}
}

// In policy mode the work and tier queues carry only what no policy can set:
// re-declaring them with exactly that passes the broker's equivalence check,
// which compares the dead-letter arguments and the TTL.
func TestDeadLetterByPolicyDeclaresNoDeadLetterArguments(t *testing.T) {
	for _, typ := range queueTypes {
		t.Run(string(typ), func(t *testing.T) {
			t.Parallel()
			topo := policyTopology(t, typ, true)
			declareTopology(t, topo)
			bare := amqp.Table{}
			if typ == dlxretry.Quorum {
				bare["x-queue-type"] = "quorum"
			}
			work := amqp.Table{}
			for k, v := range bare {
				work[k] = v
			}
			if typ == dlxretry.Quorum {
				work["x-delivery-limit"] = 1 << 30
			}
			ch := brokertest.Channel(t)
			redeclareQueue(t, ch, topo.Queue, work)
			for i := 1; i <= topo.Tiers(); i++ {
				redeclareQueue(t, ch, topo.TierQueue(i), bare)
			}
		})
	}
}

// Without policy mode the queue arguments are the policies' definitions.
func TestPoliciesMatchQueueArguments(t *testing.T) {
	for _, typ := range queueTypes {
		t.Run(string(typ), func(t *testing.T) {
			t.Parallel()
			topo := policyTopology(t, typ, false)
			declareTopology(t, topo)
			policies, err := topo.Policies()
			if err != nil {
				t.Fatal(err)
			}
			ch := brokertest.Channel(t)
			for i, p := range policies {
				args := amqp.Table{}
				for k, v := range p.Definition {
					args["x-"+k] = v
				}
				if typ == dlxretry.Quorum {
					args["x-queue-type"] = "quorum"
				}
				queue := topo.Queue
				if i > 0 {
					queue = topo.TierQueue(i)
				} else if typ == dlxretry.Quorum {
					args["x-delivery-limit"] = 1 << 30
				}
				redeclareQueue(t, ch, queue, args)
			}
		})
	}
}

// Queues declared with arguments cannot be re-declared in policy mode: the
// broker refuses, and Declare says which argument differs.
func TestSwitchingToPolicyModeIsADeclareError(t *testing.T) {
	t.Parallel()
	topo := policyTopology(t, dlxretry.Classic, false)
	declareTopology(t, topo)
	topo.DeadLetterByPolicy = true
	err := topo.Declare(context.Background(), brokertest.Channel(t))
	var de *dlxretry.DeclareError
	if !errors.As(err, &de) || de.Argument == "" {
		t.Fatalf("Declare in policy mode over argument-mode queues: %v, want a DeclareError naming an argument", err)
	}
	if de.Argument != "x-dead-letter-exchange" && de.Argument != "x-message-ttl" {
		t.Errorf("DeclareError names %q, want a dead-letter argument or the TTL", de.Argument)
	}
}

// With the policies applied by rabbitmqctl, a topology in policy mode
// retries on its schedule and parks at the threshold, as with arguments.
func TestRetryByPolicy(t *testing.T) {
	long(t)
	for _, typ := range queueTypes {
		t.Run(string(typ), func(t *testing.T) {
			t.Parallel()
			delays := delaysMS(100, 300)
			topo := policyTopology(t, typ, true)
			topo.Delays, topo.MaxAttempts = delays, 3
			applyPolicies(t, topo)
			declareTopology(t, topo)
			waitForPolicies(t, topo)

			r := newRecorder(map[string]int{"twice": 2, "never": -1})
			run(t, topo, r.handle, dlxretry.WithHooks(r.hooks()))
			publish(t, topo.Exchange, "sms.send", "twice", "never")
			if got := waitN(t, r.acks, 1, 15*time.Second); got[0] != "twice" {
				t.Fatalf("acked %v, want twice", got)
			}
			if got := waitN(t, r.parks, 1, 15*time.Second); got[0] != "never" {
				t.Fatalf("parked %v, want never", got)
			}
			for _, body := range []string{"twice", "never"} {
				got := r.deliveries(body)
				if len(got) != 3 {
					t.Fatalf("%s delivered %d times, want 3", body, len(got))
				}
				for i := 1; i < len(got); i++ {
					if gap := got[i].start.Sub(got[i-1].end); gap < delays[i-1] {
						t.Errorf("%s: delivery %d came %v after the failure, before the tier's %v", body, i+1, gap, delays[i-1])
					}
					if got[i].attempt != i+1 || got[i].routingKey != topo.TierKey(i) || got[i].origKey != "sms.send" {
						t.Errorf("%s: delivery %d: attempt %d, key %q, original key %q", body, i+1, got[i].attempt, got[i].routingKey, got[i].origKey)
					}
				}
			}
			parked := getAll(t, topo.ParkingQueue(), 1, 5*time.Second)
			if n := parked[0].Headers[dlxretry.HeaderAttempts]; n != int64(3) {
				t.Errorf("parked after %v attempts, want 3", n)
			}
		})
	}
}

func policyTopology(t *testing.T, typ dlxretry.QueueType, byPolicy bool) dlxretry.Topology {
	return dlxretry.Topology{
		Queue:              brokertest.Name(t, "q"),
		Exchange:           brokertest.Name(t, "x"),
		Delays:             delaysMS(100, 200),
		MaxAttempts:        3,
		Type:               typ,
		DeadLetterByPolicy: byPolicy,
	}
}

// redeclareQueue declares queue with args on ch, failing the test if the
// broker finds them inequivalent to the queue's.
func redeclareQueue(t *testing.T, ch *amqp.Channel, queue string, args amqp.Table) {
	t.Helper()
	if _, err := ch.QueueDeclare(queue, true, false, false, false, args); err != nil {
		t.Fatalf("re-declare %s with %v: %v", queue, args, err)
	}
}

// applyPolicies sets the topology's policies with rabbitmqctl and clears
// them when the test ends, whatever happened in between.
func applyPolicies(t *testing.T, topo dlxretry.Topology) {
	t.Helper()
	vhost := policyVhost(t)
	policies, err := topo.Policies()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		eachPolicy(policies, func(p dlxretry.Policy) {
			if out, err := rabbitmqctl("clear_policy", "--vhost", vhost, p.Name); err != nil && !strings.Contains(out, "does not exist") {
				t.Errorf("clear policy %s: %v\n%s", p.Name, err, out)
			}
		})
	})
	eachPolicy(policies, func(p dlxretry.Policy) {
		if out, err := rabbitmqctl(setPolicyArgs(p, vhost)...); err != nil {
			t.Errorf("set policy %s: %v\n%s", p.Name, err, out)
		}
	})
	if t.Failed() {
		t.FailNow()
	}
}

// eachPolicy runs f on every policy at once: each rabbitmqctl call takes
// most of a second.
func eachPolicy(policies []dlxretry.Policy, f func(dlxretry.Policy)) {
	var wg sync.WaitGroup
	for _, p := range policies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(p)
		}()
	}
	wg.Wait()
}

// waitForPolicies waits until rabbitmqctl lists each policy on its queue.
func waitForPolicies(t *testing.T, topo dlxretry.Topology) {
	t.Helper()
	policies, err := topo.Policies()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{topo.Queue: policies[0].Name}
	for i := 1; i <= topo.Tiers(); i++ {
		want[topo.TierQueue(i)] = policies[i].Name
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, err := rabbitmqctl("list_queues", "--vhost", policyVhost(t), "--no-table-headers", "--quiet", "name", "policy")
		if err != nil {
			t.Fatalf("list_queues: %v\n%s", err, out)
		}
		missing := 0
		for q, p := range want {
			if !strings.Contains(out, q+"\t"+p+"\n") {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d queues still lack their policy", missing, len(want))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// policyVhost is the test broker's vhost, after checking that rabbitmqctl
// can manage that broker: it skips the test without rabbitmqctl, or fails
// it when a broker is required.
func policyVhost(t *testing.T) string {
	t.Helper()
	uri, err := amqp.ParseURI(brokertest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("rabbitmqctl"); err != nil {
		msg := "rabbitmqctl not found: it sets the policies of this test"
		if os.Getenv(brokertest.RequireEnv) != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	if h := uri.Host; h != "localhost" && h != "127.0.0.1" && h != "::1" {
		t.Skipf("rabbitmqctl manages the local node, not the broker at %s", h)
	}
	return uri.Vhost
}

func rabbitmqctl(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	words := brokertest.CtlCommand()
	cmd := exec.CommandContext(ctx, words[0], append(words[1:], args...)...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// setPolicyArgs is the rabbitmqctl argument list that applies p in vhost.
func setPolicyArgs(p dlxretry.Policy, vhost string) []string {
	def, _ := json.Marshal(p.Definition)
	return []string{"set_policy", "--vhost", vhost, "--priority", strconv.Itoa(p.Priority),
		"--apply-to", p.ApplyTo, p.Name, p.Pattern, string(def)}
}
