package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/dlxretry/dlxretry"
	"github.com/dlxretry/dlxretry/internal/parked"
)

var parkedLotsCommand = &command{
	name:  "parked lots",
	short: "show parking lots and how many messages wait in each",
	long: `Lots shows, for each work queue that --queue names or that --mgmt-url finds
(queues named Q.parking), how many messages are parked, how many are ready in
the work queue and how many consumers it has. It reads no message.`,
	flags: func(o *options, fs *flag.FlagSet, e *env) {
		o.connFlags(fs, e.getenv)
		o.mgmtFlags(fs, e.getenv)
		o.queueFlag(fs, true)
		o.jsonFlag(fs, "print one JSON object per parking lot")
	},
	run: runLots,
}

func runLots(ctx context.Context, o *options, e *env) error {
	queues, err := workQueues(ctx, o, "parked lots")
	if err != nil {
		return err
	}
	conn, err := connect(ctx, o)
	if err != nil {
		return err
	}
	defer conn.Close()
	t := &table{header: []string{"QUEUE", "PARKING QUEUE", "PARKED", "READY", "CONSUMERS"}, right: map[int]bool{2: true, 3: true, 4: true}}
	enc := e.json()
	for _, q := range queues {
		l := parked.Lot{Conn: conn, Queue: q}
		d, err := l.Depth(ctx)
		if err != nil {
			return err
		}
		if o.json {
			if err := enc.Encode(lotJSON{q, l.ParkingQueue(), d.Exists, d.Parked, d.Work, d.Consumers}); err != nil {
				return err
			}
			continue
		}
		parkedCell := "no queue"
		if d.Exists {
			parkedCell = strconv.Itoa(d.Parked)
		}
		t.add(q, l.ParkingQueue(), parkedCell, strconv.Itoa(d.Work), strconv.Itoa(d.Consumers))
	}
	if o.json {
		return nil
	}
	return t.write(e.stdout, e.width)
}

type lotJSON struct {
	Queue        string `json:"queue"`
	ParkingQueue string `json:"parking_queue"`
	Exists       bool   `json:"exists"`
	Parked       int    `json:"parked"`
	Ready        int    `json:"ready"`
	Consumers    int    `json:"consumers"`
}

var parkedSummaryCommand = &command{
	name:  "parked summary",
	short: "count parked messages by error group, permanent or exhausted, oldest and newest",
	long: `Summary reads every parked message of each lot (headers only are kept) and
counts them by work queue and by error group: the error text with ids and
numbers replaced, so that "order 4711 not found" and "order 4712 not found"
are one group. A group's ID selects it in the other commands (--group).
Permanent messages were parked by a handler's Permanent error; exhausted ones
ran out of attempts.`,
	flags: func(o *options, fs *flag.FlagSet, e *env) {
		o.connFlags(fs, e.getenv)
		o.mgmtFlags(fs, e.getenv)
		o.queueFlag(fs, true)
		o.selectFlags(fs)
		o.jsonFlag(fs, "print one JSON object per parking lot")
		o.progressFlag(fs)
	},
	run: runSummary,
}

func runSummary(ctx context.Context, o *options, e *env) error {
	queues, err := workQueues(ctx, o, "parked summary")
	if err != nil {
		return err
	}
	if err := checkSelection("parked summary", o.sel); err != nil {
		return err
	}
	conn, err := connect(ctx, o)
	if err != nil {
		return err
	}
	defer conn.Close()
	p := e.progress(o.progress)
	for i, q := range queues {
		s, err := p.lot(conn, q, "").Summarize(ctx, o.sel)
		p.done()
		if err != nil {
			return err
		}
		if o.json {
			err = e.json().Encode(s)
		} else {
			if i > 0 {
				fmt.Fprintln(e.stdout)
			}
			err = writeSummary(e, s)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func writeSummary(e *env, s parked.Summary) error {
	now := time.Now()
	fmt.Fprintf(e.stdout, "%s: %d parked (%d permanent, %d exhausted)", s.ParkingQueue, s.Messages, s.Permanent, s.Exhausted)
	if s.Messages > 0 {
		fmt.Fprintf(e.stdout, ", oldest %s ago, newest %s ago", ago(s.Oldest, now), ago(s.Newest, now))
	}
	fmt.Fprintln(e.stdout)
	if len(s.WorkQueues) > 1 || (len(s.WorkQueues) == 1 && s.WorkQueues[s.Queue] == 0) {
		for q, n := range s.WorkQueues {
			fmt.Fprintf(e.stdout, "  failed in %s: %d\n", orDash(q), n)
		}
	}
	if s.Messages == 0 {
		return nil
	}
	fmt.Fprintln(e.stdout)
	t := &table{header: []string{"GROUP", "COUNT", "PERMANENT", "EXHAUSTED", "FIRST", "LAST", "ERROR"},
		right: map[int]bool{1: true, 2: true, 3: true}, flex: 6}
	for _, g := range s.Groups {
		t.add(g.ID, strconv.Itoa(g.Count), strconv.Itoa(g.Permanent), strconv.Itoa(g.Exhausted),
			ago(g.First, now), ago(g.Last, now), oneLine(g.Pattern))
	}
	return t.write(e.stdout, e.width)
}

var parkedListCommand = &command{
	name:  "parked list",
	short: "list parked messages: a table, or JSON lines",
	long: `List prints the parked messages the flags select, in queue order, as a table
or, with --json, as one JSON object per message. In JSON a body that is JSON
stays JSON and text stays text ("body_encoding" says which; binary is base64).
Listing changes nothing: every message stays parked, in its place.`,
	flags: func(o *options, fs *flag.FlagSet, e *env) {
		o.connFlags(fs, e.getenv)
		o.queueFlag(fs, false)
		o.selectFlags(fs)
		o.jsonFlag(fs, "print one JSON object per message")
		o.progressFlag(fs)
	},
	run: runList,
}

func runList(ctx context.Context, o *options, e *env) error {
	queue, conn, err := prepare(ctx, o, "parked list")
	if err != nil {
		return err
	}
	defer conn.Close()
	now := time.Now()
	t := &table{header: []string{"ID", "PARKED", "ATTEMPTS", "PERMANENT", "KEY", "ERROR"}, right: map[int]bool{2: true}, flex: 5}
	print := func(m parked.Message) error {
		t.add(orDash(m.MessageID), ago(m.ParkedAt, now), strconv.Itoa(m.Attempts), yesNo(m.Permanent),
			orDash(m.OriginalRoutingKey), oneLine(m.Error))
		return nil
	}
	if o.json {
		print = func(m parked.Message) error { return writeJSONLine(e, m) }
	}
	p := e.progress(o.progress)
	rep, err := p.lot(conn, queue, "").Each(ctx, o.sel, print)
	p.done()
	if err != nil && rep.Visited == 0 {
		return err
	}
	if !o.json {
		if werr := t.write(e.stdout, e.width); err == nil {
			err = werr
		}
	}
	fmt.Fprintf(e.stderr, "%d of %d parked messages matched\n", rep.Matched, rep.Total)
	return err
}

func writeJSONLine(e *env, m parked.Message) error {
	b, err := parked.MarshalMessage(m)
	if err != nil {
		return err
	}
	_, err = e.stdout.Write(append(b, '\n'))
	return err
}

var parkedShowCommand = &command{
	name:  "parked show",
	args:  "[ID...]",
	short: "show parked messages by id: headers, death history, body",
	long: `Show prints each message whose message id is given (as arguments or with
--id): what parking recorded, the broker's death history (x-death), every
header, and the body by its content type (JSON indented, text as text,
anything else as a hex dump). With --json it prints each as list --json does.
It reads the parking queue until it has found them all.`,
	flags: func(o *options, fs *flag.FlagSet, e *env) {
		o.connFlags(fs, e.getenv)
		o.queueFlag(fs, false)
		fs.Var((*stringList)(&o.sel.IDs), "id", "the message `ID` (repeatable)")
		o.jsonFlag(fs, "print one JSON object per message")
		o.progressFlag(fs)
	},
	run: runShow,
}

// bodyLimit bounds the body show prints.
const bodyLimit = 64 << 10

func runShow(ctx context.Context, o *options, e *env) error {
	ids := append(o.args, o.sel.IDs...)
	if len(ids) == 0 {
		return usagef("parked show: give a message id")
	}
	queue, conn, err := prepare(ctx, o, "parked show")
	if err != nil {
		return err
	}
	defer conn.Close()
	p := e.progress(o.progress)
	l := p.lot(conn, queue, "")
	found, err := l.Find(ctx, ids...)
	p.done()
	if err != nil {
		return err
	}
	for i, m := range found {
		if o.json {
			err = writeJSONLine(e, m)
		} else {
			if i > 0 {
				fmt.Fprintln(e.stdout)
			}
			err = writeMessage(e.stdout, l, m, time.Now())
		}
		if err != nil {
			return err
		}
	}
	return missingIDs(ids, found, l.ParkingQueue())
}

func missingIDs(ids []string, found []parked.Message, queue string) error {
	have := map[string]bool{}
	for _, m := range found {
		have[m.MessageID] = true
	}
	var missing []string
	for _, id := range dedupe(ids) {
		if !have[id] {
			missing = append(missing, strconv.Quote(id))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("no message with id %s in %s", joinAnd(missing), queue)
	}
	return nil
}

// filterFlags names the flag of each Filter field.
var filterFlags = map[string]string{
	"Limit": "--limit", "Filter.OlderThan": "--older-than", "Filter.NewerThan": "--newer-than",
}

// checkSelection reports a selection the flags cannot make work, in terms
// of the flags.
func checkSelection(command string, s parked.Selection) error {
	f := s.Filter
	if f.NewerThan > 0 && f.OlderThan >= f.NewerThan {
		return usagef("%s: --older-than %v and --newer-than %v select nothing: no message is both", command, f.OlderThan, f.NewerThan)
	}
	if err := s.Validate(); err != nil {
		return usagef("%s: %s", command, trimLib(err))
	}
	return nil
}

// trimLib says a selection's problem in terms of its flags.
func trimLib(err error) string {
	var ce *dlxretry.ConfigError
	if errors.As(err, &ce) {
		return orDefault(filterFlags[ce.Field], ce.Field) + ": " + ce.Problem
	}
	return err.Error()
}

// joinAnd joins "a", "b" and "c" as "a, b and c".
func joinAnd(s []string) string {
	if len(s) < 2 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " and " + s[len(s)-1]
}
