package parked

import (
	"context"
	"errors"
	"slices"
)

// Each calls fn with every parked message s selects, in queue order, and
// puts them all back (see [parkinglot.Lot.Each]). It keeps one message
// in memory at a time. An error from fn stops the walk and is returned.
func (l Lot) Each(ctx context.Context, s Selection, fn func(Message) error) (Report, error) {
	lot, err := l.lot(s)
	if err != nil {
		return Report{}, err
	}
	return lot.Each(ctx, s.filter(), fn, s.options(l)...)
}

// Page returns up to n of the messages s selects, after skipping offset of
// them, and whether more follow. It visits offset+n+1 of them at most and
// keeps the n it returns.
func (l Lot) Page(ctx context.Context, s Selection, offset, n int) (page []Message, more bool, err error) {
	seen := 0
	_, err = l.Each(ctx, s, func(m Message) error {
		seen++
		switch {
		case seen <= offset:
			return nil
		case len(page) == n:
			more = true
			return errStop
		}
		page = append(page, m)
		return nil
	})
	if errors.Is(err, errStop) {
		err = nil
	}
	return page, more, err
}

// Find returns the first parked message with each of ids as its MessageId,
// in queue order, stopping once it has them all.
func (l Lot) Find(ctx context.Context, ids ...string) ([]Message, error) {
	ids = slices.Compact(slices.Sorted(slices.Values(ids)))
	var found []Message
	_, err := l.Each(ctx, Selection{IDs: ids}, func(m Message) error {
		if slices.ContainsFunc(found, func(f Message) bool { return f.MessageID == m.MessageID }) {
			return nil
		}
		found = append(found, m)
		if len(found) == len(ids) {
			return errStop
		}
		return nil
	})
	if errors.Is(err, errStop) {
		err = nil
	}
	return found, err
}
