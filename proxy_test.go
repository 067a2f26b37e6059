package dlxretry_test

import (
	"bytes"
	"net"
	"strconv"
	"sync"
	"testing"

	"github.com/dlxretry/dlxretry/internal/brokertest"
	amqp "github.com/rabbitmq/amqp091-go"
)

// gateProxy relays TCP connections to the broker. Closing its gate stops
// what clients send from reaching the broker (the bytes wait), as a broker
// that stopped reading would; the broker's frames still reach the clients.
type gateProxy struct {
	ln     net.Listener
	target string

	mu        sync.Mutex
	open      bool
	handshake bool          // close the gate once a connection's handshake is done
	opened    chan struct{} // closed when the gate opens
	conns     []net.Conn
	wg        sync.WaitGroup
}

// startGateProxy starts a proxy to the test broker with its gate open, and
// stops it when the test ends.
func startGateProxy(t *testing.T) *gateProxy {
	t.Helper()
	uri, err := amqp.ParseURI(brokertest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &gateProxy{ln: ln, target: net.JoinHostPort(uri.Host, strconv.Itoa(uri.Port)), open: true, opened: make(chan struct{})}
	close(p.opened)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.stop)
	return p
}

// URL is the broker's URL with the proxy's address.
func (p *gateProxy) URL(t *testing.T) string {
	uri, err := amqp.ParseURI(brokertest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(p.ln.Addr().String())
	uri.Host = host
	uri.Port, _ = strconv.Atoi(port)
	return uri.String()
}

// Close stops forwarding what clients send, until Open.
func (p *gateProxy) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.open {
		p.open = false
		p.opened = make(chan struct{})
	}
}

// Open forwards again, the held bytes first.
func (p *gateProxy) Open() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.open {
		p.open = true
		close(p.opened)
	}
}

// CloseAfterHandshake closes the gate as soon as a connection's AMQP
// handshake is done: the client's next frame (opening a channel) never
// reaches the broker.
func (p *gateProxy) CloseAfterHandshake() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.handshake = true
}

func (p *gateProxy) gate() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.opened
}

func (p *gateProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		b, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, b)
		p.mu.Unlock()
		p.wg.Add(2)
		go func() { defer p.wg.Done(); p.relay(b, c) }()
		go func() { defer p.wg.Done(); p.relayBack(c, b) }()
	}
}

// relay copies from the client to the broker while the gate is open.
func (p *gateProxy) relay(dst, src net.Conn) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		<-p.gate()
		n, err := src.Read(buf)
		if n > 0 {
			<-p.gate()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// openOK is connection.open-ok, the broker's last handshake frame: class
// 10, method 41.
var openOK = []byte{0x00, 0x0a, 0x00, 0x29}

// relayBack copies from the broker to the client, closing the gate on the
// way if asked to after the handshake.
func (p *gateProxy) relayBack(dst, src net.Conn) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	var tail []byte
	for {
		n, err := src.Read(buf)
		if n > 0 {
			seen := append(tail, buf[:n]...)
			p.mu.Lock()
			if p.handshake && bytes.Contains(seen, openOK) {
				p.handshake = false
				p.mu.Unlock()
				p.Close()
			} else {
				p.mu.Unlock()
			}
			tail = append([]byte(nil), seen[max(0, len(seen)-len(openOK)+1):]...)
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *gateProxy) stop() {
	p.ln.Close()
	p.Open()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
