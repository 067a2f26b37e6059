package parked

import (
	"context"
	"io"
)

// Replay sends the messages s selects back to the work queue with a fresh
// attempt budget (see [parkinglot.Lot.Replay]).
func (l Lot) Replay(ctx context.Context, s Selection) (Report, error) {
	lot, err := l.lot(s)
	if err != nil {
		return Report{}, err
	}
	return lot.Replay(ctx, s.filter(), s.options(l)...)
}

// Drop deletes the messages s selects, each written to w first as a JSON
// line when w is not nil (see [parkinglot.Lot.Drop]).
func (l Lot) Drop(ctx context.Context, s Selection, w io.Writer) (Report, error) {
	lot, err := l.lot(s)
	if err != nil {
		return Report{}, err
	}
	return lot.Drop(ctx, s.filter(), w, s.options(l)...)
}

// Move publishes the messages s selects to exchange with routing key key
// and then removes them from parking (see [parkinglot.Lot.Move]).
func (l Lot) Move(ctx context.Context, s Selection, exchange, key string) (Report, error) {
	lot, err := l.lot(s)
	if err != nil {
		return Report{}, err
	}
	return lot.Move(ctx, s.filter(), exchange, key, s.options(l)...)
}
