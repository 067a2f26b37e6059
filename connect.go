package dlxretry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	amqp "github.com/rabbitmq/amqp091-go"
)

// brokerURLs checks url and the extra ones from WithURLs. Its errors show
// no password, even for a URL that does not parse.
func brokerURLs(first string, more []string) ([]string, error) {
	urls := append([]string{first}, more...)
	for _, u := range urls {
		if _, err := amqp.ParseURI(u); err != nil {
			problem := scrub(err.Error(), u)
			if shown := redact(u); !strings.Contains(problem, shown) {
				problem = shown + ": " + problem
			}
			return nil, invalid("url", "%s", problem)
		}
	}
	return urls, nil
}

// redact hides the password in a broker URL, for errors, logs and events,
// even in a URL that does not parse.
func redact(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	return scrub(raw, raw)
}

// password finds the password in raw by its shape, scheme://user:password@,
// so that it can be hidden where the URL does not parse.
func password(raw string) string {
	_, rest, ok := strings.Cut(raw, "://")
	if !ok {
		rest = raw
	}
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return ""
	}
	_, pw, _ := strings.Cut(rest[:at], ":")
	return pw
}

// scrub hides raw's password where s shows raw, as url.Redacted does.
func scrub(s, raw string) string {
	if pw := password(raw); pw != "" {
		return strings.ReplaceAll(s, ":"+pw+"@", ":xxxxx@")
	}
	return s
}

// dialTimeout bounds a connection attempt, TCP and AMQP handshake together,
// when ctx has no earlier deadline.
const dialTimeout = 30 * time.Second

// dial opens a connection to url without amqp091-go's own recovery
// (Config.Recovery): the library supervises its connections itself. ctx
// bounds the whole attempt: TCP connect, TLS and the AMQP handshake. It
// returns the TCP connection too, which can unblock a stuck write, and the
// coalescingConn over it.
func dial(ctx context.Context, url string, o *connOptions) (*amqp.Connection, *tcpAttempt, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	var tcp tcpAttempt
	cfg := o.amqpConfig()
	cfg.Dial = func(network, addr string) (net.Conn, error) { return tcp.open(ctx, o, network, addr) }
	conn, err := amqp.DialConfig(url, cfg)
	switch {
	case tcp.cut() && err == nil:
		// ctx ended during the handshake and may have broken the connection.
		conn.Close()
		return nil, nil, ctx.Err()
	case err != nil && ctx.Err() != nil:
		return nil, nil, fmt.Errorf("%w (%v)", ctx.Err(), err)
	case err != nil:
		return nil, nil, err
	}
	return conn, &tcp, nil
}

// tcpAttempt is the TCP connection of one connection attempt, under a
// deadline that ctx moves up to now when it ends.
type tcpAttempt struct {
	sock   net.Conn
	writes *coalescingConn // over sock: what amqp091-go writes to
	stop   func() bool
}

func (a *tcpAttempt) open(ctx context.Context, o *connOptions, network, addr string) (net.Conn, error) {
	conn, err := o.dialTCP(ctx, network, addr)
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
	a.sock, a.writes = conn, newCoalescingConn(conn)
	a.stop = context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	return a.writes, nil
}

// cut stops watching ctx and reports whether ctx ended meanwhile.
func (a *tcpAttempt) cut() bool {
	return a.stop != nil && !a.stop()
}

func (o *connOptions) dialTCP(ctx context.Context, network, addr string) (net.Conn, error) {
	if o.dialer != nil {
		return o.dialer(ctx, network, addr)
	}
	return (&net.Dialer{Timeout: dialTimeout}).DialContext(ctx, network, addr)
}

// amqpConfig is the Config of one connection attempt: the one given with
// WithAMQPConfig, its TLS settings and properties copied so that each URL
// gets its own ServerName and nothing the caller holds is changed.
func (o *connOptions) amqpConfig() amqp.Config {
	cfg := o.config
	if cfg.TLSClientConfig != nil {
		cfg.TLSClientConfig = cfg.TLSClientConfig.Clone()
	}
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = 10 * time.Second
	}
	props := amqp.NewConnectionProperties()
	if cfg.Properties != nil {
		props = make(amqp.Table, len(cfg.Properties)+1)
		for k, v := range cfg.Properties {
			props[k] = v
		}
	}
	if _, named := props["connection_name"]; !named || o.names() {
		props.SetClientConnectionName(o.connName)
	}
	cfg.Properties = props
	return cfg
}

// names reports whether WithConnectionName was given.
func (o *connOptions) names() bool {
	for _, g := range o.given {
		if g == "WithConnectionName" {
			return true
		}
	}
	return false
}

func newBackoff(min, max time.Duration) *backoff.ExponentialBackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = min
	b.MaxInterval = max
	b.MaxElapsedTime = 0
	b.Reset()
	return b
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

// refused tells the broker's answers that another connection attempt cannot
// change: refused credentials, a missing vhost, missing permissions.
func refused(err error) bool {
	if ae, ok := asType[*amqp.Error](err); ok {
		// amqp091-go reports a missing vhost as the broker's 530, and
		// missing permissions come as 403.
		if ae.Code == amqp.NotAllowed || ae.Code == amqp.AccessRefused {
			return true
		}
	}
	return errors.Is(err, amqp.ErrCredentials) || errors.Is(err, amqp.ErrVhost) || errors.Is(err, amqp.ErrSASL)
}

// unstated reports whether err is amqp091-go's reading of a connection that
// closed during the handshake's login or vhost step, rather than a refusal
// the broker sent. RabbitMQ closes the connection without a word on bad
// credentials (it would say why to a client that advertised
// authentication_failure_close, which amqp091-go does not), so that is how
// refused credentials look; but a broker going down, or a load balancer
// losing its backend, at that moment looks the same.
func unstated(err error) bool {
	return errors.Is(err, amqp.ErrCredentials) || errors.Is(err, amqp.ErrVhost)
}

// fatal tells errors that end [Consumer.Run]: a connection that could not
// be made (see [ConnectError]), a closed [Conn], or a topology that clashes
// with the broker's.
func fatal(err error) bool {
	if de, ok := asType[*DeclareError](err); ok && de.Argument != "" {
		return true
	}
	if _, ok := asType[*ConnectError](err); ok {
		return true
	}
	return refused(err) || errors.Is(err, ErrClosed)
}

func (o *connOptions) connected(url string) {
	o.logger.Info("connected", "broker", redact(url))
	if f := o.hooks.OnConnect; f != nil {
		f(ConnectEvent{Broker: redact(url)})
	}
}

func (o *connOptions) disconnected(url string, err error, retryIn time.Duration) {
	o.logger.Warn("connection failed; retrying", "broker", redact(url), "error", err, "in", retryIn)
	if f := o.hooks.OnDisconnect; f != nil {
		f(DisconnectEvent{Broker: redact(url), Err: err, RetryIn: retryIn})
	}
}
