package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/dlxretry/dlxretry/internal/parked"
)

var parkedRestoreCommand = &command{
	name:  "parked restore",
	short: "put back messages that drop --out saved",
	long: `Restore publishes each message of --in (JSON lines, as drop --out writes them,
or as list --json prints them) back to the parking lot it came from, or to
the one --queue names, with its headers, body, content type, message id,
correlation id and timestamp, persistent, and waits for the broker's
confirm. Restoring a file twice parks its messages twice. It stops at the
first line it cannot read or publish and says how far it got.`,
	flags: func(o *options, fs *flag.FlagSet, e *env) {
		o.connFlags(fs, e.getenv)
		fs.StringVar(&o.in, "in", "", "read the messages from `FILE` (- for stdin)")
		fs.Var(&o.queues, "queue", "restore every message to the parking lot of the work `QUEUE`, not the one its line names")
		fs.BoolVar(&o.dryRun, "dry-run", false, "read the file and count; publish nothing")
		o.jsonFlag(fs, "print what was done as JSON")
		o.progressFlag(fs)
	},
	run: runRestore,
}

func runRestore(ctx context.Context, o *options, e *env) error {
	if o.in == "" {
		return usagef("parked restore: --in is required")
	}
	queue := ""
	if len(o.queues) > 0 {
		q, err := o.oneQueue("parked restore")
		if err != nil {
			return err
		}
		queue = q
	}
	in, closeIn, err := openIn(o.in, e.stdin)
	if err != nil {
		return err
	}
	defer closeIn()
	conn, err := connect(ctx, o)
	if err != nil {
		return err
	}
	defer conn.Close()
	p := e.progress(o.progress)
	rep, err := parked.Restore(ctx, conn, in, queue, o.dryRun, func(r parked.RestoreReport) {
		if p.every > 0 && r.Lines%p.every == 0 {
			p.report(fmt.Sprintf("restore: read %d, restored %d", r.Lines, r.Restored))
		}
	})
	p.done()
	if werr := writeRestore(e, o, rep); err == nil {
		err = werr
	}
	return err
}

func openIn(name string, stdin io.Reader) (io.Reader, func(), error) {
	if name == "-" {
		return stdin, func() {}, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, err
	}
	return f, func() { f.Close() }, nil
}

func writeRestore(e *env, o *options, rep parked.RestoreReport) error {
	if o.json {
		return e.json().Encode(struct {
			Command string `json:"command"`
			DryRun  bool   `json:"dry_run"`
			parked.RestoreReport
		}{"restore", o.dryRun, rep})
	}
	lots := make([]string, 0, len(rep.Lots))
	for q := range rep.Lots {
		lots = append(lots, parked.Lot{Queue: q}.ParkingQueue())
	}
	slices.Sort(lots)
	where := joinAnd(lots)
	if where == "" {
		where = "no parking lot"
	}
	var err error
	if o.dryRun {
		_, err = fmt.Fprintf(e.stdout, "dry run: would restore %d messages to %s; nothing was published\n", rep.Lines, where)
	} else {
		_, err = fmt.Fprintf(e.stdout, "restored %d of %d messages read to %s\n", rep.Restored, rep.Lines, where)
	}
	return err
}
