package dlxretry_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/dlxretry/dlxretry"
	"github.com/dlxretry/dlxretry/internal/brokertest"
	amqp "github.com/rabbitmq/amqp091-go"
)

// tlsEnv names the variable that says where the TLS node is (.ci/tlsnode).
const tlsEnv = "DLXRETRY_TLS_URL"

// tlsNode is the broker node with a TLS listener that .ci/tlsnode runs: its
// URL (guest over TLS) and, held in memory, its CA and a client
// certificate whose CN is a user of the node.
type tlsNode struct {
	url       string
	ca        *x509.CertPool
	client    tls.Certificate
	clientCN  string
	unchecked string // the same node by its IP address, which its certificate does not name
}

// needTLSNode returns the TLS node. Without DLXRETRY_TLS_URL the test
// skips; with it the node must be there: the test fails if it is not and
// DLXRETRY_REQUIRE_BROKER is set, and skips otherwise.
func needTLSNode(t *testing.T) tlsNode {
	t.Helper()
	raw := os.Getenv(tlsEnv)
	if raw == "" {
		t.Skipf("no TLS node: %s is unset; start one with .ci/tlsnode start and eval \"$(.ci/tlsnode env)\" (as root)", tlsEnv)
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("%s: %v", tlsEnv, err)
	}
	if c, err := net.DialTimeout("tcp", u.Host, time.Second); err != nil {
		msg := "the TLS node at " + u.Host + " does not answer (" + err.Error() + "); .ci/tlsnode start runs it"
		if os.Getenv(brokertest.RequireEnv) != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	} else {
		c.Close()
	}
	n := tlsNode{url: raw, ca: x509.NewCertPool(), clientCN: "dlxretry-client"}
	if !n.ca.AppendCertsFromPEM(readEnvFile(t, "DLXRETRY_TLS_CA")) {
		t.Fatal("DLXRETRY_TLS_CA holds no PEM certificate")
	}
	if n.client, err = tls.X509KeyPair(readEnvFile(t, "DLXRETRY_TLS_CERT"), readEnvFile(t, "DLXRETRY_TLS_KEY")); err != nil {
		t.Fatalf("client certificate: %v", err)
	}
	_, port, _ := net.SplitHostPort(u.Host)
	u.Host = net.JoinHostPort("127.0.0.1", port)
	n.unchecked = u.String()
	return n
}

func readEnvFile(t *testing.T, env string) []byte {
	t.Helper()
	b, err := os.ReadFile(os.Getenv(env))
	if err != nil {
		t.Fatalf("%s (set by .ci/tlsnode env): %v", env, err)
	}
	return b
}

// tlsQueue declares a durable queue on the TLS node, deleted when the test
// ends.
func tlsQueue(t *testing.T, conn *dlxretry.Conn) string {
	t.Helper()
	ch, err := conn.Channel(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	q := brokertest.Name(t, "q")
	if _, err := ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := ch.QueueDelete(q, false, false, false); err != nil {
			t.Errorf("cleanup: delete %s: %v", q, err)
		}
	})
	return q
}

// A private CA given as a *tls.Config held in memory: a Consumer and a
// Publisher share a connection over TLS. Without the CA, the server's
// certificate is refused.
func TestTLSPrivateCA(t *testing.T) {
	t.Parallel()
	node := needTLSNode(t)
	cfg := &tls.Config{RootCAs: node.ca, MinVersion: tls.VersionTLS12}
	conn, err := dlxretry.Dial(context.Background(), node.url, dlxretry.WithAMQPConfig(amqp.Config{TLSClientConfig: cfg}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	topo := dlxretry.Topology{Queue: brokertest.Name(t, "q"), Delays: delaysMS(50), MaxAttempts: 1}
	ch, err := conn.Channel(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := topo.Declare(context.Background(), ch); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := topo.Delete(context.Background(), ch); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	r := newRecorder(nil)
	c, err := dlxretry.NewConsumer(conn, topo, r.handle, dlxretry.WithHooks(r.hooks()))
	if err != nil {
		t.Fatal(err)
	}
	startRun(t, c)
	pub, err := dlxretry.NewPublisher(conn)
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(context.Background(), "", topo.Queue, amqpMsg("over TLS")); err != nil {
		t.Fatal(err)
	}
	if got := waitN(t, r.acks, 1, 5*time.Second); got[0] != "over TLS" {
		t.Errorf("acked %v", got)
	}
	if cfg.ServerName != "" {
		t.Errorf("the caller's tls.Config was changed: ServerName %q", cfg.ServerName)
	}

	_, err = dlxretry.Dial(context.Background(), node.url, dlxretry.WithConnectTimeout(500*time.Millisecond),
		dlxretry.WithAMQPConfig(amqp.Config{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12}}))
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) || !errors.Is(err, dlxretry.ErrConnectTimeout) {
		t.Errorf("Dial without the CA: %v, want an unknown authority after the connect timeout", err)
	}
}

// A client certificate held in memory logs in with SASL EXTERNAL as the user
// its CN names: the broker accepts a message whose UserId is that user, and
// refuses one that claims another.
func TestTLSExternalAuth(t *testing.T) {
	t.Parallel()
	node := needTLSNode(t)
	u, _ := url.Parse(node.url)
	u.User = nil // no user name or password: the certificate says who
	conn, err := dlxretry.Dial(context.Background(), u.String(), dlxretry.WithAMQPConfig(amqp.Config{
		TLSClientConfig: &tls.Config{RootCAs: node.ca, Certificates: []tls.Certificate{node.client}, MinVersion: tls.VersionTLS12},
		SASL:            []amqp.Authentication{&amqp.ExternalAuth{}},
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	q := tlsQueue(t, conn)
	pub, err := dlxretry.NewPublisher(conn)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := pub.Publish(ctx, "", q, amqp.Publishing{UserId: node.clientCN, Body: []byte("mine")}); err != nil {
		t.Errorf("publish as %s: %v", node.clientCN, err)
	}
	var ae *amqp.Error
	if err := pub.Publish(ctx, "", q, amqp.Publishing{UserId: "guest", Body: []byte("not mine")}); !errors.As(err, &ae) || ae.Code != amqp.PreconditionFailed {
		t.Errorf("publish claiming to be guest: %v, want the broker's 406", err)
	}
	if err := pub.Publish(ctx, "", q, amqp.Publishing{Body: []byte("after")}); err != nil {
		t.Errorf("publish after a refused one: %v", err)
	}
}

// The TLS settings hold for every URL in turn: a first URL whose host the
// certificate does not name fails, and the next one, with its own server
// name, connects.
func TestTLSAcrossURLs(t *testing.T) {
	t.Parallel()
	node := needTLSNode(t)
	cfg := &tls.Config{RootCAs: node.ca, MinVersion: tls.VersionTLS12}
	failed := make(chan error, 10)
	conn, err := dlxretry.Dial(context.Background(), node.unchecked, dlxretry.WithURLs(node.url),
		dlxretry.WithAMQPConfig(amqp.Config{TLSClientConfig: cfg}),
		dlxretry.WithReconnectDelay(10*time.Millisecond, 50*time.Millisecond),
		dlxretry.WithHooks(dlxretry.Hooks{OnDisconnect: func(e dlxretry.DisconnectEvent) { failed <- e.Err }}))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	select {
	case err := <-failed:
		var invalid x509.HostnameError
		if !errors.As(err, &invalid) {
			t.Errorf("the first URL failed with %v, want a host name the certificate does not name", err)
		}
	default:
		t.Error("the first URL did not fail")
	}
	if _, err := conn.Channel(context.Background()); err != nil {
		t.Error(err)
	}
	if cfg.ServerName != "" {
		t.Errorf("the caller's tls.Config was changed: ServerName %q", cfg.ServerName)
	}
}
