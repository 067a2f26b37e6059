package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dlxretry/dlxretry"
)

// routingKey is the key the producer publishes with.
const routingKey = "message"

// topology is the example's topology: the work queue prefix.worker, bound to
// the direct exchange prefix, retried every second (the demo's TTL of 1000
// ms) for up to a minute, then parked.
func topology(prefix string) dlxretry.Topology {
	return dlxretry.Topology{
		Queue:        prefix + ".worker",
		Exchange:     prefix,
		ExchangeKind: amqp.ExchangeDirect,
		BindingKeys:  []string{routingKey},
		Delays:       []time.Duration{time.Second},
		MaxAttempts:  60,
	}
}

// app is the running program: producer, consumer and callback service.
type app struct {
	out         io.Writer
	brokerURL   string
	topo        dlxretry.Topology
	pub         *dlxretry.Publisher
	callback    *callbackService
	tracker     *tracker
	client      *http.Client // for callbacks and the demo's requests
	servers     []*http.Server
	producerURL string
	callbackURL string

	stopConsumer context.CancelFunc
	consumerDone chan error
}

// start declares the topology (after deleting what an interrupted run may
// have left) and starts the consumer and the two HTTP servers.
func start(ctx context.Context, cfg config, out io.Writer) (*app, error) {
	a := &app{out: out, brokerURL: cfg.brokerURL, topo: topology(cfg.prefix),
		callback: newCallbackService(), tracker: newTracker(out), client: &http.Client{}}
	if err := a.declare(ctx); err != nil {
		return nil, err
	}
	err := a.startParts(ctx, cfg)
	if err != nil {
		return nil, errors.Join(err, a.stop())
	}
	fmt.Fprintf(out, "producer  %s\ncallback  %s\n", a.producerURL, a.callbackURL)
	return a, nil
}

func (a *app) startParts(ctx context.Context, cfg config) error {
	var err error
	a.pub, err = dlxretry.NewPublisher(cfg.brokerURL, dlxretry.WithConnectionName("dlxretry-callback-producer"))
	if err != nil {
		return err
	}
	if err := a.startConsumer(ctx); err != nil {
		return err
	}
	p := &producer{publish: a.publish}
	if a.producerURL, err = a.listen(cfg.producerAddr, "/queue/producer/", p.routes()); err != nil {
		return err
	}
	a.callbackURL, err = a.listen(cfg.callbackAddr, "/callback", a.callback.routes())
	return err
}

func (a *app) declare(ctx context.Context) error {
	return a.withChannel(ctx, func(ctx context.Context, ch *amqp.Channel) error {
		if err := a.topo.Delete(ctx, ch); err != nil {
			return fmt.Errorf("clear leftovers: %w", err)
		}
		return a.topo.Declare(ctx, ch)
	})
}

// withChannel runs f on a channel of a connection of its own.
func (a *app) withChannel(ctx context.Context, f func(context.Context, *amqp.Channel) error) error {
	conn, err := amqp.DialConfig(a.brokerURL, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		return fmt.Errorf("cannot connect to RabbitMQ (set RABBITMQ_URL, or run one on localhost:5672): %w", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	return f(ctx, ch)
}

func (a *app) startConsumer(ctx context.Context) error {
	w := &worker{client: a.client}
	c, err := dlxretry.NewConsumer(a.brokerURL, a.topo, w.handle,
		dlxretry.WithHooks(a.tracker.hooks()),
		dlxretry.WithConcurrency(4),
		dlxretry.WithConnectionName("dlxretry-callback-consumer"))
	if err != nil {
		return err
	}
	ctx, a.stopConsumer = context.WithCancel(ctx)
	a.consumerDone = make(chan error, 1)
	go func() {
		err := c.Run(ctx)
		if ctx.Err() == nil {
			a.tracker.fail(fmt.Errorf("consumer stopped: %w", err))
		}
		a.consumerDone <- err
	}()
	return nil
}

// listen serves h on addr and returns the URL of path on it.
func (a *app) listen(addr, path string, h http.Handler) (string, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	a.servers = append(a.servers, srv)
	go func() { _ = srv.Serve(l) }()
	return "http://" + l.Addr().String() + path, nil
}

// publish is the producer's way to the broker.
func (a *app) publish(ctx context.Context, body []byte) error {
	return a.pub.Publish(ctx, a.topo.Exchange, routingKey, amqp.Publishing{ContentType: "application/json", Body: body})
}

// produce calls the producer endpoint, as curl would.
func (a *app) produce(ctx context.Context, message string) error {
	fmt.Fprintf(a.out, "%-17s%s\n", "produce", message)
	body := fmt.Sprintf(`{"message":%q,"callback_url":%q}`, message, a.callbackURL)
	status, err := a.post(ctx, a.producerURL, body)
	if err != nil {
		return err
	}
	if status != http.StatusAccepted {
		return fmt.Errorf("producer answered %d for %s", status, message)
	}
	return nil
}

// setCallback switches the callback service up or down through its endpoints.
func (a *app) setCallback(ctx context.Context, up bool) error {
	state := map[bool]string{true: "up", false: "down"}[up]
	if a.callback.isUp() == up {
		return nil
	}
	status, err := a.post(ctx, a.callbackURL+"/"+state, "")
	if err != nil {
		return err
	}
	if status != http.StatusNoContent {
		return fmt.Errorf("switching the callback service %s: status %d", state, status)
	}
	fmt.Fprintf(a.out, "callback service %s\n", state)
	return nil
}

func (a *app) post(ctx context.Context, target, body string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewBufferString(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// stop stops the servers and the consumer, closes the publisher and deletes
// the topology, with time of its own.
func (a *app) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var errs []error
	for _, srv := range a.servers {
		errs = append(errs, srv.Shutdown(ctx))
	}
	if a.stopConsumer != nil {
		a.stopConsumer()
		errs = append(errs, <-a.consumerDone)
	}
	if a.pub != nil {
		errs = append(errs, a.pub.Close())
	}
	a.client.CloseIdleConnections()
	err := a.withChannel(ctx, func(ctx context.Context, ch *amqp.Channel) error { return a.topo.Delete(ctx, ch) })
	if err == nil {
		fmt.Fprintf(a.out, "deleted topology %s\n", a.topo.Queue)
	}
	return errors.Join(append(errs, err)...)
}
