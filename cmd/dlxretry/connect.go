package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dlxretry/dlxretry"
	"github.com/dlxretry/dlxretry/internal/parked"
)

// connectTimeout bounds the first connection when no broker answers.
const connectTimeout = 5 * time.Second

// connect dials --url. A URL that cannot be used is a usage error; the
// library's errors never show its password.
func connect(ctx context.Context, o *options) (*dlxretry.Conn, error) {
	conn, err := dlxretry.Dial(ctx, o.url, dlxretry.WithConnectionName("dlxretry"),
		dlxretry.WithConnectTimeout(connectTimeout))
	var ce *dlxretry.ConfigError
	if errors.As(err, &ce) {
		return nil, usagef("--url: %s", strings.TrimPrefix(err.Error(), "dlxretry: "))
	}
	return conn, err
}

// prepare checks what a command on one parking lot needs and connects: it
// returns the work queue and the connection, which the caller closes.
func prepare(ctx context.Context, o *options, command string) (string, *dlxretry.Conn, error) {
	queue, err := o.oneQueue(command)
	if err != nil {
		return "", nil, err
	}
	if err := checkSelection(command, o.sel); err != nil {
		return "", nil, err
	}
	conn, err := connect(ctx, o)
	return queue, conn, err
}

// workQueues returns the work queues the command is about: those --queue
// names and, with --mgmt-url, those with a parking queue on the broker.
func workQueues(ctx context.Context, o *options, command string) ([]string, error) {
	var queues []string
	for _, q := range o.queues {
		queues = append(queues, parked.WorkQueue(q))
	}
	if o.mgmtURL != "" {
		found, err := discover(ctx, o)
		if err != nil {
			return nil, err
		}
		queues = append(queues, found...)
	}
	if len(queues) == 0 {
		return nil, usagef("%s: give --queue (or --mgmt-url to find the parking lots)", command)
	}
	return dedupe(queues), nil
}

// discover asks the management API for the parking lots of --url's vhost,
// logging in as --url's user unless --mgmt-url has one.
func discover(ctx context.Context, o *options) ([]string, error) {
	uri, err := amqp.ParseURI(o.url)
	if err != nil {
		return nil, usagef("--url: %s", err)
	}
	if _, err := url.Parse(o.mgmtURL); err != nil {
		return nil, usagef("--mgmt-url: the URL does not parse")
	}
	m := parked.Management{URL: o.mgmtURL, User: uri.Username, Pass: uri.Password}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	queues, err := m.Discover(ctx, uri.Vhost)
	if err != nil {
		return nil, fmt.Errorf("find parking lots: %w", err)
	}
	return queues, nil
}

func dedupe(s []string) []string {
	seen := map[string]bool{}
	out := s[:0]
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}
