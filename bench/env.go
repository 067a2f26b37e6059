package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// env is what every scenario shares: the configuration, an admin
// connection for declaring, filling and deleting, and the message body.
type env struct {
	cfg     config
	conn    *amqp.Connection
	body    []byte
	prefix  string
	version string

	mu      sync.Mutex
	cleanup map[string]func(*amqp.Channel) error // by name, undone in close
}

func newEnv(cfg config) (*env, error) {
	conn, err := amqp.Dial(cfg.url)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", redact(cfg.url), err)
	}
	id := make([]byte, 3)
	_, _ = rand.Read(id)
	v, _ := conn.Properties["version"].(string)
	brokerPID = 0 // unless the broker is on this machine: elsewhere, its CPU is not ours to read
	if u, err := amqp.ParseURI(cfg.url); err == nil && loopback(u.Host) {
		brokerPID = findBroker(u.Port)
	}
	body := make([]byte, cfg.size)
	for i := range body {
		body[i] = byte('a' + i%26)
	}
	return &env{
		cfg:     cfg,
		conn:    conn,
		body:    body,
		prefix:  fmt.Sprintf("dlxretry-bench-%d-%s", os.Getpid(), hex.EncodeToString(id)),
		version: v,
		cleanup: make(map[string]func(*amqp.Channel) error),
	}, nil
}

// name is a unique name for an entity of this run.
func (e *env) name(parts ...string) string {
	return e.prefix + "." + strings.Join(parts, ".")
}

// channel opens a fresh admin channel: a failed declaration closes its
// channel, so none is kept.
func (e *env) channel() (*amqp.Channel, error) {
	if e.conn.IsClosed() {
		conn, err := amqp.Dial(e.cfg.url)
		if err != nil {
			return nil, err
		}
		e.conn = conn
	}
	return e.conn.Channel()
}

func (e *env) do(f func(*amqp.Channel) error) error {
	ch, err := e.channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	return f(ch)
}

// declareQueue declares a durable classic queue and remembers to delete it.
func (e *env) declareQueue(name string, args amqp.Table) error {
	e.remember(name, func(ch *amqp.Channel) error {
		_, err := ch.QueueDelete(name, false, false, false)
		return err
	})
	return e.do(func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclare(name, true, false, false, false, args)
		return err
	})
}

// remember registers how to delete name; forget runs it now.
func (e *env) remember(name string, del func(*amqp.Channel) error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cleanup[name] = del
}

func (e *env) forget(names ...string) error {
	var errs []error
	for _, name := range names {
		e.mu.Lock()
		del, ok := e.cleanup[name]
		delete(e.cleanup, name)
		e.mu.Unlock()
		if ok {
			errs = append(errs, e.do(del))
		}
	}
	return errors.Join(errs...)
}

func (e *env) close() {
	e.mu.Lock()
	names := make([]string, 0, len(e.cleanup))
	for name := range e.cleanup {
		names = append(names, name)
	}
	e.mu.Unlock()
	if err := e.forget(names...); err != nil {
		progress("cleanup: %v", err)
	}
	_ = e.conn.Close()
}

// message is the publishing every scenario sends: persistent, the
// configured body, and an id.
func (e *env) message(id string) amqp.Publishing {
	return amqp.Publishing{DeliveryMode: amqp.Persistent, MessageId: id, Body: e.body}
}

// fill publishes n messages to queue through the default exchange with
// pipelined confirms, before anything is timed. Ids are prefix + index.
func (e *env) fill(ctx context.Context, queue, prefix string, n int) error {
	ch, err := e.channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	if err := ch.Confirm(false); err != nil {
		return err
	}
	pending := make([]*amqp.DeferredConfirmation, 0, 1024)
	for i := range n {
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", queue, false, false, e.message(prefix+strconv.Itoa(i)))
		if err != nil {
			return err
		}
		if pending = append(pending, dc); len(pending) == cap(pending) {
			if err := waitAll(ctx, pending); err != nil {
				return err
			}
			pending = pending[:0]
		}
	}
	return waitAll(ctx, pending)
}

func waitAll(ctx context.Context, dcs []*amqp.DeferredConfirmation) error {
	for _, dc := range dcs {
		ok, err := dc.WaitContext(ctx)
		if err != nil {
			return err
		}
		if !ok {
			return errors.New("publish nacked by the broker")
		}
	}
	return nil
}

// depth is the number of ready messages in queue.
func (e *env) depth(queue string) (int, error) {
	var n int
	err := e.do(func(ch *amqp.Channel) error {
		q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
		n = q.Messages
		return err
	})
	return n, err
}

// waitDepth polls until queue holds want messages.
func (e *env) waitDepth(ctx context.Context, queue string, want int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		n, err := e.depth(queue)
		if err != nil || n == want {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s holds %d messages after %s, want %d", queue, n, timeout, want)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func loopback(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

func redact(raw string) string {
	u, err := amqp.ParseURI(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.Password = "xxx"
	return u.String()
}

// machine describes where and how the run happened, as markdown.
func (e *env) machine() string {
	c := e.cfg
	return fmt.Sprintf(`## dlxretry benchmarks

| | |
|---|---|
| command | %s |
| machine | %d cores (%s), %s RAM, %s |
| broker | RabbitMQ %s at %s%s |
| Go | %s %s/%s |
| sizes | body %d B, prefetch %d, concurrency %d, S1 n=%d, S2 n=%d, S3 %s per run with %d in flight (pipelined) and %s goroutines (Publish), %d rounds (median) |
| load average at start | %s |

`, command(), runtime.NumCPU(), cpuModel(), memTotal(), osName(), e.version, redact(c.url), brokerNote(),
		runtime.Version(), runtime.GOOS, runtime.GOARCH,
		c.size, c.prefetch, c.concurrency, c.n, c.n2, c.s3Time, c.inflight, joinInts(c.goroutines), c.rounds, loadAverage())
}

// command is how this run was started, as it would be typed in bench/.
func command() string {
	return "`" + strings.TrimSpace("cd bench && go run . "+strings.Join(os.Args[1:], " ")) + "`"
}

func readFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return string(b)
}

func fieldOf(text, key, sep string) string {
	for _, line := range strings.Split(text, "\n") {
		if k, v, ok := strings.Cut(line, sep); ok && strings.TrimSpace(k) == key {
			return strings.Trim(strings.TrimSpace(v), `"`)
		}
	}
	return "unknown"
}

func cpuModel() string { return fieldOf(readFile("/proc/cpuinfo"), "model name", ":") }
func osName() string   { return fieldOf(readFile("/etc/os-release"), "PRETTY_NAME", "=") }

func memTotal() string {
	kb, err := strconv.Atoi(strings.TrimSuffix(fieldOf(readFile("/proc/meminfo"), "MemTotal", ":"), " kB"))
	if err != nil {
		return "unknown"
	}
	return fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
}

func loadAverage() string {
	f := strings.Fields(readFile("/proc/loadavg"))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func brokerNote() string {
	if brokerPID == 0 {
		return " (not on this machine: broker CPU not measured)"
	}
	return fmt.Sprintf(" (local, pid %d: broker CPU read from /proc)", brokerPID)
}

func joinInts(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ", ")
}
