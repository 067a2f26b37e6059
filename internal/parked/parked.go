// Package parked is the operator's view of dlxretry's parking lots, shared
// by the dlxretry command and its web console: it selects parked messages
// by what a Filter says and also by message id and error group, pages
// through them, summarises them by error, replays, drops and moves them,
// and restores what a drop saved.
//
// It is the only package of the command that uses package parkinglot
// ([parkinglot.Lot], [parkinglot.Filter], [parkinglot.Message]) and the
// header constants; the rest of the command uses the aliases below.
package parked

import (
	"context"
	"errors"
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dlxretry/dlxretry"
	"github.com/dlxretry/dlxretry/parkinglot"
)

// Aliases for the parking-lot API, so that its users need only this package.
type (
	Message     = parkinglot.Message
	Filter      = parkinglot.Filter
	Report      = parkinglot.Report
	Death       = dlxretry.Death
	ConfigError = dlxretry.ConfigError
)

// Deaths parses m's x-death header, most recent first.
func Deaths(m Message) ([]Death, error) { return dlxretry.ParseDeaths(m.Headers) }

// errStop ends a walk early; it is not an error.
var errStop = errors.New("parked: stop")

// Lot is the parking lot of one work queue, reached through Conn. It is plain
// data: its zero Progress reports nothing. Operations on one parking queue
// must not overlap (see [parkinglot.Lot]): a second one running at the
// same time does not see the messages the first holds.
type Lot struct {
	Conn  *dlxretry.Conn
	Queue string // the work queue; its messages wait in ParkingQueue()
	// Progress, when set, is called with the report so far every Every
	// messages an operation visits (1000 when Every is 0).
	Progress func(Report)
	Every    int
}

// ParkingQueue is the queue the lot's messages wait in.
func (l Lot) ParkingQueue() string { return dlxretry.Topology{Queue: l.Queue}.ParkingQueue() }

// ParkingExchange is the exchange parking publishes to.
func (l Lot) ParkingExchange() string { return dlxretry.Topology{Queue: l.Queue}.ParkingExchange() }

// lot is the library's Lot for one operation on what s selects.
func (l Lot) lot(s Selection) (*parkinglot.Lot, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return parkinglot.New(l.Conn, l.Queue)
}

func (l Lot) every() int {
	if l.Every > 0 {
		return l.Every
	}
	return 1000
}

// Depth is what the broker says about a lot's queues.
type Depth struct {
	Parked       int  // ready messages in the parking queue
	Exists       bool // the parking queue exists
	Work         int  // ready messages in the work queue
	Consumers    int  // consumers of the work queue
	WorkExists   bool
	ParkingError error // why the parking queue could not be inspected, other than not existing
}

// Depth inspects the parking and the work queue with passive declarations.
func (l Lot) Depth(ctx context.Context) (Depth, error) {
	var d Depth
	q, err := l.inspect(ctx, l.ParkingQueue())
	switch {
	case err == nil:
		d.Parked, d.Exists = q.Messages, true
	case !notFound(err):
		return d, err
	}
	q, err = l.inspect(ctx, l.Queue)
	switch {
	case err == nil:
		d.Work, d.Consumers, d.WorkExists = q.Messages, q.Consumers, true
	case !notFound(err):
		return d, err
	}
	return d, nil
}

// inspect declares queue passively on a channel of its own, which the
// broker closes when the queue does not exist.
func (l Lot) inspect(ctx context.Context, queue string) (amqp.Queue, error) {
	ch, err := l.Conn.Channel(ctx)
	if err != nil {
		return amqp.Queue{}, err
	}
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		return q, fmt.Errorf("inspect queue %q: %w", queue, err)
	}
	return q, nil
}

func notFound(err error) bool {
	var ae *amqp.Error
	return errors.As(err, &ae) && ae.Code == amqp.NotFound
}
