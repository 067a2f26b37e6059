// Policies runs dlxretry's retry path with dead-lettering managed by RabbitMQ
// policies instead of queue arguments, for teams whose operators own
// dead-lettering (rabbitmqctl set_policy, the management UI or API).
//
// Its topology sets [dlxretry.Topology].DeadLetterByPolicy: Declare gives the
// work queue and the retry tiers no x-dead-letter-* or x-message-ttl
// arguments, and [dlxretry.Topology.Policies] returns one policy per queue
// that sets them: a queue has only one effective policy, and each tier has a
// TTL and a dead-letter routing key of its own. The example prints them as
// rabbitmqctl commands and as management API requests, applies them with
// rabbitmqctl, declares the topology, checks with rabbitmqctl list_queues
// that each queue has its policy, and runs the same retry flow as the
// quickstart: one message succeeds, one fails twice, one fails every time
// and is parked after three attempts. Then it deletes the topology and
// clears the policies.
//
// Run it from the repository root, as a user who may run rabbitmqctl
// (root, or rabbitmq, on a Debian install):
//
//	go run ./examples/policies
//
// It connects to RABBITMQ_URL, or to amqp://guest:guest@localhost:5672/.
// Without rabbitmqctl, or for a broker on another host, it prints the
// policies and stops; apply them yourself and run it again with -applied,
// which skips rabbitmqctl and leaves clearing them to you. Until its policy
// applies, a work queue drops the messages its consumer rejects: apply
// policies before consumers start. The output looks like this (about four
// seconds, most of it rabbitmqctl starting):
//
//	rabbitmqctl set_policy --vhost / --priority 100 --apply-to queues dlxretry.policies.orders '^policies\.orders$' '{"dead-letter-exchange":"policies.orders.retry"}'
//	rabbitmqctl set_policy --vhost / --priority 100 --apply-to queues dlxretry.policies.orders.retry.1.200ms.e25fec7b '^policies\.orders\.retry\.1\.200ms\.e25fec7b$' '{"dead-letter-exchange":"policies.orders.requeue","dead-letter-routing-key":"policies.orders.tier.1.e25fec7b","message-ttl":200}'
//	...
//	or PUT /api/policies/%2F/dlxretry.policies.orders {"name":"dlxretry.policies.orders",…}
//	...
//	applied 3 policies with rabbitmqctl
//	declared policies.orders and its tiers without dead-letter arguments
//	  policies.orders                          policy dlxretry.policies.orders
//	  policies.orders.retry.1.200ms.e25fec7b   policy dlxretry.policies.orders.retry.1.200ms.e25fec7b
//	  policies.orders.retry.2.400ms.71eb3711   policy dlxretry.policies.orders.retry.2.400ms.71eb3711
//	ack     hello11 (attempt 1)
//	retry   hello12 attempt 1 failed: callback down -> tier 1 (200ms)
//	retry   hello99 attempt 1 failed: callback down -> tier 1 (200ms)
//	retry   hello12 attempt 2 failed: callback down -> tier 2 (400ms)
//	retry   hello99 attempt 2 failed: callback down -> tier 2 (400ms)
//	ack     hello12 (attempt 3)
//	park    hello99 after 3 attempts: callback down
//	summary: 3 messages, 2 acked, 4 retries, 1 parked
//	deleted topology policies.orders
//	cleared 3 policies
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dlxretry/dlxretry"
)

const defaultURL = "amqp://guest:guest@localhost:5672/"

// config is one run's settings; tests use a prefix of their own.
type config struct {
	brokerURL string
	prefix    string // names the queue and the exchange
	applied   bool   // the user applied the policies: do not use rabbitmqctl
}

func main() {
	applied := flag.Bool("applied", false, "the policies are applied already: do not run rabbitmqctl")
	flag.Parse()
	brokerURL := os.Getenv("RABBITMQ_URL")
	if brokerURL == "" {
		brokerURL = defaultURL
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := runWith(ctx, config{brokerURL: brokerURL, prefix: "policies", applied: *applied}, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "policies:", err)
		os.Exit(1)
	}
}

func topology(prefix string) dlxretry.Topology {
	return dlxretry.Topology{
		Queue:              prefix + ".orders",
		Exchange:           prefix,
		Delays:             []time.Duration{200 * time.Millisecond, 400 * time.Millisecond},
		MaxAttempts:        3,
		DeadLetterByPolicy: true,
	}
}

// errApplyFirst stops a run that cannot apply the policies itself.
var errApplyFirst = errors.New("apply the policies above, then run again with -applied")

// runWith prints and applies the policies, declares the topology, runs the
// retry flow, and removes what it made.
func runWith(ctx context.Context, cfg config, out io.Writer) (err error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	topo := topology(cfg.prefix)
	policies, err := topo.Policies()
	if err != nil {
		return err
	}
	uri, err := amqp.ParseURI(cfg.brokerURL)
	if err != nil {
		return err
	}
	printPolicies(out, policies, uri.Vhost)
	ctl := !cfg.applied
	if ctl {
		if why := cannotUseRabbitmqctl(uri); why != "" {
			fmt.Fprintf(out, "%s: cannot apply the policies\n", why)
			return errApplyFirst
		}
		defer func() { err = errors.Join(err, clearPolicies(policies, uri.Vhost, out)) }()
		if err := applyPolicies(ctx, policies, uri.Vhost, out); err != nil {
			return err
		}
	} else {
		defer printClearCommands(out, policies, uri.Vhost)
	}
	conn, err := amqp.DialConfig(cfg.brokerURL, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		return fmt.Errorf("cannot connect to RabbitMQ (set RABBITMQ_URL, or run one on localhost:5672): %w", err)
	}
	defer conn.Close()
	if err := declare(ctx, conn, topo, out); err != nil {
		return err
	}
	defer func() { err = errors.Join(err, tearDown(ctx, conn, topo, out)) }()
	if ctl {
		if err := waitForPolicies(ctx, topo, policies, uri.Vhost, out); err != nil {
			return err
		}
	}
	return retryFlow(ctx, cfg.brokerURL, topo, out)
}

// declare deletes what an interrupted run may have left and declares the topology.
func declare(ctx context.Context, conn *amqp.Connection, topo dlxretry.Topology, out io.Writer) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	if err := topo.Delete(ctx, ch); err != nil {
		return fmt.Errorf("clear leftovers: %w", err)
	}
	if err := topo.Declare(ctx, ch); err != nil {
		return err
	}
	fmt.Fprintf(out, "declared %s and its tiers without dead-letter arguments\n", topo.Queue)
	return nil
}

// tearDown deletes the topology on a fresh channel, with time of its own.
func tearDown(ctx context.Context, conn *amqp.Connection, topo dlxretry.Topology, out io.Writer) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("delete topology: %w", err)
	}
	defer ch.Close()
	if err := topo.Delete(ctx, ch); err != nil {
		return fmt.Errorf("delete topology: %w", err)
	}
	fmt.Fprintf(out, "deleted topology %s\n", topo.Queue)
	return nil
}
