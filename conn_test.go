package dlxretry_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlxretry/dlxretry"
	"github.com/dlxretry/dlxretry/internal/brokertest"
	"github.com/dlxretry/dlxretry/parkinglot"
	amqp "github.com/rabbitmq/amqp091-go"
)

// newConn returns a Conn to the test broker, closed when the test ends.
func newConn(t *testing.T, opts ...dlxretry.ConnOption) *dlxretry.Conn {
	t.Helper()
	c, err := dlxretry.NewConn(brokertest.URL(t), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// connections counts the broker's connections whose connection_name is name.
func connections(t *testing.T, name string) int {
	t.Helper()
	out := brokertest.Ctl(t, "list_connections", "-q", "--no-table-headers", "client_properties")
	return strings.Count(out, `{"connection_name","`+name+`"}`)
}

// A Consumer, a Publisher and a parking lot share one connection, each on
// channels of its own: a publish the broker refuses does not touch the
// consumer; when the connection is lost, the consumer's session ends and
// resumes on the next connection, and the publisher publishes on it.
func TestSharedConn(t *testing.T) {
	long(t)
	t.Parallel()
	topo := declare(t, dlxretry.Classic, delaysMS(50), 1)
	name := brokertest.Name(t, "conn")
	conn := newConn(t, dlxretry.WithConnectionName(name), dlxretry.WithReconnectDelay(10*time.Millisecond, 100*time.Millisecond))
	sessions := make(chan string, 10)
	ended := make(chan error, 10)
	r := newRecorder(map[string]int{"parked": -1})
	hooks := r.hooks()
	hooks.OnConnect = func(e dlxretry.ConnectEvent) { sessions <- e.Broker }
	hooks.OnDisconnect = func(e dlxretry.DisconnectEvent) { ended <- e.Err }
	c, err := dlxretry.NewConsumer(conn, topo, r.handle, dlxretry.WithHooks(hooks))
	if err != nil {
		t.Fatal(err)
	}
	startRun(t, c)
	pub, err := dlxretry.NewPublisher(conn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pub.Close() })
	lot, err := parkinglot.New(conn, topo.Queue)
	if err != nil {
		t.Fatal(err)
	}
	waitN(t, sessions, 1, 5*time.Second)
	ctx := context.Background()

	var ae *amqp.Error
	if err := pub.Publish(ctx, brokertest.Name(t, "missing"), "k", amqpMsg("lost")); !errors.As(err, &ae) || ae.Code != amqp.NotFound {
		t.Fatalf("publish to a missing exchange: %v, want the broker's 404", err)
	}
	for _, body := range []string{"one", "parked"} {
		if err := pub.Publish(ctx, topo.Exchange, "k", amqpMsg(body)); err != nil {
			t.Fatal(err)
		}
	}
	waitN(t, r.acks, 1, 5*time.Second)
	waitN(t, r.parks, 1, 5*time.Second)
	if parked, err := lot.List(ctx, parkinglot.Filter{}); err != nil || len(parked) != 1 {
		t.Fatalf("parking lot lists %d messages (%v), want 1", len(parked), err)
	}
	if n := connections(t, name); n != 1 {
		t.Errorf("%d connections named %s, want 1", n, name)
	}
	select {
	case err := <-ended:
		t.Fatalf("the consumer's session ended beside the publisher's refused publish: %v", err)
	default:
	}

	if n, err := brokertest.CloseConnections(name); err != nil || n != 1 {
		t.Fatalf("closed %d connections: %v", n, err)
	}
	<-ended
	waitN(t, sessions, 1, 5*time.Second)
	if err := pub.Publish(ctx, topo.Exchange, "k", amqpMsg("two")); err != nil {
		t.Fatalf("publish after the connection was lost: %v", err)
	}
	waitN(t, r.acks, 1, 5*time.Second)
	if n := connections(t, name); n != 1 {
		t.Errorf("%d connections named %s after the loss, want 1", n, name)
	}
	getAll(t, topo.ParkingQueue(), 1, 5*time.Second)
}

// Options that configure a connection go to the Conn, not to what shares it.
func TestSharedConnRefusesConnectionOptions(t *testing.T) {
	t.Parallel()
	conn, err := dlxretry.NewConn("amqp://localhost/")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	topo := dlxretry.Topology{Queue: "q", Delays: delaysMS(50), MaxAttempts: 1}
	h := func(context.Context, *dlxretry.Delivery) error { return nil }
	var ce *dlxretry.ConfigError
	if _, err := dlxretry.NewConsumer(conn, topo, h, dlxretry.WithURLs("amqp://other/")); !errors.As(err, &ce) || ce.Field != "WithURLs" {
		t.Errorf("NewConsumer with a Conn and WithURLs: %v, want a ConfigError", err)
	}
	if _, err := dlxretry.NewPublisher(conn, dlxretry.WithConnectionName("x")); !errors.As(err, &ce) || ce.Field != "WithConnectionName" {
		t.Errorf("NewPublisher with a Conn and WithConnectionName: %v, want a ConfigError", err)
	}
	if _, err := dlxretry.NewPublisher(conn, dlxretry.WithLogger(nil)); !errors.As(err, &ce) || ce.Field != "WithLogger" {
		t.Errorf("NewPublisher with a nil logger: %v, want a ConfigError", err)
	}
}

// Closing a Conn ends a Consumer's Run on it with ErrClosed, and Publish
// returns ErrClosed.
func TestSharedConnClose(t *testing.T) {
	t.Parallel()
	topo := declare(t, dlxretry.Classic, delaysMS(50), 1)
	conn, err := dlxretry.NewConn(brokertest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	sessions := make(chan string, 1)
	c, err := dlxretry.NewConsumer(conn, topo, func(context.Context, *dlxretry.Delivery) error { return nil },
		dlxretry.WithHooks(dlxretry.Hooks{OnConnect: func(e dlxretry.ConnectEvent) { sessions <- e.Broker }}))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := dlxretry.NewPublisher(conn)
	if err != nil {
		t.Fatal(err)
	}
	_, done := startRun(t, c)
	waitN(t, sessions, 1, 5*time.Second)
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	err = returnsWithin(t, 5*time.Second, "Run after Conn.Close", func() error { return <-done })
	if !errors.Is(err, dlxretry.ErrClosed) {
		t.Errorf("Run returned %v, want ErrClosed", err)
	}
	if err := pub.Publish(context.Background(), topo.Exchange, "k", amqpMsg("m")); !errors.Is(err, dlxretry.ErrClosed) {
		t.Errorf("Publish after Conn.Close: %v, want ErrClosed", err)
	}
}

// WithAMQPConfig's settings reach the connection, beside the library's
// own (its connection name wins over the Properties'), and WithDialer makes
// the TCP connection.
func TestAMQPConfigApplies(t *testing.T) {
	long(t)
	t.Parallel()
	name := brokertest.Name(t, "conn")
	var dials atomic.Int32
	conn := newConn(t, dlxretry.WithConnectionName(name),
		dlxretry.WithAMQPConfig(amqp.Config{
			Heartbeat:  7 * time.Second,
			FrameSize:  65536,
			Properties: amqp.Table{"connection_name": "not this one", "product": "test"},
		}),
		dlxretry.WithDialer(func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}))
	if _, err := conn.Channel(context.Background()); err != nil {
		t.Fatal(err)
	}
	var found bool
	out := brokertest.Ctl(t, "list_connections", "-q", "--no-table-headers", "timeout", "frame_max", "client_properties")
	for _, line := range strings.Split(out, "\n") {
		if !strings.Contains(line, `{"connection_name","`+name+`"}`) {
			continue
		}
		found = true
		if !strings.HasPrefix(line, "7\t65536\t") || !strings.Contains(line, `{"product","test"}`) {
			t.Errorf("connection %s: %s; want heartbeat 7, frame_max 65536 and the product property", name, line)
		}
	}
	if !found || dials.Load() != 1 {
		t.Errorf("connection %s found: %v, dialer called %d times", name, found, dials.Load())
	}
}

// What the library does itself cannot be set through WithAMQPConfig.
func TestAMQPConfigRefusesWhatTheLibraryOwns(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]amqp.Config{
		"Recovery": {Recovery: &amqp.Recovery{}},
		"Dial":     {Dial: amqp.DefaultDial(time.Second)},
	} {
		var ce *dlxretry.ConfigError
		if _, err := dlxretry.NewConn("amqp://localhost/", dlxretry.WithAMQPConfig(cfg)); !errors.As(err, &ce) || ce.Field != "WithAMQPConfig" {
			t.Errorf("WithAMQPConfig with %s: %v, want a ConfigError", name, err)
		}
	}
}
