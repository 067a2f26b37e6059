package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/dlxretry/dlxretry/internal/parked"
)

// usageError is a bad command line: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// errHelp asks for a command's help.
var errHelp = errors.New("help requested")

// options holds every flag of every command; each command defines the
// flags it takes.
type options struct {
	url      string
	mgmtURL  string
	queues   stringList
	sel      parked.Selection
	json     bool
	dryRun   bool
	yes      bool
	progress int
	out      string // drop
	in       string // restore
	toQueue  string // move
	toExch   string // move
	toKey    string // move
	args     []string

	listen       string     // console
	readOnly     bool       // console
	auth         string     // console
	pageSize     int        // console
	allowedHosts stringList // console
}

// parseFlags parses args with fs, allowing flags after positional
// arguments ("show ID --queue q"); everything after "--" is positional.
// Errors name flags with two dashes, as the help does.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, errHelp
			}
			return nil, &usageError{twoDashes(err.Error())}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		if used := args[:len(args)-len(rest)]; len(used) > 0 && used[len(used)-1] == "--" {
			return append(positional, rest...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// flagInMessage finds a flag name in the flag package's messages
// ("flag provided but not defined: -bogus", "invalid value ... for flag -limit").
var flagInMessage = regexp.MustCompile(`(: |flag |for )-([A-Za-z][A-Za-z0-9-]*)`)

func twoDashes(msg string) string { return flagInMessage.ReplaceAllString(msg, "$1--$2") }

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error {
	if v == "" {
		return errors.New("must not be empty")
	}
	*s = append(*s, v)
	return nil
}

// headerFlag collects KEY=VALUE into a map.
type headerFlag struct{ m *map[string]string }

func (h headerFlag) String() string { return "" }
func (h headerFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want KEY=VALUE, got %q", s)
	}
	if *h.m == nil {
		*h.m = map[string]string{}
	}
	(*h.m)[k] = v
	return nil
}

// durationFlag is a duration that also takes days: 7d, 1d12h, 90m.
type durationFlag struct{ d *time.Duration }

func (f durationFlag) String() string {
	if f.d == nil || *f.d == 0 {
		return ""
	}
	return f.d.String()
}
func (f durationFlag) Set(s string) error {
	d, err := parseDuration(s)
	if err == nil {
		*f.d = d
	}
	return err
}

var daysPrefix = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)d`)

// parseDuration reads a Go duration with days (24h) allowed as the first
// unit: "7d", "1d12h", "1.5d", "36h", "90m".
func parseDuration(s string) (time.Duration, error) {
	bad := fmt.Errorf("%q is not a duration (for example 90m, 36h, 7d or 1d12h)", s)
	var days time.Duration
	if m := daysPrefix.FindStringSubmatch(s); m != nil {
		n, err := strconv.ParseFloat(m[1], 64)
		if err != nil || n > 100000 {
			return 0, bad
		}
		days = time.Duration(n * float64(24*time.Hour))
		s = s[len(m[0]):]
		if s == "" {
			return days, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, bad
	}
	return days + d, nil
}

// Flag groups.

func (o *options) connFlags(fs *flag.FlagSet, getenv func(string) string) {
	fs.StringVar(&o.url, "url", orDefault(getenv("RABBITMQ_URL"), defaultURL),
		"broker `URL`; default $RABBITMQ_URL, else "+defaultURL)
}

func (o *options) mgmtFlags(fs *flag.FlagSet, getenv func(string) string) {
	fs.StringVar(&o.mgmtURL, "mgmt-url", getenv("RABBITMQ_MGMT_URL"),
		"management API `URL` to find parking lots with (default $RABBITMQ_MGMT_URL); logs in as --url's user unless it has its own")
}

func (o *options) queueFlag(fs *flag.FlagSet, many bool) {
	what := "the work `QUEUE` whose parked messages (in QUEUE.parking) to use"
	if many {
		what += " (repeatable)"
	}
	fs.Var(&o.queues, "queue", what)
}

func (o *options) selectFlags(fs *flag.FlagSet) {
	f := &o.sel.Filter
	fs.Var((*stringList)(&o.sel.IDs), "id", "only the message with this message `ID` (repeatable)")
	fs.StringVar(&o.sel.Group, "group", "", "only messages whose error is in the group `ID` (see summary)")
	fs.StringVar(&f.ErrorContains, "error", "", "only messages whose error contains `TEXT`")
	fs.StringVar(&f.OriginalQueue, "original-queue", "", "only messages that failed in the work queue `NAME`")
	fs.Var(durationFlag{&f.OlderThan}, "older-than", "only messages parked at least `DURATION` ago (90m, 36h, 7d)")
	fs.Var(durationFlag{&f.NewerThan}, "newer-than", "only messages parked less than `DURATION` ago")
	fs.Var(headerFlag{&f.Headers}, "header", "only messages with header `KEY=VALUE` (repeatable)")
	fs.IntVar(&o.sel.Limit, "limit", 0, "stop after `N` matching messages (0: no limit)")
}

func (o *options) jsonFlag(fs *flag.FlagSet, what string) {
	fs.BoolVar(&o.json, "json", false, what)
}

func (o *options) progressFlag(fs *flag.FlagSet) {
	fs.IntVar(&o.progress, "progress", 1000, "report progress on stderr every `N` messages (0: never)")
}

func (o *options) actFlags(fs *flag.FlagSet) {
	fs.BoolVar(&o.dryRun, "dry-run", false, "count what would be done; change nothing")
	fs.BoolVar(&o.yes, "yes", false, fmt.Sprintf("do not ask before acting on more than %d messages", askAbove))
	o.progressFlag(fs)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// oneQueue returns the single --queue a command needs.
func (o *options) oneQueue(command string) (string, error) {
	switch len(o.queues) {
	case 0:
		return "", usagef("%s: --queue is required", command)
	case 1:
		return parked.WorkQueue(o.queues[0]), nil
	}
	return "", usagef("%s: give --queue once", command)
}
