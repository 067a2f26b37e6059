package dlxretry_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlxretry/dlxretry"
	"github.com/dlxretry/dlxretry/internal/brokertest"
	amqp "github.com/rabbitmq/amqp091-go"
)

// startOK is the start of connection.start-ok, the client's login: class
// 10, method 11.
var startOK = []byte{0x00, 0x0a, 0x00, 0x0b}

// cutLoginProxy relays TCP connections to the test broker, but drops the
// first cuts connections as soon as the client sends its login, as a
// broker that goes down or a load balancer that loses its backend at that
// moment would.
func cutLoginProxy(t *testing.T, cuts int32) (url string, dropped *atomic.Int32) {
	t.Helper()
	uri, err := amqp.ParseURI(brokertest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	target := net.JoinHostPort(uri.Host, strconv.Itoa(uri.Port))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dropped = new(atomic.Int32)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, b)
			mu.Unlock()
			cut := dropped.Add(1) <= cuts
			wg.Go(func() {
				defer b.Close()
				defer c.Close()
				buf := make([]byte, 32<<10)
				for {
					n, err := c.Read(buf)
					if cut && bytes.Contains(buf[:n], startOK) {
						return // the login never reaches the broker
					}
					if _, werr := b.Write(buf[:n]); werr != nil || err != nil {
						return
					}
				}
			})
			wg.Go(func() {
				defer c.Close()
				_, _ = io.Copy(c, b)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	uri.Host = host
	uri.Port, _ = strconv.Atoi(port)
	return uri.String(), dropped
}

// amqp091-go reads a connection closed during the login as refused
// credentials. Once is not a refusal: the connection is tried again, and a
// broker that answers the next attempt is connected to.
func TestConnectionCutDuringLoginIsRetried(t *testing.T) {
	url, attempts := cutLoginProxy(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := dlxretry.Dial(ctx, url, dlxretry.WithReconnectDelay(10*time.Millisecond, 100*time.Millisecond))
	if err != nil {
		t.Fatalf("Dial after one connection cut during the login: %v, want a connection", err)
	}
	defer conn.Close()
	if n := attempts.Load(); n != 2 {
		t.Fatalf("%d connection attempts, want 2 (one cut, one through)", n)
	}
}
