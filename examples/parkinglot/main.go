// Parkinglot lists, replays, drops and moves the messages dlxretry parked
// for a work queue, with [dlxretry.ParkingLot].
//
// Run it from the repository root:
//
//	go run ./examples/parkinglot list   --queue orders
//	go run ./examples/parkinglot replay --queue orders --error timeout --dry-run
//	go run ./examples/parkinglot replay --queue orders --error timeout
//	go run ./examples/parkinglot drop   --queue orders --error malformed --out dropped.jsonl
//	go run ./examples/parkinglot move   --queue orders --older-than 168h --to-queue orders.archive
//
// --queue names the work queue (a [dlxretry.Topology].Queue); its parked
// messages wait in the queue named after it with ".parking" appended. The
// filters --error, --original-queue, --older-than, --newer-than and --header
// (repeatable) select messages; --limit stops after that many matches.
// replay, drop and move take --dry-run, which reports what they would do and
// changes nothing: list with the same filters shows the messages.
//
// list prints a table, or with --json one JSON object per message (the body
// in base64). The other commands print what they did, or with --json one
// JSON object of counts. Progress goes to stderr every --progress messages.
// Interrupting a run (Ctrl-C) stops it at the next message; every message it
// has not acted on stays parked.
//
// It connects to --url, by default RABBITMQ_URL or, when that is unset,
// amqp://guest:guest@localhost:5672/. It exits with 0 on success, 1 when
// something fails at run time (the broker is unreachable, the parking queue
// does not exist, a publish is refused) and 2 for a bad command line.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// run is the whole tool: it parses args (without the program name), runs
// the command and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parse(args)
	switch {
	case errors.Is(err, errHelp):
		fmt.Fprint(stdout, usage)
		return exitOK
	case err != nil:
		fmt.Fprintf(stderr, "parkinglot: %v\nRun 'parkinglot help' for usage.\n", err)
		return exitUsage
	}
	if err := execute(ctx, cfg, stdout, stderr); err != nil {
		if errors.Is(err, context.Canceled) {
			err = errors.New("interrupted: the messages it had not acted on are still parked")
		}
		fmt.Fprintf(stderr, "parkinglot: %v\n", err)
		return exitFailure
	}
	return exitOK
}

const usage = `Usage: parkinglot <command> --queue NAME [flags]

Commands:
  list     show parked messages: a table, or JSON lines with --json
  replay   send messages back to the work queue with a fresh attempt budget
  drop     delete messages, appending them to --out first if it is given
  move     publish messages to --to-queue, or --to-exchange with --to-key,
           then delete them from parking

Flags of every command:
  --url URL             broker (default: $RABBITMQ_URL, else amqp://guest:guest@localhost:5672/)
  --queue NAME          the work queue; its messages are parked in NAME.parking (required)
  --error TEXT          only messages whose error contains TEXT
  --original-queue NAME only messages that failed in the work queue NAME
  --older-than DURATION only messages parked at least this long ago (e.g. 90m, 48h)
  --newer-than DURATION only messages parked less than this long ago
  --header KEY=VALUE    only messages with this header value (repeatable)
  --limit N             stop after N matching messages (default 0: no limit)
  --json                JSON output
  --progress N          report progress on stderr every N messages (default 1000, 0: never)

Flags of replay, drop and move:
  --dry-run             report what would be done; change nothing

Flags of drop:
  --out FILE            append each dropped message to FILE as a JSON line, synced
                        to disk before the message is deleted

Flags of move:
  --to-queue NAME       move to this queue (through the default exchange)
  --to-exchange NAME    move to this exchange...
  --to-key KEY          ...with this routing key (default: empty)

Exit status: 0 success, 1 failure at run time, 2 bad command line.
`
