package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"

	"github.com/dlxretry/dlxretry/internal/console"
	"github.com/dlxretry/dlxretry/internal/parked"
)

var consoleCommand = &command{
	name:  "console",
	short: "serve a web console for parked messages",
	long: `Console serves web pages that show the parking lots --queue names (and those
--mgmt-url finds): how many messages each holds, its failures grouped by
error with counts and first and last parking times, and each message's
headers, death history and body. Buttons replay or drop one message or a
whole error group, after a page that counts them with a dry run and asks.

It listens on 127.0.0.1:8080 by default and then answers only requests for
localhost, 127.0.0.1 or ::1 (add names with --allow-host). Every action is a
POST that must carry the token of the browser's session and come from the
console's own pages. --read-only shows no action and refuses them all.
--auth (or $DLXRETRY_CONSOLE_AUTH, the safer place) asks for a user and
password with HTTP basic authentication; use it whenever the console listens
on an address others can reach, behind TLS.

RabbitMQ cannot peek at a queue: the console reads a parking lot by taking
its messages and putting them back, one read at a time per lot, and shows
the counts of its last full read.`,
	flags: func(o *options, fs *flag.FlagSet, e *env) {
		o.connFlags(fs, e.getenv)
		o.mgmtFlags(fs, e.getenv)
		o.queueFlag(fs, true)
		fs.StringVar(&o.listen, "listen", "127.0.0.1:8080", "listen on `ADDRESS`")
		fs.BoolVar(&o.readOnly, "read-only", false, "show no actions and refuse them")
		fs.StringVar(&o.auth, "auth", e.getenv("DLXRETRY_CONSOLE_AUTH"), "require `USER:PASSWORD` (default $DLXRETRY_CONSOLE_AUTH)")
		fs.IntVar(&o.pageSize, "page-size", 50, "show `N` messages a page")
		fs.Var(&o.allowedHosts, "allow-host", "also answer requests for `HOST` (repeatable)")
		fs.StringVar(&o.out, "drop-log", "", "append each message the console drops to `FILE` as a JSON line first")
	},
	run: runConsole,
}

func runConsole(ctx context.Context, o *options, e *env) error {
	cfg, err := consoleConfig(o, e)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return err
	}
	defer ln.Close()
	conn, err := connect(ctx, o)
	if err != nil {
		return err
	}
	defer conn.Close()
	cfg.Conn = conn
	if o.out != "" {
		f, err := os.OpenFile(o.out, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return err
		}
		defer f.Close()
		cfg.DropLog, cfg.DropLogName = f, o.out
	}
	srv, err := console.New(cfg)
	if err != nil {
		return err
	}
	mode := ""
	if o.readOnly {
		mode = " (read-only)"
	}
	fmt.Fprintf(e.stderr, "dlxretry console: serving http://%s/%s\n", ln.Addr(), mode)
	return srv.Run(ctx, ln)
}

// consoleConfig checks the console's flags.
func consoleConfig(o *options, e *env) (console.Config, error) {
	cfg := console.Config{ReadOnly: o.readOnly, PageSize: o.pageSize}
	if o.auth != "" {
		user, pass, ok := strings.Cut(o.auth, ":")
		if !ok || user == "" || pass == "" {
			return cfg, usagef("console: --auth: want USER:PASSWORD")
		}
		cfg.User, cfg.Password = user, pass
		e.secrets = append(e.secrets, pass)
	}
	if o.pageSize < 1 || o.pageSize > 1000 {
		return cfg, usagef("console: --page-size must be from 1 to 1000")
	}
	host, _, err := net.SplitHostPort(o.listen)
	if err != nil {
		return cfg, usagef("console: --listen: %v", err)
	}
	cfg.Hosts = append([]string(nil), o.allowedHosts...)
	if loopback(host) {
		cfg.Hosts = append(cfg.Hosts, "localhost", "127.0.0.1", "::1")
	} else if o.auth == "" && !o.readOnly {
		fmt.Fprintf(e.stderr, "dlxretry console: warning: listening on %s without --auth: whoever reaches it can replay and drop messages\n", o.listen)
	}
	for _, q := range o.queues {
		cfg.Queues = append(cfg.Queues, parked.WorkQueue(q))
	}
	if o.mgmtURL != "" {
		cfg.Discover = func(ctx context.Context) ([]string, error) { return discover(ctx, o) }
	}
	if len(cfg.Queues) == 0 && cfg.Discover == nil {
		return cfg, usagef("console: give --queue (or --mgmt-url to find the parking lots)")
	}
	cfg.Logger = slog.New(slog.NewTextHandler(scrubbed{e}, nil))
	return cfg, nil
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// scrubbed writes to stderr without the passwords.
type scrubbed struct{ e *env }

func (s scrubbed) Write(p []byte) (int, error) {
	_, err := io.WriteString(s.e.stderr, s.e.scrub(string(p)))
	return len(p), err
}
