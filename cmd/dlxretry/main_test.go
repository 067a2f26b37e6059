package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// result is what one run of the command left.
type result struct {
	code           int
	stdout, stderr string
}

// cli runs the command with args, stdin and whether stdin is a terminal.
func cli(t *testing.T, stdin string, interactive bool, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	e := &env{
		stdin:       strings.NewReader(stdin),
		stdout:      &out,
		stderr:      &errOut,
		interactive: interactive,
		getenv:      func(string) string { return "" },
	}
	code := run(context.Background(), args, e)
	t.Logf("dlxretry %s: exit %d\nstdout:\n%sstderr:\n%s", strings.Join(args, " "), code, out.String(), errOut.String())
	return result{code, out.String(), errOut.String()}
}

func TestUsageErrors(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{nil, "no command given"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"parked"}, "parked: no subcommand given; want lots, summary, list, show, replay, drop, move, restore"},
		{[]string{"parked", "peek"}, `unknown subcommand "peek"`},
		{[]string{"parked", "list"}, "parked list: --queue is required"},
		{[]string{"parked", "list", "--queue", "q", "--bogus"}, "flag provided but not defined: --bogus"},
		{[]string{"parked", "list", "--queue", "q", "--dry-run"}, "not defined: --dry-run"},
		{[]string{"parked", "list", "--queue", "q", "extra"}, `unexpected argument "extra"`},
		{[]string{"parked", "list", "--queue", "q", "--limit", "-1"}, "--limit: must not be negative"},
		{[]string{"parked", "list", "--queue", "q", "--limit", "many"}, `invalid value "many" for flag --limit`},
		{[]string{"parked", "list", "--queue", "q", "--queue", "r"}, "give --queue once"},
		{[]string{"parked", "replay", "--queue", "q", "--older-than", "soon"}, `"soon" is not a duration (for example 90m, 36h, 7d or 1d12h)`},
		{[]string{"parked", "replay", "--queue", "q", "--older-than", "2d", "--newer-than", "1d"}, "--older-than 48h0m0s and --newer-than 24h0m0s select nothing"},
		{[]string{"parked", "list", "--queue", "q", "--header", "novalue"}, "want KEY=VALUE"},
		{[]string{"parked", "list", "--queue", "q", "--url"}, "flag needs an argument: --url"},
		{[]string{"parked", "drop", "--queue", "q", "--to-queue", "a"}, "not defined: --to-queue"},
		{[]string{"parked", "move", "--queue", "q"}, "give one of --to-queue and --to-exchange"},
		{[]string{"parked", "move", "--queue", "q", "--to-queue", "a", "--to-key", "k"}, "--to-key goes with --to-exchange"},
		{[]string{"parked", "show", "--queue", "q"}, "give a message id"},
		{[]string{"parked", "restore"}, "--in is required"},
		{[]string{"parked", "summary"}, "give --queue (or --mgmt-url"},
	}
	for _, c := range cases {
		r := cli(t, "", false, c.args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, c.want) || !strings.Contains(r.stderr, "dlxretry help") || r.stdout != "" {
			t.Errorf("%q: exit %d, stderr %q; want exit 2 and a message with %q", c.args, r.code, r.stderr, c.want)
		}
		if strings.Contains(r.stderr, " -") && !strings.Contains(r.stderr, " --") {
			t.Errorf("%q: a flag with one dash in %q", c.args, r.stderr)
		}
	}
}

func TestParseDuration(t *testing.T) {
	cases := map[string]time.Duration{
		"7d": 7 * 24 * time.Hour, "1d12h": 36 * time.Hour, "1.5d": 36 * time.Hour, "90m": 90 * time.Minute,
		"36h": 36 * time.Hour, "0": 0, "2d30m": 48*time.Hour + 30*time.Minute,
	}
	for in, want := range cases {
		if got, err := parseDuration(in); err != nil || got != want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "d", "7", "soon", "-1h", "7dd", "1h7d", "7 d"} {
		if got, err := parseDuration(bad); err == nil {
			t.Errorf("parseDuration(%q) = %v, want an error", bad, got)
		}
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"--help"}, {"help", "parked", "list"}, {"parked", "list", "-h"}, {"parked", "replay", "--help"}} {
		r := cli(t, "", false, args...)
		if r.code != exitOK || !strings.Contains(r.stdout, "Usage: dlxretry") || r.stderr != "" {
			t.Errorf("%q: exit %d, stdout %q", args, r.code, r.stdout)
		}
	}
	r := cli(t, "", false, "help", "parked", "replay")
	for _, want := range []string{"--queue QUEUE", "--older-than DURATION", "--yes", "--dry-run", "--id ID"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("help parked replay lacks %q", want)
		}
	}
	if r := cli(t, "", false, "help"); !strings.Contains(r.stdout, "RABBITMQ_URL") || !strings.Contains(r.stdout, "shell") {
		t.Errorf("help does not say why the URL belongs in the environment")
	}
}

// Needs no broker: an unreachable one is a clear failure without guesses,
// and without the password.
func TestUnreachableBroker(t *testing.T) {
	r := cli(t, "", false, "parked", "list", "--queue", "q", "--url", "amqp://guest:s3cret@127.0.0.1:1/")
	if r.code != exitFailure || r.stdout != "" || !strings.Contains(r.stderr, "127.0.0.1:1") {
		t.Errorf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	for _, bad := range []string{"s3cret", "is it running", "dlxretry: dlxretry:"} {
		if strings.Contains(r.stderr, bad) {
			t.Errorf("stderr %q shows %q", r.stderr, bad)
		}
	}
}

// Needs no broker: a URL that does not parse is a usage error that does not
// show its password.
func TestBadURLHidesPassword(t *testing.T) {
	for _, u := range []string{"amqp://u:s3cret@127.0.0.1:99999x/", "amqp://u:s3cret@127.0.0.1/%zz", "http://u:s3cret@h/"} {
		r := cli(t, "", false, "parked", "list", "--queue", "q", "--url", u)
		if r.code != exitUsage || !strings.Contains(r.stderr, "--url") || strings.Contains(r.stderr, "s3cret") {
			t.Errorf("--url %s: exit %d, stderr %q; want a usage error without the password", u, r.code, r.stderr)
		}
	}
}
