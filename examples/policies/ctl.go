package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dlxretry/dlxretry"
)

// printPolicies shows the policies as rabbitmqctl commands and as requests
// to the management HTTP API.
func printPolicies(out io.Writer, policies []dlxretry.Policy, vhost string) {
	for _, p := range policies {
		fmt.Fprintln(out, shellCommand("rabbitmqctl", setPolicyArgs(p, vhost)))
	}
	for _, p := range policies {
		body, _ := json.Marshal(p)
		fmt.Fprintf(out, "or PUT %s %s\n", apiPath(p, vhost), body)
	}
}

// printClearCommands tells how to remove policies the user applied.
func printClearCommands(out io.Writer, policies []dlxretry.Policy, vhost string) {
	fmt.Fprintln(out, "the policies stay; to remove them:")
	for _, p := range policies {
		fmt.Fprintln(out, " ", shellCommand("rabbitmqctl", clearPolicyArgs(p, vhost)))
	}
}

// cannotUseRabbitmqctl says why rabbitmqctl cannot set policies on the
// broker at uri, or "".
func cannotUseRabbitmqctl(uri amqp.URI) string {
	if _, err := exec.LookPath(ctlCommand()[0]); err != nil {
		return "rabbitmqctl not found"
	}
	switch uri.Host {
	case "localhost", "127.0.0.1", "::1":
		return ""
	}
	return "rabbitmqctl manages this machine's broker, not the one at " + uri.Host
}

func applyPolicies(ctx context.Context, policies []dlxretry.Policy, vhost string, out io.Writer) error {
	err := forEach(policies, func(p dlxretry.Policy) error { return rabbitmqctl(ctx, setPolicyArgs(p, vhost)...) })
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "applied %d policies with rabbitmqctl\n", len(policies))
	return nil
}

// clearPolicies removes the policies, with time of its own (rabbitmqctl can
// take seconds a call on a busy machine); one that is
// not there is no error.
func clearPolicies(policies []dlxretry.Policy, vhost string, out io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := forEach(policies, func(p dlxretry.Policy) error {
		err := rabbitmqctl(ctx, clearPolicyArgs(p, vhost)...)
		if err != nil && strings.Contains(err.Error(), "does not exist") {
			return nil
		}
		return err
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "cleared %d policies\n", len(policies))
	return nil
}

// waitForPolicies waits until rabbitmqctl lists each queue with its policy
// (a policy applies a moment after it is set, or at once to a queue
// declared after it) and prints the queues with their policies.
func waitForPolicies(ctx context.Context, topo dlxretry.Topology, policies []dlxretry.Policy, vhost string, out io.Writer) error {
	queues := []string{topo.Queue}
	for i := 1; i <= topo.Tiers(); i++ {
		queues = append(queues, topo.TierQueue(i))
	}
	for {
		listed, err := rabbitmqctlOutput(ctx, "list_queues", "--vhost", vhost, "--no-table-headers", "--quiet", "name", "policy")
		if err != nil {
			return err
		}
		missing := 0
		for i, q := range queues {
			if !strings.Contains(listed, q+"\t"+policies[i].Name+"\n") {
				missing++
			}
		}
		if missing == 0 {
			for i, q := range queues {
				fmt.Fprintf(out, "  %-40s policy %s\n", q, policies[i].Name)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d queues still lack their policy: %w", missing, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func rabbitmqctl(ctx context.Context, args ...string) error {
	_, err := rabbitmqctlOutput(ctx, args...)
	return err
}

func rabbitmqctlOutput(ctx context.Context, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	words := ctlCommand()
	cmd := exec.CommandContext(ctx, words[0], append(words[1:], args...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("rabbitmqctl %s: %w: %s", args[0], err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// forEach runs f on each policy at once (rabbitmqctl takes most of a second
// to start) and joins the errors.
func forEach(policies []dlxretry.Policy, f func(dlxretry.Policy) error) error {
	errs := make([]error, len(policies))
	var wg sync.WaitGroup
	for i, p := range policies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f(p)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// shellCommand quotes what a POSIX shell would otherwise interpret.
func shellCommand(name string, args []string) string {
	words := []string{name}
	for _, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n\"'\\$`*?[]{}()<>|&;#~!") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		words = append(words, a)
	}
	return strings.Join(words, " ")
}

// ctlCommand is rabbitmqctl, or the command DLXRETRY_RABBITMQCTL names (a
// command line, split on spaces) that controls the broker the example talks
// to, such as a RabbitMQ node running beside the machine's own.
func ctlCommand() []string {
	if words := strings.Fields(os.Getenv("DLXRETRY_RABBITMQCTL")); len(words) > 0 {
		return words
	}
	return []string{"rabbitmqctl"}
}

// setPolicyArgs is the argument list, without the program name, of the
// rabbitmqctl command that applies p in vhost.
func setPolicyArgs(p dlxretry.Policy, vhost string) []string {
	def, _ := json.Marshal(p.Definition) // strings and integers: cannot fail
	return []string{"set_policy", "--vhost", vhost,
		"--priority", strconv.Itoa(p.Priority), "--apply-to", p.ApplyTo,
		p.Name, p.Pattern, string(def)}
}

// clearPolicyArgs is the argument list of the rabbitmqctl command that
// removes p from vhost.
func clearPolicyArgs(p dlxretry.Policy, vhost string) []string {
	return []string{"clear_policy", "--vhost", vhost, p.Name}
}

// apiPath is the management HTTP API's path of p in vhost: PUT it with p
// encoded as JSON to apply p, DELETE it to remove p.
func apiPath(p dlxretry.Policy, vhost string) string {
	return "/api/policies/" + url.PathEscape(vhost) + "/" + url.PathEscape(p.Name)
}
