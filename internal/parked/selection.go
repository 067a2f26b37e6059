package parked

import "github.com/dlxretry/dlxretry/parkinglot"

// Selection selects parked messages: those its Filter selects that also
// have one of IDs as their MessageId, when IDs is not empty, and whose
// error falls in the group Group (a [GroupID]), when Group is not empty.
// Limit (0: none) and DryRun say how much to act on.
type Selection struct {
	Filter Filter
	IDs    []string
	Group  string
	Limit  int
	DryRun bool
}

// Match tells whether s selects m.
func (s Selection) Match(m Message) bool { return s.filter().Match(m) }

// filter is s as the library's Filter.
func (s Selection) filter() Filter {
	f := s.Filter
	if len(s.IDs) > 0 {
		f.MessageIDs = s.IDs
	}
	if s.Group != "" {
		where := f.Where
		f.Where = func(m Message) bool { return GroupID(m.Error) == s.Group && (where == nil || where(m)) }
	}
	return f
}

// options are the operation options s and l say.
func (s Selection) options(l Lot) []parkinglot.Option {
	var opts []parkinglot.Option
	if s.Limit > 0 {
		opts = append(opts, parkinglot.Limit(s.Limit))
	}
	if s.DryRun {
		opts = append(opts, parkinglot.DryRun())
	}
	if l.Progress != nil {
		opts = append(opts, parkinglot.Progress(l.every(), l.Progress))
	}
	return opts
}

// Validate reports what makes s unusable.
func (s Selection) Validate() error {
	if err := s.Filter.Validate(); err != nil {
		return err
	}
	if s.Limit < 0 {
		return &ConfigError{Field: "Limit", Problem: "must not be negative"}
	}
	return nil
}
