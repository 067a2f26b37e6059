package parkinglot

import (
	"errors"
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dlxretry/dlxretry"
)

func invalid(field, format string, args ...any) *dlxretry.ConfigError {
	return &dlxretry.ConfigError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

func missing(kind, name string, err error) error {
	var ae *amqp.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ae) && ae.Code == amqp.NotFound:
		return fmt.Errorf("parkinglot: %s %q does not exist: %w", kind, name, err)
	}
	return fmt.Errorf("parkinglot: inspect %s %q: %w", kind, name, err)
}

// closeChannel closes a channel whose work is done. An error closing it
// changes nothing: what the operation did is settled, and the broker closes
// the channel with the connection at worst.
func closeChannel(ch *amqp.Channel) { _ = ch.Close() }
