package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dlxretry/dlxretry"
	"github.com/dlxretry/dlxretry/internal/brokertest"
)

// tool runs the tool and returns its exit code and output.
func tool(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, &out, &errOut)
	t.Logf("parkinglot %s: exit %d\nstdout:\n%sstderr:\n%s", strings.Join(args, " "), code, out.String(), errOut.String())
	return code, out.String(), errOut.String()
}

func TestBadUsage(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{nil, "no command given"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"list"}, "--queue is required"},
		{[]string{"list", "--queue", "q", "--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"list", "--queue", "q", "--dry-run"}, "not defined: -dry-run"},
		{[]string{"list", "--queue", "q", "extra"}, `unexpected argument "extra"`},
		{[]string{"list", "--queue", "q", "--limit", "-1"}, "Filter.Limit"},
		{[]string{"list", "--queue", "q", "--limit", "many"}, `invalid value "many" for flag -limit`},
		{[]string{"replay", "--queue", "q", "--older-than", "soon"}, `invalid value "soon" for flag -older-than`},
		{[]string{"replay", "--queue", "q", "--older-than", "2h", "--newer-than", "1h"}, "selects nothing"},
		{[]string{"list", "--queue", "q", "--header", "novalue"}, "want KEY=VALUE"},
		{[]string{"list", "--queue", "q", "--url", "http://localhost"}, "--url"},
		{[]string{"list", "--queue", "q", "--progress", "-5"}, "--progress must not be negative"},
		{[]string{"drop", "--queue", "q", "--to-queue", "a"}, "not defined: -to-queue"},
		{[]string{"move", "--queue", "q"}, "exactly one of --to-queue and --to-exchange"},
		{[]string{"move", "--queue", "q", "--to-queue", "a", "--to-exchange", "b"}, "exactly one of"},
		{[]string{"move", "--queue", "q", "--to-queue", "a", "--to-key", "k"}, "--to-key goes with --to-exchange"},
	}
	for _, c := range cases {
		code, stdout, stderr := tool(t, c.args...)
		if code != exitUsage || !strings.Contains(stderr, c.want) || !strings.Contains(stderr, "parkinglot help") || stdout != "" {
			t.Errorf("%q: exit %d, stderr %q; want exit 2 and a message with %q", c.args, code, stderr, c.want)
		}
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"-h"}, {"list", "-h"}} {
		code, stdout, _ := tool(t, args...)
		if code != exitOK || !strings.Contains(stdout, "Usage: parkinglot") {
			t.Errorf("%q: exit %d, stdout %q", args, code, stdout)
		}
	}
}

// Needs no broker: an unreachable one is a clear failure, without the password.
func TestUnreachableBroker(t *testing.T) {
	code, stdout, stderr := tool(t, "list", "--queue", "q", "--url", "amqp://guest:s3cret@127.0.0.1:1/")
	if code != exitFailure || stdout != "" {
		t.Errorf("exit %d, stdout %q", code, stdout)
	}
	for _, want := range []string{"cannot connect to RabbitMQ", "127.0.0.1:1", "RABBITMQ_URL"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr %q lacks %q", stderr, want)
		}
	}
	if strings.Contains(stderr, "s3cret") {
		t.Errorf("stderr %q shows the password", stderr)
	}
}

// Needs no broker: a URL that does not parse is a usage error that does not
// show its password.
func TestBadURLHidesPassword(t *testing.T) {
	for _, u := range []string{"amqp://u:s3cret@127.0.0.1:99999x/", "amqp://u:s3cret@127.0.0.1/%zz"} {
		code, _, stderr := tool(t, "list", "--queue", "q", "--url", u)
		if code != exitUsage || !strings.Contains(stderr, "--url") || strings.Contains(stderr, "s3cret") {
			t.Errorf("--url %s: exit %d, stderr %q; want a usage error without the password", u, code, stderr)
		}
	}
}

func TestMissingParkingQueue(t *testing.T) {
	url := brokertest.URL(t)
	code, stdout, stderr := tool(t, "replay", "--url", url, "--queue", brokertest.Name(t, "none"))
	if code != exitFailure || stdout != "" || !strings.Contains(stderr, "does not exist") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// setUp declares a topology and parks 20 messages: even ones failed with
// "upstream timeout", odd ones with "malformed payload".
func setUp(t *testing.T) (url string, topo dlxretry.Topology) {
	t.Helper()
	url = brokertest.URL(t)
	topo = dlxretry.Topology{Queue: brokertest.Name(t, "q"), Delays: []time.Duration{time.Second}, MaxAttempts: 3}
	ch := brokertest.Channel(t)
	if err := topo.Declare(context.Background(), ch); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = topo.Delete(context.Background(), brokertest.Channel(t)) })
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		errText := map[bool]string{true: "upstream timeout", false: "malformed payload"}[i%2 == 0]
		dc, err := ch.PublishWithDeferredConfirm(topo.ParkingExchange(), "order.created", true, false, amqp.Publishing{
			MessageId: "m" + string(rune('a'+i)), Body: []byte("body"), DeliveryMode: amqp.Persistent,
			Headers: amqp.Table{dlxretry.HeaderQueue: topo.Queue, dlxretry.HeaderError: errText,
				dlxretry.HeaderAttempts: int64(3), dlxretry.HeaderParkedAt: time.Now().Add(-time.Hour)},
		})
		if err != nil || !dc.Wait() {
			t.Fatalf("park %d: %v", i, err)
		}
	}
	return url, topo
}

func queueLen(t *testing.T, queue string) int {
	t.Helper()
	q, err := brokertest.Channel(t).QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	return q.Messages
}

func TestListTableAndJSON(t *testing.T) {
	url, topo := setUp(t)
	code, stdout, stderr := tool(t, "list", "--url", url, "--queue", topo.Queue, "--progress", "8")
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if code != exitOK || len(lines) != 21 || strings.Join(strings.Fields(lines[0]), " ") != "MESSAGE-ID ORIGINAL-KEY ATTEMPTS REPLAYS AGE SIZE ERROR" {
		t.Fatalf("exit %d, %d lines", code, len(lines))
	}
	// The parking time has whole seconds: the age is an hour and a second or less.
	row := strings.Fields(lines[1])
	row[4] = strings.Replace(row[4], "1h0m1s", "1h0m0s", 1)
	if strings.Join(row, " ") != "ma order.created 3 0 1h0m0s 4 upstream timeout" {
		t.Errorf("first row %q", lines[1])
	}
	if strings.Count(stderr, "progress: visited") != 2 || !strings.Contains(stderr, "20 of 20 parked messages matched") {
		t.Errorf("stderr %q", stderr)
	}

	code, stdout, _ = tool(t, "list", "--url", url, "--queue", topo.Queue, "--json", "--error", "malformed", "--limit", "3")
	var got []dlxretry.ParkedMessage
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
		var m dlxretry.ParkedMessage
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		got = append(got, m)
	}
	if code != exitOK || len(got) != 3 || got[0].MessageID != "mb" || got[2].Error != "malformed payload" || string(got[1].Body) != "body" {
		t.Errorf("exit %d, messages %+v", code, got)
	}
	if n := queueLen(t, topo.ParkingQueue()); n != 20 {
		t.Errorf("%d messages parked after listing, want 20", n)
	}
}

func TestReplayDropMove(t *testing.T) {
	url, topo := setUp(t)
	base := []string{"--url", url, "--queue", topo.Queue}
	expect := func(wantStdout string, args ...string) {
		t.Helper()
		code, stdout, _ := tool(t, append(args, base...)...)
		if code != exitOK || stdout != wantStdout {
			t.Errorf("%q: exit %d, stdout %q, want %q", args, code, stdout, wantStdout)
		}
	}
	expect("dry run: would replay 10 of 20 parked messages; nothing was changed\n", "replay", "--error", "timeout", "--dry-run")
	expect(`{"command":"replay","dry_run":false,"total":20,"visited":7,"matched":4,"acted":4,"kept":3}`+"\n",
		"replay", "--error", "timeout", "--limit", "4", "--json")
	if n := queueLen(t, topo.Queue); n != 4 {
		t.Errorf("work queue holds %d messages, want 4", n)
	}
	out := filepath.Join(t.TempDir(), "dropped.jsonl")
	expect("dropped 10 of 16 parked messages (visited 16, matched 10, kept 6)\n", "drop", "--error", "malformed", "--out", out)
	if n := jsonLines(t, out); n != 10 {
		t.Errorf("%s has %d lines, want 10", out, n)
	}
	archive := brokertest.Name(t, "archive")
	declareTemp(t, archive, func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclare(archive, false, false, false, false, nil)
		return err
	}, func(ch *amqp.Channel) error {
		_, err := ch.QueueDelete(archive, false, false, false)
		return err
	})
	expect("moved 6 of 6 parked messages (visited 6, matched 6, kept 0)\n", "move", "--to-queue", archive)
	if n, m := queueLen(t, archive), queueLen(t, topo.ParkingQueue()); n != 6 || m != 0 {
		t.Errorf("archive holds %d, parking %d; want 6 and 0", n, m)
	}
}

func jsonLines(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	for sc := bufio.NewScanner(f); sc.Scan(); n++ {
		var m dlxretry.ParkedMessage
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil || m.Error != "malformed payload" {
			t.Errorf("line %d: %v %+v", n+1, err, m)
		}
	}
	return n
}

// A move the broker refuses fails with exit 1 and says how far it got.
func TestMoveUnroutable(t *testing.T) {
	url, topo := setUp(t)
	exchange := brokertest.Name(t, "x")
	declareTemp(t, exchange, func(ch *amqp.Channel) error {
		return ch.ExchangeDeclare(exchange, "direct", false, false, false, false, nil)
	}, func(ch *amqp.Channel) error {
		return ch.ExchangeDelete(exchange, false, false)
	})
	code, stdout, stderr := tool(t, "move", "--url", url, "--queue", topo.Queue, "--to-exchange", exchange, "--to-key", "k")
	if code != exitFailure || stdout != "moved 0 of 20 parked messages (visited 1, matched 1, kept 1)\n" ||
		!strings.Contains(stderr, "unroutable") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if n := queueLen(t, topo.ParkingQueue()); n != 20 {
		t.Errorf("%d parked, want 20", n)
	}
}

// declareTemp declares something with declare and deletes it with remove
// when the test ends.
func declareTemp(t *testing.T, name string, declare, remove func(*amqp.Channel) error) {
	t.Helper()
	if err := declare(brokertest.Channel(t)); err != nil {
		t.Fatalf("declare %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := remove(brokertest.Channel(t)); err != nil {
			t.Errorf("cleanup: delete %s: %v", name, err)
		}
	})
}
