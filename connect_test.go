package dlxretry_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dlxretry/dlxretry"
	"github.com/dlxretry/dlxretry/internal/brokertest"
	amqp "github.com/rabbitmq/amqp091-go"
)

// brokerURLWith is the test broker's URL with another user, password or vhost.
func brokerURLWith(t *testing.T, user, pass, vhost string) string {
	t.Helper()
	u, err := url.Parse(brokertest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(user, pass)
	u.Path = "/" + url.PathEscape(vhost)
	u.RawPath = ""
	return u.String()
}

// addVhost creates a vhost, removed when the test ends.
func addVhost(t *testing.T) string {
	t.Helper()
	vhost := brokertest.Name(t, "vhost")
	brokertest.Ctl(t, "add_vhost", vhost)
	t.Cleanup(func() { brokertest.Ctl(t, "delete_vhost", vhost) })
	return vhost
}

// addUser creates a user with password pass and no permissions, removed
// when the test ends.
func addUser(t *testing.T, pass string) string {
	t.Helper()
	user := brokertest.Name(t, "user")
	brokertest.Ctl(t, "add_user", user, pass)
	t.Cleanup(func() { brokertest.Ctl(t, "delete_user", user) })
	return user
}

// refusedURLs are broker URLs the broker refuses, whatever the number of
// attempts: a wrong password, a vhost that does not exist, and a vhost the
// user has no permission on.
func refusedURLs(t *testing.T, pass string) map[string]string {
	t.Helper()
	user := addUser(t, pass)
	vhost := addVhost(t)
	return map[string]string{
		"refused credentials": brokerURLWith(t, user, pass+"-wrong", "/"),
		"missing vhost":       brokerURLWith(t, user, pass, brokertest.Name(t, "nowhere")),
		"access refused":      brokerURLWith(t, user, pass, vhost),
	}
}

// silentListener accepts TCP connections and never says a word.
func silentListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String()
}

// asOptions gives connection options as the options of a constructor.
func asOptions[T any](opts []dlxretry.ConnOption) []T {
	out := make([]T, len(opts))
	for i, o := range opts {
		out[i] = any(o).(T)
	}
	return out
}

// returnsWithin runs f and fails the test unless it returns within d.
func returnsWithin(t *testing.T, d time.Duration, what string, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("%s still blocked after %v", what, time.Since(start).Round(time.Millisecond))
		return nil
	}
}

// The broker's refusals are final on the first connect: Consumer.Run,
// Publish and Dial return at once with a *ConnectError wrapping the
// broker's error instead of backing off and retrying (refused credentials
// after one more attempt, made at once).
func TestFirstConnectRefused(t *testing.T) {
	long(t)
	t.Parallel()
	topo := dlxretry.Topology{Queue: brokertest.Name(t, "q"), Delays: delaysMS(50), MaxAttempts: 1}
	// Backing off a minute after a failure: only an error that ends the
	// attempts returns within the test's bound.
	slow := dlxretry.WithReconnectDelay(time.Minute, time.Minute)
	ctx := context.Background()
	clients := map[string]func(u string) error{
		"Consumer.Run": func(u string) error {
			c, err := dlxretry.NewConsumer(u, topo, func(context.Context, *dlxretry.Delivery) error { return nil }, slow)
			if err != nil {
				return err
			}
			return c.Run(ctx)
		},
		"Publish": func(u string) error {
			pub, err := dlxretry.NewPublisher(u, slow)
			if err != nil {
				return err
			}
			defer pub.Close()
			return pub.Publish(ctx, "", "q", amqp.Publishing{})
		},
		"Dial": func(u string) error {
			_, err := dlxretry.Dial(ctx, u, slow)
			return err
		},
	}
	for name, u := range refusedURLs(t, "pw") {
		for client, try := range clients {
			// In parallel: RabbitMQ answers refused credentials after 3s.
			t.Run(name+"/"+client, func(t *testing.T) {
				t.Parallel()
				// Refused credentials look like a connection closed during the
				// login, so they are final on the second attempt, made at once.
				attempts := map[bool]int{true: 2, false: 1}[name == "refused credentials"]
				checkRefusal(t, client, attempts, returnsWithin(t, 20*time.Second, client, func() error { return try(u) }))
			})
		}
	}
}

func checkRefusal(t *testing.T, what string, attempts int, err error) {
	t.Helper()
	var ce *dlxretry.ConnectError
	var ae *amqp.Error
	if !errors.As(err, &ce) || ce.Attempts != attempts || !errors.As(err, &ae) || (ae.Code != amqp.AccessRefused && ae.Code != amqp.NotAllowed) {
		t.Errorf("%s: %v, want a *ConnectError after %d attempts with the broker's refusal (403 or 530)", what, err, attempts)
	}
}

// A first connection that never comes up is an error from Run, Publish
// and Dial once WithConnectTimeout has passed, wherever it fails: nothing
// listening, or a port that accepts TCP and never speaks AMQP.
func TestFirstConnectTimeout(t *testing.T) {
	t.Parallel()
	topo := dlxretry.Topology{Queue: brokertest.Name(t, "q"), Delays: delaysMS(50), MaxAttempts: 1}
	for name, addr := range map[string]string{"refused": "127.0.0.1:1", "silent": silentListener(t)} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			u := "amqp://guest:guest@" + addr + "/"
			bound := dlxretry.WithConnectTimeout(500 * time.Millisecond)
			fast := dlxretry.WithReconnectDelay(10*time.Millisecond, 50*time.Millisecond)
			c, err := dlxretry.NewConsumer(u, topo, func(context.Context, *dlxretry.Delivery) error { return nil }, bound, fast)
			if err != nil {
				t.Fatal(err)
			}
			err = returnsWithin(t, 3*time.Second, "Consumer.Run", func() error { return c.Run(context.Background()) })
			checkConnectTimeout(t, "Consumer.Run", err)

			pub, err := dlxretry.NewPublisher(u, bound, fast)
			if err != nil {
				t.Fatal(err)
			}
			defer pub.Close()
			err = returnsWithin(t, 3*time.Second, "Publish", func() error {
				return pub.Publish(context.Background(), "", "q", amqp.Publishing{})
			})
			checkConnectTimeout(t, "Publish", err)

			err = returnsWithin(t, 3*time.Second, "Dial", func() error {
				_, err := dlxretry.Dial(context.Background(), u, bound, fast)
				return err
			})
			checkConnectTimeout(t, "Dial", err)
		})
	}
}

func checkConnectTimeout(t *testing.T, what string, err error) {
	t.Helper()
	var ce *dlxretry.ConnectError
	if !errors.As(err, &ce) || !errors.Is(err, dlxretry.ErrConnectTimeout) || ce.Broker == "" {
		t.Errorf("%s: %v, want a *ConnectError wrapping ErrConnectTimeout", what, err)
	}
}

// No error, log line or hook event shows a password, on any failure path.
func TestPasswordNeverShown(t *testing.T) {
	long(t)
	t.Parallel()
	const secret = "S3cretPW"
	user := addUser(t, secret)
	unsafe := map[string]string{
		"bad port":            "amqp://" + user + ":" + secret + "@127.0.0.1:99999x/",
		"bad escape":          "amqp://" + user + ":" + secret + "@127.0.0.1/%zz",
		"refused credentials": brokerURLWith(t, user, secret+"-wrong", "/"),
		"unreachable host":    "amqp://" + user + ":" + secret + "@127.0.0.1:1/",
		"missing vhost":       brokerURLWith(t, user, secret, brokertest.Name(t, "nowhere")),
	}
	topo := dlxretry.Topology{Queue: brokertest.Name(t, "q"), Delays: delaysMS(50), MaxAttempts: 1}
	for name, u := range unsafe {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var seen []string
			var mu sync.Mutex
			see := func(s string) { mu.Lock(); seen = append(seen, s); mu.Unlock() }
			logger, logs := newLog()
			hooks := dlxretry.Hooks{
				OnConnect:    func(e dlxretry.ConnectEvent) { see(fmt.Sprintf("%+v", e)) },
				OnDisconnect: func(e dlxretry.DisconnectEvent) { see(fmt.Sprintf("%+v", e)) },
				OnPublish:    func(_ context.Context, e dlxretry.PublishEvent) { see(fmt.Sprintf("%+v", e)) },
			}
			opts := []dlxretry.ConnOption{dlxretry.WithLogger(logger), dlxretry.WithHooks(hooks),
				dlxretry.WithReconnectDelay(10*time.Millisecond, 50*time.Millisecond)}
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			for _, try := range []func() error{
				func() error {
					c, err := dlxretry.NewConsumer(u, topo, func(context.Context, *dlxretry.Delivery) error { return nil }, asOptions[dlxretry.Option](opts)...)
					if err != nil {
						return err
					}
					return c.Run(ctx)
				},
				func() error {
					_, err := dlxretry.NewConsumer(brokertest.URL(t), topo, func(context.Context, *dlxretry.Delivery) error { return nil },
						asOptions[dlxretry.Option](append(opts, dlxretry.WithURLs(u)))...)
					return err
				},
				func() error {
					p, err := dlxretry.NewPublisher(u, asOptions[dlxretry.PublisherOption](opts)...)
					if err != nil {
						return err
					}
					defer p.Close()
					return p.Publish(ctx, "", "q", amqp.Publishing{})
				},
				func() error {
					_, err := dlxretry.Dial(ctx, u, opts...)
					return err
				},
			} {
				if err := try(); err != nil {
					see(fmt.Sprintf("%v %+v", err, err))
				}
			}
			see(logs.String())
			mu.Lock()
			defer mu.Unlock()
			for _, s := range seen {
				if strings.Contains(s, secret) {
					t.Errorf("the password shows in %q", s)
				}
			}
		})
	}
}

// Cancelling Run ends it even when the broker stops reading right after
// the handshake, so that opening a channel waits in vain.
func TestRunCancelDuringChannelOpen(t *testing.T) {
	t.Parallel()
	proxy := startGateProxy(t)
	proxy.CloseAfterHandshake()
	topo := dlxretry.Topology{Queue: brokertest.Name(t, "q"), Delays: delaysMS(50), MaxAttempts: 1}
	c, err := dlxretry.NewConsumer(proxy.URL(t), topo, func(context.Context, *dlxretry.Delivery) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	err = returnsWithin(t, 3*time.Second, "Run", func() error { return c.Run(ctx) })
	if err != nil {
		t.Errorf("Run: %v, want nil after its ctx ended", err)
	}
}
