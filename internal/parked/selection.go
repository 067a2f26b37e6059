package parked

import "slices"

// Selection selects parked messages: those its Filter selects that also
// have one of IDs as their MessageId, when IDs is not empty, and whose
// error falls in the group Group (a [GroupID]), when Group is not empty.
// Filter.Limit and Filter.DryRun say how much to act on.
type Selection struct {
	Filter Filter
	IDs    []string
	Group  string
}

// Match tells whether s selects m.
func (s Selection) Match(m Message) bool {
	switch {
	case !s.Filter.Match(m),
		len(s.IDs) > 0 && !slices.Contains(s.IDs, m.MessageID),
		s.Group != "" && GroupID(m.Error) != s.Group:
		return false
	}
	return true
}

// plain tells whether s says no more than its Filter, so that the
// library's own operations can run it.
func (s Selection) plain() bool { return len(s.IDs) == 0 && s.Group == "" }

// Validate reports what makes s unusable.
func (s Selection) Validate() error { return s.Filter.Validate() }
