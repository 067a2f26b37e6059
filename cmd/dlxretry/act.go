package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/dlxretry/dlxretry/internal/parked"
)

// askAbove is the handful of messages replay, drop and move act on without
// asking.
const askAbove = 5

// operation is what replay, drop and move do to the selected messages.
type operation struct {
	verb, past string
	prompt     func(o *options, l parked.Lot) string // what the confirmation asks, after the count
	check      func(o *options) error                // its own flags
	do         func(ctx context.Context, o *options, l parked.Lot, s parked.Selection) (parked.Report, error)
}

func actFlags(o *options, fs *flag.FlagSet, e *env) {
	o.connFlags(fs, e.getenv)
	o.queueFlag(fs, false)
	o.selectFlags(fs)
	o.actFlags(fs)
	o.jsonFlag(fs, "print what was done as JSON")
}

var parkedReplayCommand = &command{
	name:  "parked replay",
	short: "send parked messages back to their work queue with fresh attempts",
	long: `Replay publishes each selected message to its work queue itself (not to the
exchange it first came through, so that other queues bound there get no
duplicate), without the broker's death history: the handler sees attempt 1
again and the message gets the whole retry schedule. The parked message is
deleted once the broker confirmed the copy.

Acting on more than ` + fmt.Sprint(askAbove) + ` messages asks for confirmation first, after a dry run
that counts them; --yes skips the question. Without a terminal to ask on, it
refuses (exit status 2) unless --yes is given.`,
	flags: actFlags,
	run: func(ctx context.Context, o *options, e *env) error {
		return runAct(ctx, o, e, operation{
			verb: "replay", past: "replayed",
			prompt: func(_ *options, l parked.Lot) string { return "back to the work queue " + l.Queue },
			do: func(ctx context.Context, _ *options, l parked.Lot, s parked.Selection) (parked.Report, error) {
				return l.Replay(ctx, s)
			},
		})
	},
}

var parkedDropCommand = &command{
	name:  "parked drop",
	short: "delete parked messages, saving them to a file first with --out",
	long: `Drop deletes each selected message. With --out, it first appends the message
to FILE as one JSON line and syncs the file to disk; a message is deleted
only once its line is on disk. 'dlxretry parked restore --in FILE' puts them
back.

Acting on more than ` + fmt.Sprint(askAbove) + ` messages asks for confirmation first (see replay).`,
	flags: func(o *options, fs *flag.FlagSet, e *env) {
		actFlags(o, fs, e)
		fs.StringVar(&o.out, "out", "", "append each message to `FILE` as a JSON line before deleting it")
	},
	run: func(ctx context.Context, o *options, e *env) error {
		return runAct(ctx, o, e, operation{
			verb: "drop", past: "dropped",
			prompt: func(o *options, _ parked.Lot) string {
				if o.out == "" {
					return "for good (no --out file)"
				}
				return "after saving them to " + o.out
			},
			do: drop,
		})
	},
}

func drop(ctx context.Context, o *options, l parked.Lot, s parked.Selection) (parked.Report, error) {
	if o.out == "" || s.DryRun {
		return l.Drop(ctx, s, nil)
	}
	f, err := os.OpenFile(o.out, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return parked.Report{}, err
	}
	// An *os.File is synced after each line, before the message is deleted.
	rep, err := l.Drop(ctx, s, f)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close %s: %w", o.out, cerr)
	}
	return rep, err
}

var parkedMoveCommand = &command{
	name:  "parked move",
	short: "publish parked messages to another queue or exchange, then delete them",
	long: `Move publishes each selected message, headers and death history included, to
--to-queue, or to --to-exchange with --to-key, and deletes the parked message
once the broker confirmed the copy; a copy no queue takes stops it.

Acting on more than ` + fmt.Sprint(askAbove) + ` messages asks for confirmation first (see replay).`,
	flags: func(o *options, fs *flag.FlagSet, e *env) {
		actFlags(o, fs, e)
		fs.StringVar(&o.toQueue, "to-queue", "", "move to the queue `NAME`")
		fs.StringVar(&o.toExch, "to-exchange", "", "move to the exchange `NAME`...")
		fs.StringVar(&o.toKey, "to-key", "", "...with the routing key `KEY`")
	},
	run: func(ctx context.Context, o *options, e *env) error {
		return runAct(ctx, o, e, operation{
			verb: "move", past: "moved",
			check: func(o *options) error {
				switch {
				case (o.toQueue == "") == (o.toExch == ""):
					return usagef("parked move: give one of --to-queue and --to-exchange")
				case o.toQueue != "" && o.toKey != "":
					return usagef("parked move: --to-key goes with --to-exchange, not --to-queue")
				}
				return nil
			},
			prompt: func(o *options, _ parked.Lot) string {
				if o.toQueue != "" {
					return "to the queue " + o.toQueue
				}
				return fmt.Sprintf("to the exchange %s with key %q", o.toExch, o.toKey)
			},
			do: func(ctx context.Context, o *options, l parked.Lot, s parked.Selection) (parked.Report, error) {
				if o.toQueue != "" {
					return l.Move(ctx, s, "", o.toQueue)
				}
				return l.Move(ctx, s, o.toExch, o.toKey)
			},
		})
	},
}

// runAct runs replay, drop or move: a dry run that counts first, unless
// --yes or a small --limit makes the count needless, and a confirmation
// when more than a handful would be acted on.
func runAct(ctx context.Context, o *options, e *env, op operation) error {
	if op.check != nil {
		if err := op.check(o); err != nil {
			return err
		}
	}
	queue, conn, err := prepare(ctx, o, "parked "+op.verb)
	if err != nil {
		return err
	}
	defer conn.Close()
	p := e.progress(o.progress)
	defer p.done()
	s := o.sel
	if o.dryRun {
		s.DryRun = true
		l := p.lot(conn, queue, "")
		rep, err := op.do(ctx, o, l, s)
		p.done()
		return finish(e, o, op, l, rep, err)
	}
	if !o.yes && (s.Limit == 0 || s.Limit > askAbove) {
		n, err := confirm(ctx, o, e, op, p, p.lot(conn, queue, ""), s)
		p.done()
		if err != nil || n == 0 {
			return err
		}
		s.Limit = n // never more than was confirmed
	}
	l := p.lot(conn, queue, op.past)
	rep, err := op.do(ctx, o, l, s)
	p.done()
	return finish(e, o, op, l, rep, err)
}

// errDeclined is the answer no.
var errDeclined = errors.New("not confirmed; nothing was changed")

// confirm counts the messages s selects with a dry run and, when there are
// more than askAbove, asks whether to go on. It returns the count.
func confirm(ctx context.Context, o *options, e *env, op operation, p *progress, l parked.Lot, s parked.Selection) (int, error) {
	s.DryRun = true
	rep, err := op.do(ctx, o, l, s)
	p.done()
	if err != nil {
		return 0, err
	}
	switch {
	case rep.Matched == 0:
		fmt.Fprintf(e.stdout, "nothing to %s: none of the %d messages in %s matched\n", op.verb, rep.Total, l.ParkingQueue())
		return 0, nil
	case rep.Matched <= askAbove:
		return rep.Matched, nil
	case !e.interactive:
		return 0, usagef("%s: refusing to %s %d messages without confirmation, and stdin is not a terminal to ask on; pass --yes",
			"parked "+op.verb, op.verb, rep.Matched)
	}
	fmt.Fprintf(e.stderr, "%s %d of the %d messages in %s %s? [y/N] ",
		capitalize(op.verb), rep.Matched, rep.Total, l.ParkingQueue(), op.prompt(o, l))
	answer, _ := bufio.NewReader(e.stdin).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(answer)) {
	case "y", "yes":
		return rep.Matched, nil
	}
	return 0, errDeclined
}

// finish prints what an operation did, also after a failure that left
// some of it done.
func finish(e *env, o *options, op operation, l parked.Lot, rep parked.Report, err error) error {
	if err != nil && rep.Visited == 0 {
		return err // it did nothing: the error says all
	}
	var werr error
	switch {
	case o.json:
		werr = e.json().Encode(struct {
			Command      string `json:"command"`
			Queue        string `json:"queue"`
			ParkingQueue string `json:"parking_queue"`
			DryRun       bool   `json:"dry_run"`
			parked.Report
		}{op.verb, l.Queue, l.ParkingQueue(), o.dryRun, rep})
	case o.dryRun:
		_, werr = fmt.Fprintf(e.stdout, "dry run: would %s %d of the %d messages in %s; nothing was changed\n",
			op.verb, rep.Matched, rep.Total, l.ParkingQueue())
	default:
		_, werr = fmt.Fprintf(e.stdout, "%s %d of the %d messages in %s (visited %d, matched %d, kept %d)\n",
			op.past, rep.Acted, rep.Total, l.ParkingQueue(), rep.Visited, rep.Matched, rep.Kept)
	}
	return errors.Join(err, werr)
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
