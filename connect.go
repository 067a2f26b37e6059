package dlxretry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"

	"github.com/cenkalti/backoff/v4"
	amqp "github.com/rabbitmq/amqp091-go"
)

// brokerURLs checks url and the extra ones from WithURLs.
func brokerURLs(first string, more []string) ([]string, error) {
	urls := append([]string{first}, more...)
	for _, u := range urls {
		if _, err := amqp.ParseURI(u); err != nil {
			return nil, invalid("url", "%q: %v", redact(u), err)
		}
	}
	return urls, nil
}

// redact hides the password in a broker URL, for logs and events.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// dialTimeout bounds a connection attempt, TCP and AMQP handshake together,
// when ctx has no earlier deadline.
const dialTimeout = 30 * time.Second

// dial opens a connection without amqp091-go's own recovery
// (Config.Recovery): the Consumer and Publisher supervise their connections
// themselves, declaring the topology again on each new one. ctx bounds the
// whole attempt: TCP connect, TLS and the AMQP handshake.
func dial(ctx context.Context, url, name string) (*amqp.Connection, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(name)
	var stop func() bool
	cfg := amqp.Config{Properties: props, Heartbeat: 10 * time.Second,
		Dial: func(network, addr string) (net.Conn, error) {
			conn, err := (&net.Dialer{Timeout: dialTimeout}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			deadline, ok := ctx.Deadline()
			if !ok || time.Until(deadline) > dialTimeout {
				deadline = time.Now().Add(dialTimeout)
			}
			// amqp091-go clears the deadline once the handshake is done.
			if err := conn.SetDeadline(deadline); err != nil {
				conn.Close()
				return nil, err
			}
			stop = context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
			return conn, nil
		}}
	conn, err := amqp.DialConfig(url, cfg)
	if stop != nil && !stop() && err == nil {
		// ctx ended during the handshake and may have broken the connection.
		conn.Close()
		return nil, ctx.Err()
	}
	if err != nil && ctx.Err() != nil {
		return nil, fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return conn, err
}

func newBackoff(o *options) *backoff.ExponentialBackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = o.reconnectMin
	b.MaxInterval = o.reconnectMax
	b.MaxElapsedTime = 0
	b.Reset()
	return b
}

// redial connects to the brokers in turn, waiting with backoff between
// failed attempts, until one answers, ctx ends, or an error says retrying
// is pointless.
func redial(ctx context.Context, urls []string, o *options) (*amqp.Connection, error) {
	b := newBackoff(o)
	for attempt := 0; ; attempt++ {
		u := urls[attempt%len(urls)]
		conn, err := dial(ctx, u, o.connName)
		if err == nil {
			o.connected(u)
			return conn, nil
		}
		if fatal(err) {
			return nil, err
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("dlxretry: connect: %w", err)
		}
		wait := b.NextBackOff()
		o.disconnected(u, err, wait)
		if sleep(ctx, wait) != nil {
			return nil, fmt.Errorf("dlxretry: connect: %w (last error: %v)", ctx.Err(), err)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// fatal tells errors that another connection attempt cannot fix: refused
// credentials or vhost, or a topology that clashes with the broker's.
func fatal(err error) bool {
	var de *DeclareError
	if errors.As(err, &de) && de.Argument != "" {
		return true
	}
	if ae, ok := errors.AsType[*amqp.Error](err); ok {
		// amqp091-go reports a missing vhost as the broker's 530, and
		// missing permissions come as 403.
		if ae.Code == amqp.NotAllowed || ae.Code == amqp.AccessRefused {
			return true
		}
	}
	return errors.Is(err, amqp.ErrCredentials) || errors.Is(err, amqp.ErrVhost) || errors.Is(err, amqp.ErrSASL)
}

func (o *options) connected(url string) {
	o.logger.Info("connected", "broker", redact(url))
	if f := o.hooks.OnConnect; f != nil {
		f(ConnectEvent{Broker: redact(url)})
	}
}

func (o *options) disconnected(url string, err error, retryIn time.Duration) {
	o.logger.Warn("connection failed; retrying", "broker", redact(url), "error", err, "in", retryIn)
	if f := o.hooks.OnDisconnect; f != nil {
		f(DisconnectEvent{Broker: redact(url), Err: err, RetryIn: retryIn})
	}
}
