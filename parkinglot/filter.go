package parkinglot

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dlxretry/dlxretry/internal/wire"
)

// Filter selects parked messages. Its zero value selects all of them; each
// field set narrows the selection. The options [Limit] and [DryRun] say how
// much of the selection an operation acts on.
type Filter struct {
	// OriginalQueue selects messages that failed in this work queue.
	OriginalQueue string
	// ErrorContains selects messages whose error text contains it.
	ErrorContains string
	// OlderThan selects messages parked at least this long ago, NewerThan
	// those parked less than this long ago. Either excludes messages whose
	// parking time is unknown.
	OlderThan, NewerThan time.Duration
	// Headers selects messages that have each of these headers, with a value
	// whose text is the one given: strings and byte arrays as they are,
	// numbers in decimal, booleans as true or false, timestamps in RFC 3339.
	Headers map[string]string
	// MessageIDs selects messages whose MessageId is one of these.
	MessageIDs []string
	// Where, when not nil, selects messages for which it returns true. It
	// is called last, on the operation's goroutine.
	Where func(Message) bool
}

// Validate reports a field that cannot be used as a *[dlxretry.ConfigError].
func (f Filter) Validate() error {
	switch {
	case f.OlderThan < 0:
		return invalid("Filter.OlderThan", "must not be negative, got %v", f.OlderThan)
	case f.NewerThan < 0:
		return invalid("Filter.NewerThan", "must not be negative, got %v", f.NewerThan)
	case f.NewerThan > 0 && f.OlderThan >= f.NewerThan:
		return invalid("Filter.NewerThan", "%v with OlderThan %v selects nothing", f.NewerThan, f.OlderThan)
	}
	return nil
}

// Match tells whether f selects m.
func (f Filter) Match(m Message) bool {
	switch {
	case f.OriginalQueue != "" && m.Queue != f.OriginalQueue,
		f.ErrorContains != "" && !strings.Contains(m.Error, f.ErrorContains),
		f.OlderThan > 0 && (m.ParkedAt.IsZero() || m.Age < f.OlderThan),
		f.NewerThan > 0 && (m.ParkedAt.IsZero() || m.Age >= f.NewerThan),
		len(f.MessageIDs) > 0 && !slices.Contains(f.MessageIDs, m.MessageID):
		return false
	}
	for k, want := range f.Headers {
		v, ok := m.Headers[k]
		if !ok || headerText(v) != want {
			return false
		}
	}
	return f.Where == nil || f.Where(m)
}

// headerText is the text a Filter compares a header value with.
func headerText(v any) string {
	if n, ok := wire.Int64(v); ok {
		return strconv.FormatInt(n, 10)
	}
	switch x := v.(type) {
	case string:
		return x
	case []byte:
		return string(x)
	case bool:
		return strconv.FormatBool(x)
	case float32:
		return strconv.FormatFloat(float64(x), 'g', -1, 32)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case time.Time:
		return x.UTC().Format(time.RFC3339)
	}
	return fmt.Sprint(v)
}
