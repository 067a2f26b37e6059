package parked

import (
	"cmp"
	"context"
	"slices"
	"time"
)

// Bounds on what a summary keeps, whatever the number of messages.
const (
	// MaxGroups is how many error groups a Summary tells apart; messages of
	// further groups are counted in one group, OtherPattern.
	MaxGroups = 500
	// SampleSize is how many message ids a Group keeps.
	SampleSize = 5
	// maxWorkQueues bounds Summary.WorkQueues in the same way.
	maxWorkQueues = 100
)

// OtherPattern is the pattern of the group that counts the messages of the
// groups beyond MaxGroups.
const OtherPattern = "(other errors)"

// Summary is what a walk over a parking lot found: counts, never messages.
type Summary struct {
	Queue        string         `json:"queue"`         // the lot's work queue
	ParkingQueue string         `json:"parking_queue"` // where its messages wait
	Messages     int            `json:"messages"`      // messages counted (those the selection selects)
	Permanent    int            `json:"permanent"`     // of them, parked by a Permanent error
	Exhausted    int            `json:"exhausted"`     // parked after their last attempt
	Oldest       time.Time      `json:"oldest,omitzero"`
	Newest       time.Time      `json:"newest,omitzero"`
	WorkQueues   map[string]int `json:"work_queues"` // by the work queue the header names ("" when none)
	Groups       []Group        `json:"groups"`      // by Count, largest first
	Report       Report         `json:"report"`      // the walk
	ScannedAt    time.Time      `json:"scanned_at"`
	Took         time.Duration  `json:"-"`

	index map[string]int // group id -> its index in Groups
}

// Group counts the parked messages whose errors have one pattern.
type Group struct {
	ID        string    `json:"id"`      // PatternID(Pattern): --group selects it
	Pattern   string    `json:"pattern"` // the error text, normalized
	Example   string    `json:"example"` // the first error text seen
	Count     int       `json:"count"`
	Permanent int       `json:"permanent"`
	Exhausted int       `json:"exhausted"`
	First     time.Time `json:"first,omitzero"` // parked earliest
	Last      time.Time `json:"last,omitzero"`  // parked latest
	Sample    []string  `json:"sample"`         // some message ids
}

// Summarize walks the lot and counts the messages s selects by group,
// keeping no message.
func (l Lot) Summarize(ctx context.Context, s Selection) (Summary, error) {
	sum := Summary{Queue: l.Queue, ParkingQueue: l.ParkingQueue(), WorkQueues: map[string]int{}}
	start := time.Now()
	rep, err := l.Each(ctx, s, func(m Message) error {
		sum.Add(m)
		return nil
	})
	sum.Report, sum.ScannedAt, sum.Took = rep, start, time.Since(start)
	sum.sort()
	return sum, err
}

// Add counts m.
func (s *Summary) Add(m Message) {
	s.Messages++
	if m.Permanent {
		s.Permanent++
	} else {
		s.Exhausted++
	}
	s.Oldest, s.Newest = earliest(s.Oldest, m.ParkedAt), latest(s.Newest, m.ParkedAt)
	if s.WorkQueues == nil {
		s.WorkQueues = map[string]int{}
	}
	if _, ok := s.WorkQueues[m.Queue]; ok || len(s.WorkQueues) < maxWorkQueues {
		s.WorkQueues[m.Queue]++
	}
	s.group(m).add(m)
}

// group returns m's group, making it if there is room.
func (s *Summary) group(m Message) *Group {
	pattern := Normalize(m.Error)
	id := PatternID(pattern)
	if s.index == nil {
		s.index = map[string]int{}
	}
	if i, ok := s.index[id]; ok {
		return &s.Groups[i]
	}
	if len(s.Groups) >= MaxGroups {
		pattern, id = OtherPattern, PatternID(OtherPattern)
		if i, ok := s.index[id]; ok {
			return &s.Groups[i]
		}
	}
	s.index[id] = len(s.Groups)
	s.Groups = append(s.Groups, Group{ID: id, Pattern: pattern, Example: m.Error})
	return &s.Groups[len(s.Groups)-1]
}

func (g *Group) add(m Message) {
	g.Count++
	if m.Permanent {
		g.Permanent++
	} else {
		g.Exhausted++
	}
	g.First, g.Last = earliest(g.First, m.ParkedAt), latest(g.Last, m.ParkedAt)
	if len(g.Sample) < SampleSize && m.MessageID != "" {
		g.Sample = append(g.Sample, m.MessageID)
	}
}

// sort orders the groups by count, then pattern.
func (s *Summary) sort() {
	slices.SortStableFunc(s.Groups, func(a, b Group) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Pattern, b.Pattern))
	})
	for i, g := range s.Groups {
		s.index[g.ID] = i
	}
}

// Group returns the group with id, if the summary has it.
func (s *Summary) Group(id string) (Group, bool) {
	i, ok := s.index[id]
	if !ok {
		return Group{}, false
	}
	return s.Groups[i], true
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
