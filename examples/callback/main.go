// Callback retells a classic dead-letter exchange demo: a message delivery
// service that takes a message and a callback URL, and a consumer that POSTs
// each message to its callback URL, retrying every second while the callback
// service is down until it is back.
//
// It is one program with three parts, each on its own listener on localhost:
//
//   - the producer: POST /queue/producer/ with {"message": "hello",
//     "callback_url": "http://…"} publishes the message (publisher confirms,
//     mandatory) and answers 202 Accepted, or 400 Bad Request with the reason
//     for a missing body, bad JSON, a missing message or a missing or
//     invalid callback URL;
//   - the consumer: a [dlxretry.Consumer] whose handler POSTs {"message": …}
//     to the callback URL with a timeout; a connection error or a non-2xx
//     answer is a retry, after 1s, through the broker;
//   - the callback service: POST /callback takes a message and counts it;
//     POST /callback/down makes it answer 503 until POST /callback/up, and
//     GET /callback/received says how often each message arrived.
//
// By default it replays the demo's sequence: it produces hello12, hello11,
// hello33, hello55, hello40, hello99, hello24, hello65, hello87 and hello79
// through the producer endpoint, switching the callback service down before
// hello12, hello33, hello55, hello65, hello87 and hello79 and up before the
// others, each time once the consumer has tried the message. It then switches
// the callback service up for good, waits until every message has been
// delivered, prints what the callback service received and deletes the
// topology. It takes about two seconds. Run it from the repository root:
//
//	go run ./examples/callback
//
// With -serve it starts the three parts on fixed ports and waits for
// Ctrl-C, so that you can drive it with curl:
//
//	go run ./examples/callback -serve
//	curl -X POST -d '{"message":"hello","callback_url":"http://127.0.0.1:5001/callback"}' http://127.0.0.1:5000/queue/producer/
//	curl -X POST http://127.0.0.1:5001/callback/down
//	curl http://127.0.0.1:5001/callback/received
//
// It connects to RABBITMQ_URL, or to amqp://guest:guest@localhost:5672/. The
// output of the demo looks like this; a retried message is acked whenever
// its retry finds the callback service up, so the ack lines of retried
// messages may come at other places:
//
//	producer  http://127.0.0.1:40959/queue/producer/
//	callback  http://127.0.0.1:36727/callback
//	callback service down
//	produce          hello12
//	retry            hello12 (attempt 1: callback answered 503 Service Unavailable; next try in 1s)
//	callback service up
//	produce          hello11
//	ack for message  hello11 (attempt 1)
//	callback service down
//	produce          hello33
//	retry            hello33 (attempt 1: callback answered 503 Service Unavailable; next try in 1s)
//	...
//	produce          hello79
//	retry            hello79 (attempt 1: callback answered 503 Service Unavailable; next try in 1s)
//	callback service up
//	ack for message  hello12 (attempt 2)
//	ack for message  hello33 (attempt 2)
//	...
//	ack for message  hello79 (attempt 2)
//	callback service received 10 messages, each once: hello12 hello11 hello33 hello55 hello40 hello99 hello24 hello65 hello87 hello79
//	deleted topology callback.worker
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"time"
)

const defaultURL = "amqp://guest:guest@localhost:5672/"

// step is one message of the demo and whether the callback service is down
// when the consumer first tries it.
type step struct {
	message string
	down    bool
}

// sequence is the demo's sequence, with the outcomes of its first attempts.
var sequence = []step{
	{"hello12", true}, {"hello11", false}, {"hello33", true}, {"hello55", true}, {"hello40", false},
	{"hello99", false}, {"hello24", false}, {"hello65", true}, {"hello87", true}, {"hello79", true},
}

// config says where everything lives; tests use names and ports of their own.
type config struct {
	brokerURL    string
	prefix       string // names the queue and the exchange
	producerAddr string
	callbackAddr string
}

func main() {
	serve := flag.Bool("serve", false, "serve the producer on 127.0.0.1:5000 and the callback service on 127.0.0.1:5001 until Ctrl-C, instead of the demo")
	flag.Parse()
	brokerURL := os.Getenv("RABBITMQ_URL")
	if brokerURL == "" {
		brokerURL = defaultURL
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var err error
	if *serve {
		cfg := config{brokerURL: brokerURL, prefix: "callback", producerAddr: "127.0.0.1:5000", callbackAddr: "127.0.0.1:5001"}
		err = runServe(ctx, cfg, os.Stdout)
	} else {
		err = run(ctx, brokerURL, os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "callback:", err)
		os.Exit(1)
	}
}

// run is the demo under the names main uses, on ports the system picks.
func run(ctx context.Context, brokerURL string, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return withApp(ctx, config{brokerURL: brokerURL, prefix: "callback", producerAddr: "127.0.0.1:0", callbackAddr: "127.0.0.1:0"}, out,
		func(a *app) error { return a.demo(ctx) })
}

// runServe serves until ctx is cancelled.
func runServe(ctx context.Context, cfg config, out io.Writer) error {
	return withApp(ctx, cfg, out, func(a *app) error {
		fmt.Fprintf(a.out, "try:\n  curl -X POST -d '{\"message\":\"hello\",\"callback_url\":\"%s\"}' %s\n", a.callbackURL, a.producerURL)
		fmt.Fprintf(a.out, "  curl -X POST %s/down    (and /up)\nCtrl-C stops it\n", a.callbackURL)
		<-ctx.Done()
		return nil
	})
}

// withApp starts the three parts, runs f, and stops them.
func withApp(ctx context.Context, cfg config, out io.Writer, f func(*app) error) (err error) {
	a, err := start(ctx, cfg, &syncWriter{w: out})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, a.stop()) }()
	return f(a)
}

// demo replays the sequence through the producer endpoint, switching the
// callback service as the sequence says once the consumer has tried the
// message before, and returns once every message has been delivered.
func (a *app) demo(ctx context.Context) error {
	for _, s := range sequence {
		if err := a.setCallback(ctx, !s.down); err != nil {
			return err
		}
		if err := a.produce(ctx, s.message); err != nil {
			return err
		}
		if err := a.tracker.waitFirstAttempt(ctx, s.message); err != nil {
			return fmt.Errorf("waiting for the consumer to try %s: %w", s.message, err)
		}
	}
	if err := a.setCallback(ctx, true); err != nil {
		return err
	}
	if err := a.tracker.waitSettled(ctx, len(sequence)); err != nil {
		return fmt.Errorf("waiting for every message to be delivered: %w", err)
	}
	return a.report()
}

// report prints what the callback service received and checks that it got
// every message exactly once.
func (a *app) report() error {
	got := a.callback.received()
	var names, wrong []string
	for _, s := range sequence {
		names = append(names, s.message)
		if got[s.message] != 1 {
			wrong = append(wrong, fmt.Sprintf("%s %d times", s.message, got[s.message]))
		}
	}
	if len(wrong) > 0 {
		return fmt.Errorf("callback service received %s", strings.Join(wrong, ", "))
	}
	fmt.Fprintf(a.out, "callback service received %d messages, each once: %s\n", len(names), strings.Join(names, " "))
	return nil
}

// syncWriter serializes writes from the hooks, which run on the consumer's
// goroutines, and the demo.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
