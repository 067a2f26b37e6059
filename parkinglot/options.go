package parkinglot

// Option says how much of its selection an operation acts on, and what it
// reports as it goes. The default: every message the [Filter] selects, for
// real, reporting nothing.
type Option func(*run)

// run is what the options of one operation say.
type run struct {
	limit    int
	dryRun   bool
	every    int
	progress func(Report)
}

// Limit stops an operation once n messages matched; 0, the default, is no
// limit.
func Limit(n int) Option { return func(r *run) { r.limit = n } }

// DryRun makes Replay, Drop and Move act on nothing: the report says what
// they would have done. The messages are still visited, and put back.
func DryRun() Option { return func(r *run) { r.dryRun = true } }

// Progress calls f with the report so far after every every-th message an
// operation visits, on the operation's goroutine.
func Progress(every int, f func(Report)) Option {
	return func(r *run) { r.every, r.progress = every, f }
}

func newRun(opts []Option) run {
	var r run
	for _, o := range opts {
		if o != nil {
			o(&r)
		}
	}
	return r
}

func (r run) validate() error {
	switch {
	case r.limit < 0:
		return invalid("Limit", "must not be negative, got %d", r.limit)
	case r.progress != nil && r.every < 1:
		return invalid("Progress", "every must be at least 1, got %d", r.every)
	}
	return nil
}
