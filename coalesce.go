package dlxretry

import (
	"net"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// maxBatch is how many bytes a coalescingConn holds unwritten before
// Write waits for room: the bound on what it keeps in memory besides the
// batch being written.
const maxBatch = 64 << 10

// flushOnClose bounds how long Close waits for what was written before it
// (a connection.close-ok, say) to reach the socket.
const flushOnClose = 100 * time.Millisecond

// coalescingConn is the TCP connection under amqp091-go. amqp091-go
// flushes every frame sequence it sends (a publish, an ack) with a system
// call of its own, under its connection's lock. Write here copies the
// bytes and returns; one goroutine, started when there is something to
// write and ending when there is not, writes what has gathered meanwhile in
// one system call. Under load, the publishes and acks of many goroutines go
// out together; alone, a write goes out at once, one goroutine switch
// later.
//
// A write error is kept and returned by every later Write; it also closes
// the socket, so that amqp091-go's reader ends the connection and every
// publish in flight on it is settled as unconfirmed. Deadlines and reads
// go to the socket.
type coalescingConn struct {
	net.Conn

	mu      sync.Mutex
	room    *sync.Cond    // signalled when the batch is taken, or err set
	batch   []byte        // written, not yet handed to the socket
	spare   []byte        // the batch before last, to reuse
	writing chan struct{} // closed when the writing goroutine ends; nil when none runs
	err     error         // the socket's write error, or net.ErrClosed after Close
	queued  uint64        // bytes taken by Write, ever
	sent    uint64        // bytes the socket took, ever
	moved   chan struct{} // closed when sent moves or err is set; nil when nobody waits
}

func newCoalescingConn(sock net.Conn) *coalescingConn {
	c := &coalescingConn{Conn: sock}
	c.room = sync.NewCond(&c.mu)
	return c
}

// Write queues p to be written. It waits while maxBatch bytes wait already
// (the socket does not take them: the broker reads nothing).
func (c *coalescingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.err == nil && len(c.batch) > 0 && len(c.batch)+len(p) > maxBatch {
		c.room.Wait()
	}
	if c.err != nil {
		return 0, c.err
	}
	c.batch = append(c.batch, p...)
	c.queued += uint64(len(p))
	if c.writing == nil {
		c.writing = make(chan struct{})
		go c.flush(c.writing)
	}
	return len(p), nil
}

// flush writes batches until none is left, or the socket fails.
func (c *coalescingConn) flush(done chan struct{}) {
	defer close(done)
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.batch) > 0 && c.err == nil {
		out := c.batch
		c.batch, c.spare = c.spare[:0], nil
		c.room.Broadcast()
		c.mu.Unlock()
		_, err := c.Conn.Write(out)
		c.mu.Lock()
		if err != nil && c.err == nil {
			c.err = err
			_ = c.Conn.Close()
		}
		if err == nil {
			c.sent += uint64(len(out))
		}
		if cap(out) <= 2*maxBatch {
			c.spare = out[:0]
		}
		c.wake()
	}
	if c.err != nil {
		c.batch = nil // never to be written
	}
	c.writing = nil
	c.room.Broadcast()
	c.wake()
}

// wake wakes those who wait in flushed. Call it holding c.mu.
func (c *coalescingConn) wake() {
	if c.moved != nil {
		close(c.moved)
		c.moved = nil
	}
}

// mark is a position in what was written: everything written before mark
// is called is before it.
func (c *coalescingConn) mark() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.queued
}

// flushed waits until the socket has taken everything written before mark,
// and returns nil; or the error that stopped the socket from taking it.
// It waits as long as a write to the socket itself would have.
func (c *coalescingConn) flushed(mark uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.sent < mark && c.err == nil {
		if c.moved == nil {
			c.moved = make(chan struct{})
		}
		moved := c.moved
		c.mu.Unlock()
		<-moved
		c.mu.Lock()
	}
	if c.sent >= mark {
		return nil
	}
	return c.err
}

// Close lets what was written before it reach the socket, waiting
// flushOnClose at most, then closes the socket. Later writes fail.
func (c *coalescingConn) Close() error {
	c.mu.Lock()
	writing := c.writing
	c.mu.Unlock()
	if writing != nil {
		t := time.NewTimer(flushOnClose)
		select {
		case <-writing:
		case <-t.C:
		}
		t.Stop()
	}
	c.mu.Lock()
	if c.err == nil {
		c.err = net.ErrClosed
	}
	c.room.Broadcast()
	c.wake()
	c.mu.Unlock()
	return c.Conn.Close()
}

// flushedAcks settles deliveries through ack and returns once the socket
// has taken the settlement, as it did when amqp091-go wrote it itself: a
// lost connection then loses at most one settlement per handler, the one
// it was writing. Settlements of several handlers still go out together.
type flushedAcks struct {
	ack    amqp.Acknowledger
	writes *coalescingConn
}

func (a flushedAcks) Ack(tag uint64, multiple bool) error {
	return a.written(a.ack.Ack(tag, multiple))
}

func (a flushedAcks) Nack(tag uint64, multiple, requeue bool) error {
	return a.written(a.ack.Nack(tag, multiple, requeue))
}

func (a flushedAcks) Reject(tag uint64, requeue bool) error {
	return a.written(a.ack.Reject(tag, requeue))
}

// written waits for what was written so far to reach the socket, unless
// the settlement failed already.
func (a flushedAcks) written(err error) error {
	if err != nil {
		return err
	}
	return a.writes.flushed(a.writes.mark())
}
