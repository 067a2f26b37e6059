// Command dlxretry is the operator's tool for the messages dlxretry parked:
// it lists, shows, summarises, replays, drops, moves and restores them, and
// serves a web console for them.
//
// Install it with
//
//	go install github.com/dlxretry/dlxretry/cmd/dlxretry@latest
//
// Usage:
//
//	dlxretry parked summary --queue orders            counts by error group
//	dlxretry parked list    --queue orders --group 3f9a1c2b
//	dlxretry parked show    --queue orders 5f2b9c1e...  headers, death history, body
//	dlxretry parked replay  --queue orders --group 3f9a1c2b
//	dlxretry parked drop    --queue orders --older-than 7d --out dropped.jsonl
//	dlxretry parked restore --in dropped.jsonl
//	dlxretry console        --queue orders --queue payments
//
// It connects to $RABBITMQ_URL (or --url). Run "dlxretry help" for the
// commands and "dlxretry help COMMAND" for a command's flags. Exit status:
// 0 success, 1 failure at run time, 2 bad command line (or a confirmation
// it could not ask for).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], osEnv())
	stop()
	os.Exit(code)
}

// Exit statuses.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

const defaultURL = "amqp://guest:guest@localhost:5672/"

// command is one thing dlxretry does.
type command struct {
	name  string // as typed: "parked list"
	args  string // positional arguments, for the help
	short string
	long  string // what the help says besides the flags
	flags func(o *options, fs *flag.FlagSet, e *env)
	run   func(ctx context.Context, o *options, e *env) error
}

// commands lists them in the order the help shows them.
var commands = []*command{
	parkedLotsCommand, parkedSummaryCommand, parkedListCommand, parkedShowCommand,
	parkedReplayCommand, parkedDropCommand, parkedMoveCommand, parkedRestoreCommand,
	consoleCommand, versionCommand,
}

// run is the whole program: it parses args (without the program name),
// runs the command and returns the exit status.
func run(ctx context.Context, args []string, e *env) int {
	cmd, rest, err := find(args)
	if err == nil {
		err = execute(ctx, cmd, rest, e)
	}
	var ue *usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errHelp):
		help(e.stdout, cmd)
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(e.stderr, "dlxretry: %s\n", e.scrub(ue.msg))
		if cmd != nil {
			fmt.Fprintf(e.stderr, "Run 'dlxretry help %s' for usage.\n", cmd.name)
		} else {
			fmt.Fprintln(e.stderr, "Run 'dlxretry help' for usage.")
		}
		return exitUsage
	case errors.Is(err, context.Canceled):
		fmt.Fprintln(e.stderr, "dlxretry: interrupted; every message it had not acted on is still where it was")
		return exitFailure
	}
	fmt.Fprintf(e.stderr, "dlxretry: %s\n", e.scrub(strings.TrimPrefix(err.Error(), "dlxretry: ")))
	return exitFailure
}

// find returns the command args name and the arguments after its name.
func find(args []string) (*command, []string, error) {
	if len(args) == 0 {
		return nil, nil, usagef("no command given")
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 {
			cmd, _, err := find(args[1:])
			if err != nil {
				return nil, nil, err
			}
			return cmd, nil, errHelp
		}
		return nil, nil, errHelp
	case "--version":
		return versionCommand, args[1:], nil
	}
	for _, c := range commands {
		words := strings.Fields(c.name)
		if len(args) >= len(words) && strings.Join(args[:len(words)], " ") == c.name {
			return c, args[len(words):], nil
		}
	}
	if args[0] == "parked" {
		if len(args) == 1 {
			return nil, nil, usagef("parked: no subcommand given; want %s", subcommands("parked"))
		}
		return nil, nil, usagef("parked: unknown subcommand %q; want %s", args[1], subcommands("parked"))
	}
	return nil, nil, usagef("unknown command %q; want parked or console", args[0])
}

func subcommands(group string) string {
	var names []string
	for _, c := range commands {
		if sub, ok := strings.CutPrefix(c.name, group+" "); ok {
			names = append(names, sub)
		}
	}
	return strings.Join(names, ", ")
}

func execute(ctx context.Context, cmd *command, args []string, e *env) error {
	o := &options{}
	fs := cmd.flagSet(o, e)
	positional, err := parseFlags(fs, args)
	if err != nil {
		var ue *usageError
		if errors.As(err, &ue) {
			ue.msg = cmd.name + ": " + ue.msg
		}
		return err
	}
	if cmd.args == "" && len(positional) > 0 {
		return usagef("%s: unexpected argument %q", cmd.name, positional[0])
	}
	o.args = positional
	e.secret(o.url)
	e.secret(o.mgmtURL)
	return cmd.run(ctx, o, e)
}

func (c *command) flagSet(o *options, e *env) *flag.FlagSet {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	if c.flags != nil {
		c.flags(o, fs, e)
	}
	return fs
}

var versionCommand = &command{
	name:  "version",
	short: "print the version of dlxretry it was built from",
	long:  "Version prints the version of the module github.com/dlxretry/dlxretry the command was built from.",
	run: func(_ context.Context, _ *options, e *env) error {
		_, err := fmt.Fprintln(e.stdout, "dlxretry", version())
		return err
	},
}

// help prints the overview, or a command's help with its flags.
func help(w io.Writer, cmd *command) {
	if cmd == nil {
		fmt.Fprint(w, overview())
		return
	}
	fmt.Fprintf(w, "Usage: dlxretry %s [flags]", cmd.name)
	if cmd.args != "" {
		fmt.Fprintf(w, " %s", cmd.args)
	}
	fmt.Fprintf(w, "\n\n%s\n", strings.TrimSpace(cmd.long))
	fs := cmd.flagSet(&options{}, &env{getenv: func(string) string { return "" }})
	flags := 0
	fs.VisitAll(func(*flag.Flag) { flags++ })
	if flags > 0 {
		fmt.Fprintln(w, "\nFlags:")
	}
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if name != "" {
			line += " " + name
		}
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && !strings.Contains(usage, "default") {
			usage += " (default " + f.DefValue + ")"
		}
		fmt.Fprintf(w, "%-28s %s\n", line, usage)
	})
}

func overview() string {
	var b strings.Builder
	b.WriteString("Usage: dlxretry <command> [flags]\n\nCommands:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-16s %s\n", c.name, c.short)
	}
	b.WriteString(`
Every command that talks to RabbitMQ connects to $RABBITMQ_URL, or to --url,
or else to ` + defaultURL + `.
Keep a password in the environment: a command line is visible to every user
of the machine (ps, /proc) and stays in shell history, while a process's
environment is readable only by its user and root.

Run 'dlxretry help <command>' for a command's flags.
Exit status: 0 success, 1 failure at run time, 2 bad command line.
`)
	return b.String()
}
