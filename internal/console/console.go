// Package console is the web console of the dlxretry command: server-rendered
// pages that show parking lots, their messages grouped by error, and each
// message's headers, death history and body, with confirmed actions that
// replay or drop a message or a whole group.
//
// Every action is a POST that carries a token tied to the browser's session
// cookie and passes net/http's cross-origin checks (Sec-Fetch-Site, Origin);
// requests whose Host header the console does not serve are refused (DNS
// rebinding). The pages need no JavaScript and load nothing from elsewhere.
//
// RabbitMQ cannot peek at a queue: reading a parking lot takes its messages
// and puts them back. The console does that one walk at a time per lot, and
// keeps per lot only a summary (counts per error group, bounded) from its
// last full walk, which it runs in the background; a page of messages reads
// only as many as it shows (after the ones it skips).
package console

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dlxretry/dlxretry"
)

// Config says what a Server serves.
type Config struct {
	// Conn is the broker connection the console works on.
	Conn *dlxretry.Conn
	// Queues are the work queues whose parking lots it shows.
	Queues []string
	// Discover, when not nil, finds more work queues with a parking lot; the
	// console calls it when the overview is loaded, at most every 30 seconds.
	Discover func(ctx context.Context) ([]string, error)
	// ReadOnly shows no action and refuses every action request.
	ReadOnly bool
	// User and Password, when User is not empty, are required with HTTP
	// basic authentication on every request.
	User, Password string
	// Hosts are the host names (without port) the Host header may name;
	// empty allows any.
	Hosts []string
	// PageSize is how many messages a page shows; 50 when 0.
	PageSize int
	// DropLog, when not nil, receives each message the console drops as a
	// JSON line before the message is deleted (an *os.File is synced), so
	// that "dlxretry parked restore" can put it back.
	DropLog WriteSyncer
	// DropLogName names DropLog on the pages.
	DropLogName string
	// Logger records what the console did; nothing when nil.
	Logger *slog.Logger
}

// WriteSyncer is a file the console appends dropped messages to.
type WriteSyncer interface {
	Write([]byte) (int, error)
	Sync() error
}

// Server serves the console. Create it with [New]; it is safe for
// concurrent use.
type Server struct {
	cfg      Config
	log      *slog.Logger
	sessions *sessions
	pages    *pages

	life  context.Context // ends when the server closes; bounds background scans, not a caller's ctx
	stop  context.CancelFunc
	scans sync.WaitGroup

	mu         sync.Mutex
	lots       map[string]*lot // by work queue
	discovered time.Time
	dropMu     sync.Mutex // one drop writes to DropLog at a time
}

// New checks cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Conn == nil {
		return nil, errors.New("console: no connection")
	}
	if len(cfg.Queues) == 0 && cfg.Discover == nil {
		return nil, errors.New("console: no parking lots: name work queues or give a way to discover them")
	}
	if cfg.PageSize <= 0 {
		cfg.PageSize = 50
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p, err := parsePages()
	if err != nil {
		return nil, err
	}
	sess, err := newSessions()
	if err != nil {
		return nil, err
	}
	life, stop := context.WithCancel(context.Background())
	s := &Server{cfg: cfg, log: log, sessions: sess, pages: p, life: life, stop: stop, lots: map[string]*lot{}}
	for _, q := range cfg.Queues {
		s.lot(q)
	}
	return s, nil
}

// Run serves on ln until ctx ends, then shuts the server down (requests in
// flight get 5 seconds) and stops the background scans. It returns nil
// after ctx ended, or the error that stopped serving.
func (s *Server) Run(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- hs.Serve(ln) }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = hs.Shutdown(shut)
		cancel()
		<-done
	}
	s.Close()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// Close stops the background scans and waits for them; a scan stops at the
// message in hand and puts every message back.
func (s *Server) Close() {
	s.stop()
	s.scans.Wait()
}

// lot returns the state of queue's parking lot, making it if needed.
func (s *Server) lot(queue string) *lot {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.lots[queue]
	if !ok {
		l = newLot(s.cfg.Conn, queue)
		s.lots[queue] = l
	}
	return l
}

// known returns queue's lot if the console serves it.
func (s *Server) known(queue string) (*lot, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.lots[queue]
	return l, ok
}

// allLots returns the lots, discovering more first when it is time.
func (s *Server) allLots(ctx context.Context) ([]*lot, error) {
	var err error
	if s.cfg.Discover != nil && s.discoverDue() {
		var found []string
		found, err = s.cfg.Discover(ctx)
		if err != nil {
			err = fmt.Errorf("discover parking lots: %w", err)
		}
		for _, q := range found {
			s.lot(q)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*lot, 0, len(s.lots))
	for _, l := range s.lots {
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, b *lot) int { return strings.Compare(a.queue, b.queue) })
	return out, err
}

func (s *Server) discoverDue() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if time.Since(s.discovered) < 30*time.Second {
		return false
	}
	s.discovered = time.Now()
	return true
}
