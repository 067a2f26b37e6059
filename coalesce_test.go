package dlxretry

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// socketPair returns the two ends of a loopback TCP connection.
func socketPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// Writes from many goroutines reach the socket whole, each in one piece
// and each goroutine's in its order, whatever the batches.
func TestCoalescingConnKeepsEveryWrite(t *testing.T) {
	client, server := socketPair(t)
	c := newCoalescingConn(client)
	const writers, each = 16, 500
	var want [writers][]byte
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				line := fmt.Appendf(nil, "w%02d-%04d;", w, i)
				want[w] = append(want[w], line...)
				if _, err := c.Write(line); err != nil {
					t.Errorf("write: %v", err)
					return
				}
			}
		})
	}
	total := writers * each * len("w00-0000;")
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(server, int64(total)))
		got <- b
	}()
	wg.Wait()
	var b []byte
	select {
	case b = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("the bytes written did not all arrive")
	}
	if len(b) != total {
		t.Fatalf("read %d bytes, want %d", len(b), total)
	}
	var per [writers][]byte
	for _, line := range bytes.SplitAfter(b, []byte(";")) {
		if len(line) == 0 {
			continue
		}
		var w, i int
		if _, err := fmt.Sscanf(string(line), "w%02d-%04d;", &w, &i); err != nil || w >= writers {
			t.Fatalf("torn write %q", line)
		}
		per[w] = append(per[w], line...)
	}
	for w := range writers {
		if !bytes.Equal(per[w], want[w]) {
			t.Fatalf("writer %d: its writes arrived out of order or incomplete", w)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after close: %v, want net.ErrClosed", err)
	}
}

// When the peer reads nothing, Write waits once maxBatch bytes wait, and
// closing the socket under it (what a stuck publish's ctx does) ends the
// wait with an error.
func TestCoalescingConnBoundsWhatItHolds(t *testing.T) {
	client, _ := socketPair(t)
	c := newCoalescingConn(client)
	const chunk = 16 << 10
	before, errc := fillUntilWriteWaits(t, c, chunk)
	select {
	case err := <-errc:
		t.Fatalf("write failed before the socket was closed: %v", err)
	default:
	}
	_ = client.Close() // as link.abort does
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("no error after the socket was closed")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Write still waits after the socket was closed")
	}
	if n := c.mark(); n-before > chunk {
		t.Fatalf("%d bytes taken after Write seemed to wait", n-before)
	}
	if _, err := c.Write([]byte("x")); err == nil {
		t.Fatal("a write after the socket failed succeeded")
	}
}

// flushed returns once the socket has taken what was written before the
// mark, and with the socket's error when it never will.
func TestCoalescingConnFlushed(t *testing.T) {
	client, server := socketPair(t)
	c := newCoalescingConn(client)
	if _, err := c.Write([]byte("ack")); err != nil {
		t.Fatal(err)
	}
	if err := c.flushed(c.mark()); err != nil {
		t.Fatalf("flushed: %v", err)
	}
	buf := make([]byte, 3)
	if _, err := io.ReadFull(server, buf); err != nil || string(buf) != "ack" {
		t.Fatalf("read %q, %v", buf, err)
	}

	// Nobody reads: fill the socket, then the batch.
	mark, _ := fillUntilWriteWaits(t, c, 64<<10)
	errc := make(chan error, 1)
	go func() { errc <- c.flushed(mark) }()
	select {
	case err := <-errc:
		t.Fatalf("flushed returned %v while the socket takes nothing", err)
	case <-time.After(200 * time.Millisecond):
	}
	_ = client.Close()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("flushed returned nil for bytes the socket never took")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("flushed still waits after the socket was closed")
	}
}

// fillUntilWriteWaits writes chunks of size bytes to c from a goroutine
// until Write waits, the peer reading nothing, and returns how much Write
// had taken then, and where the goroutine's Write error will come.
func fillUntilWriteWaits(t *testing.T, c *coalescingConn, size int) (uint64, <-chan error) {
	t.Helper()
	chunk := make([]byte, size)
	errc := make(chan error, 1)
	go func() {
		for {
			if _, err := c.Write(chunk); err != nil {
				errc <- err
				return
			}
		}
	}()
	for tries := 0; ; tries++ {
		taken := c.mark()
		time.Sleep(300 * time.Millisecond)
		if c.mark() == taken {
			return taken, errc
		}
		if tries == 30 {
			t.Fatalf("Write still takes bytes after %d MiB that nobody reads", taken>>20)
		}
	}
}
