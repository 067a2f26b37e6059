package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dlxretry/dlxretry"
	"github.com/dlxretry/dlxretry/internal/brokertest"
	"github.com/dlxretry/dlxretry/internal/parked"
	"github.com/dlxretry/dlxretry/internal/parkedtest"
	"github.com/dlxretry/dlxretry/parkinglot"
)

// fleet parks parkedtest.Fleet's 48 messages and returns the URL and the
// flags that name the broker and the queue.
func fleet(t *testing.T) (dlxretry.Topology, []string) {
	t.Helper()
	url := brokertest.URL(t)
	topo := parkedtest.Topology(t, "orders")
	parkedtest.Park(t, topo, parkedtest.Fleet()...)
	return topo, []string{"--url", url, "--queue", topo.Queue}
}

// cmd is the command words, then more, then base.
func cmd(words string, base []string, more ...string) []string {
	return append(append(strings.Fields(words), more...), base...)
}

func TestSummaryGroupsErrors(t *testing.T) {
	topo, base := fleet(t)
	r := cli(t, "", false, cmd("parked summary", base)...)
	if r.code != exitOK {
		t.Fatalf("exit %d", r.code)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if want := topo.ParkingQueue() + ": 48 parked (10 permanent, 38 exhausted), oldest "; !strings.HasPrefix(lines[0], want) {
		t.Errorf("first line %q, want %q...", lines[0], want)
	}
	want := []string{
		"20 0 20 upstream timeout after <n>ms",
		"10 0 10 order <n> not found",
		"8 8 0 malformed payload: invalid character 'x' at offset <n>",
		"5 0 5 dial tcp <n>:<n>: connection refused",
		"3 0 3 rate limited: retry after <n>s (request <id>)",
		"2 2 0 duplicate key value violates unique constraint \"orders_pkey\" (id=<n>)",
	}
	rows := lines[3:]
	if len(rows) != len(want) {
		t.Fatalf("%d groups, want %d", len(rows), len(want))
	}
	for i, row := range rows {
		f := strings.Fields(row)
		got := strings.Join(append(f[1:4], f[6:]...), " ")
		if got != want[i] || len(f[0]) != 8 {
			t.Errorf("group %d: %q, want %q", i, got, want[i])
		}
	}

	r = cli(t, "", false, cmd("parked summary --json", base)...)
	var s parked.Summary
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatal(err)
	}
	if s.Messages != 48 || len(s.Groups) != 6 || s.Groups[0].Count != 20 || s.WorkQueues[topo.Queue] != 48 || len(s.Groups[0].Sample) != parked.SampleSize {
		t.Errorf("summary %+v", s)
	}
	if n := parkedtest.Depth(t, topo.ParkingQueue()); n != 48 {
		t.Errorf("%d parked after the summary, want 48", n)
	}
}

func TestListFitsTheTerminal(t *testing.T) {
	_, base := fleet(t)
	var out strings.Builder
	e := &env{stdin: strings.NewReader(""), stdout: &out, stderr: &strings.Builder{}, width: 72, getenv: func(string) string { return "" }}
	if code := run(context.Background(), cmd("parked list --error malformed --limit 3", base), e); code != exitOK {
		t.Fatalf("exit %d", code)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 || strings.Join(strings.Fields(lines[0]), " ") != "ID PARKED ATTEMPTS PERMANENT KEY ERROR" {
		t.Fatalf("table %q", out.String())
	}
	for _, l := range lines {
		if n := len([]rune(l)); n > 72 {
			t.Errorf("line of %d runes: %q", n, l)
		}
	}
	if f := strings.Fields(lines[1]); f[0] != "m-0030" || f[3] != "yes" || !strings.HasSuffix(lines[1], "…") {
		t.Errorf("row %q", lines[1])
	}
}

func TestListJSONKeepsJSONBodies(t *testing.T) {
	topo, base := fleet(t)
	parkedtest.Park(t, topo,
		parkedtest.Message{ID: "text-1", Error: "boom", ContentType: "text/plain", Body: []byte("hello\nworld")},
		parkedtest.Message{ID: "bin-1", Error: "boom", ContentType: "application/octet-stream", Body: []byte{0, 1, 2, 0xff}})
	r := cli(t, "", false, cmd("parked list --json --error boom", base)...)
	var got []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		got = append(got, m)
	}
	if len(got) != 2 || got[0]["body"] != "hello\nworld" || got[0]["body_encoding"] != "text" ||
		got[1]["body"] != "AAEC/w==" || got[1]["body_encoding"] != "base64" {
		t.Errorf("messages %v", got)
	}
	r = cli(t, "", false, cmd("parked list --json --limit 1", base)...)
	var first struct {
		Body         map[string]any `json:"body"`
		BodyEncoding string         `json:"body_encoding"`
		Deaths       []map[string]any
	}
	if err := json.Unmarshal([]byte(r.stdout), &first); err != nil || first.BodyEncoding != "json" || first.Body["order"] != float64(4700) ||
		len(first.Deaths) != 1 || first.Deaths[0]["reason"] != "rejected" {
		t.Errorf("%v: %+v", err, first)
	}
}

func TestShowByID(t *testing.T) {
	topo, base := fleet(t)
	parkedtest.Park(t, topo, parkedtest.Message{ID: "bin-1", Error: "boom", ContentType: "application/octet-stream", Body: []byte("\x00\x01binary\xff")})
	r := cli(t, "", false, cmd("parked show m-0021 --id bin-1", base)...)
	if r.code != exitOK {
		t.Fatalf("exit %d", r.code)
	}
	for _, want := range []string{
		"Message m-0021", "Error              order 4721 not found", "Outcome            exhausted: parked after 3 attempts",
		"Original key       order.created", "Death history (x-death, most recent first)",
		topo.Queue + "  rejected", "x-dlxretry-attempts: 3", "Body (json, ",
		"  {\n    \"order\": 4721,\n    \"customer\": \"c-21\",",
		"Message bin-1", "Body (binary, 9 bytes)", "00000000  00 01 62 69 6e 61 72 79  ff",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("show lacks %q", want)
		}
	}
	r = cli(t, "", false, cmd("parked show nope m-0001", base)...)
	if r.code != exitFailure || !strings.Contains(r.stdout, "Message m-0001") || !strings.Contains(r.stderr, `no message with id "nope" in `+topo.ParkingQueue()) {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestReplayAsksFirst(t *testing.T) {
	topo, base := fleet(t)
	r := cli(t, "", false, cmd("parked replay --error timeout", base)...)
	if r.code != exitUsage || !strings.Contains(r.stderr, "refusing to replay 20 messages without confirmation") || !strings.Contains(r.stderr, "pass --yes") {
		t.Errorf("without a terminal: exit %d, stderr %q", r.code, r.stderr)
	}
	r = cli(t, "n\n", true, cmd("parked replay --error timeout", base)...)
	if r.code != exitFailure || !strings.Contains(r.stderr, "Replay 20 of the 48 messages in "+topo.ParkingQueue()+" back to the work queue "+topo.Queue+"? [y/N]") ||
		!strings.Contains(r.stderr, "nothing was changed") {
		t.Errorf("answered n: exit %d, stderr %q", r.code, r.stderr)
	}
	if n := parkedtest.Depth(t, topo.Queue); n != 0 {
		t.Fatalf("%d messages replayed without a yes", n)
	}
	r = cli(t, "y\n", true, cmd("parked replay --error timeout", base)...)
	if r.code != exitOK || r.stdout != "replayed 20 of the 48 messages in "+topo.ParkingQueue()+" (visited 20, matched 20, kept 0)\n" {
		t.Errorf("answered y: exit %d, stdout %q", r.code, r.stdout)
	}
	// A handful needs no question; --yes needs none either.
	r = cli(t, "", false, cmd("parked replay --error duplicate", base)...)
	if r.code != exitOK || !strings.HasPrefix(r.stdout, "replayed 2 of the 28") {
		t.Errorf("two messages: exit %d, stdout %q", r.code, r.stdout)
	}
	r = cli(t, "", false, cmd("parked replay --yes", base, "--group", parked.GroupID("order 1 not found"))...)
	if r.code != exitOK || !strings.HasPrefix(r.stdout, "replayed 10 of the 26") {
		t.Errorf("--yes: exit %d, stdout %q", r.code, r.stdout)
	}
	if n := parkedtest.Depth(t, topo.Queue); n != 32 {
		t.Errorf("work queue holds %d, want 32", n)
	}
}

func TestReplayByIDStripsHistory(t *testing.T) {
	topo, base := fleet(t)
	r := cli(t, "", false, cmd("parked replay --id m-0007 --json", base)...)
	if r.code != exitOK || !strings.Contains(r.stdout, `"acted":1`) {
		t.Fatalf("exit %d, stdout %q", r.code, r.stdout)
	}
	d, ok, err := brokertest.Channel(t).Get(topo.Queue, true)
	if err != nil || !ok {
		t.Fatalf("get: %v %v", ok, err)
	}
	h := d.Headers
	if d.MessageId != "m-0007" || h["x-death"] != nil || h[parkinglot.HeaderReplays] != int64(1) || h[dlxretry.HeaderError] != nil ||
		h[dlxretry.HeaderOriginalRoutingKey] != "order.created" {
		t.Errorf("replayed copy %s: %v", d.MessageId, h)
	}
	if n := parkedtest.Depth(t, topo.ParkingQueue()); n != 47 {
		t.Errorf("%d parked, want 47", n)
	}
}

func TestDropThenRestore(t *testing.T) {
	topo, base := fleet(t)
	out := filepath.Join(t.TempDir(), "dropped.jsonl")
	r := cli(t, "", false, cmd("parked drop --dry-run --error malformed", base)...)
	if r.code != exitOK || r.stdout != "dry run: would drop 8 of the 48 messages in "+topo.ParkingQueue()+"; nothing was changed\n" {
		t.Errorf("dry run: %q", r.stdout)
	}
	r = cli(t, "", false, cmd("parked drop --yes --older-than 1d", base, "--out", out)...)
	if r.code != exitOK || !strings.HasPrefix(r.stdout, "dropped 10 of the 48") {
		t.Fatalf("drop: exit %d, stdout %q", r.code, r.stdout)
	}
	if n := countLines(t, out); n != 10 {
		t.Errorf("%s has %d lines, want 10", out, n)
	}
	r = cli(t, "", false, "parked", "restore", "--url", base[1], "--in", out, "--dry-run")
	if r.code != exitOK || r.stdout != "dry run: would restore 10 messages to "+topo.ParkingQueue()+"; nothing was published\n" {
		t.Errorf("restore dry run: %q", r.stdout)
	}
	r = cli(t, "", false, "parked", "restore", "--url", base[1], "--in", out)
	if r.code != exitOK || r.stdout != "restored 10 of 10 messages read to "+topo.ParkingQueue()+"\n" {
		t.Fatalf("restore: exit %d, %q", r.code, r.stdout)
	}
	// The restored messages read as they did: the same summary, older than a day.
	r = cli(t, "", false, cmd("parked summary --json --older-than 1d", base)...)
	var s parked.Summary
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil || s.Messages != 10 || s.Permanent != 10-s.Exhausted {
		t.Errorf("%v: %+v", err, s)
	}
	msgs := list(t, base, "--id", "m-0047")
	if len(msgs) != 1 || msgs[0].Attempts != 3 || !msgs[0].Permanent || msgs[0].ParkedAt.IsZero() || msgs[0].Body == nil {
		t.Errorf("restored %+v", msgs)
	}
	if deaths, err := parked.Deaths(msgs[0]); err != nil || len(deaths) != 1 || deaths[0].Count != 2 || deaths[0].Time.IsZero() {
		t.Errorf("restored deaths %+v %v", deaths, err)
	}
}

// list reads the messages the flags select with the library, as the
// command's JSON would not give back header types.
func list(t *testing.T, base []string, flags ...string) []parked.Message {
	t.Helper()
	conn, err := dlxretry.Dial(context.Background(), base[1])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	s := parked.Selection{}
	if len(flags) == 2 && flags[0] == "--id" {
		s.IDs = []string{flags[1]}
	}
	var out []parked.Message
	if _, err := (parked.Lot{Conn: conn, Queue: base[3]}).Each(context.Background(), s, func(m parked.Message) error {
		out = append(out, m)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func countLines(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	for sc := bufio.NewScanner(f); sc.Scan(); n++ {
	}
	return n
}

func TestMoveByGroup(t *testing.T) {
	topo, base := fleet(t)
	archive := brokertest.Queue(t, "archive", nil)
	r := cli(t, "", false, cmd("parked move --yes", base, "--to-queue", archive, "--group", parked.GroupID("dial tcp 10.0.0.1:5432: connection refused"))...)
	if r.code != exitOK || !strings.HasPrefix(r.stdout, "moved 5 of the 48") {
		t.Fatalf("exit %d, stdout %q", r.code, r.stdout)
	}
	if n, m := parkedtest.Depth(t, archive), parkedtest.Depth(t, topo.ParkingQueue()); n != 5 || m != 43 {
		t.Errorf("archive %d, parked %d; want 5 and 43", n, m)
	}
	exchange := brokertest.Exchange(t, "x", amqp.ExchangeDirect)
	r = cli(t, "", false, cmd("parked move --yes", base, "--to-exchange", exchange, "--to-key", "k")...)
	if r.code != exitFailure || !strings.Contains(r.stderr, "unroutable") || !strings.HasPrefix(r.stdout, "moved 0 of the 43") {
		t.Errorf("unroutable: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

// A refused login is reported as the broker said it, without guesses and
// without the password.
func TestAccessRefused(t *testing.T) {
	url := brokertest.URL(t)
	bad := strings.Replace(url, "guest:guest@", "guest:wr0ng-pw@", 1)
	if bad == url {
		t.Skip("the broker URL has no guest:guest to replace")
	}
	start := time.Now()
	r := cli(t, "", false, "parked", "lots", "--url", bad, "--queue", "q")
	if r.code != exitFailure || !strings.Contains(r.stderr, "403") || strings.Contains(r.stderr, "wr0ng-pw") || strings.Contains(r.stderr, "running") {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
	t.Logf("refused after %v", time.Since(start))
}

func TestLots(t *testing.T) {
	topo, base := fleet(t)
	r := cli(t, "", false, "parked", "lots", "--url", base[1], "--queue", topo.ParkingQueue(), "--queue", "t.none.of.these")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != exitOK || len(lines) != 3 || strings.Join(strings.Fields(lines[1]), " ") != topo.Queue+" "+topo.ParkingQueue()+" 48 0 0" ||
		!strings.Contains(lines[2], "no queue") {
		t.Errorf("exit %d, stdout %q", r.code, r.stdout)
	}
}

// --mgmt-url finds the parking lots with the management API, logging in as
// --url's user; its password shows nowhere.
func TestLotsFromTheManagementAPI(t *testing.T) {
	topo, base := fleet(t)
	var auth string
	mgmt := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, _ := r.BasicAuth()
		auth = u + ":" + p
		if r.URL.EscapedPath() != "/api/queues/%2F" {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode([]map[string]string{{"name": topo.Queue}, {"name": topo.ParkingQueue()}})
	}))
	defer mgmt.Close()
	r := cli(t, "", false, "parked", "lots", "--json", "--url", base[1], "--mgmt-url", mgmt.URL)
	var lot lotJSON
	if err := json.Unmarshal([]byte(r.stdout), &lot); err != nil || lot.Queue != topo.Queue || lot.Parked != 48 || auth != "guest:guest" {
		t.Errorf("exit %d, %v, %+v, logged in as %q", r.code, err, lot, auth)
	}
	bad := strings.Replace(mgmt.URL, "http://", "http://ops:s3cret@", 1) + "/nowhere"
	r = cli(t, "", false, "parked", "lots", "--url", base[1], "--mgmt-url", bad)
	if r.code != exitFailure || !strings.Contains(r.stderr, "404 Not Found") || strings.Contains(r.stderr, "s3cret") || auth != "ops:s3cret" {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
}

// On quorum queues, which put back what a walk kept a moment after it ends,
// a command that acts on some messages leaves the others for the next one.
func TestQuorumParkingLot(t *testing.T) {
	url := brokertest.URL(t)
	topo := parkedtest.Quorum(t, "orders")
	parkedtest.Park(t, topo, parkedtest.Fleet()...)
	base := []string{"--url", url, "--queue", topo.Queue}
	r := cli(t, "", false, cmd("parked replay", base, "--id", "m-0040")...)
	if r.code != exitOK || !strings.HasPrefix(r.stdout, "replayed 1 of the 48") {
		t.Fatalf("replay: exit %d, %q", r.code, r.stdout)
	}
	r = cli(t, "", false, cmd("parked drop --yes", base, "--group", parked.GroupID("order 1 not found"))...)
	if r.code != exitOK || !strings.HasPrefix(r.stdout, "dropped 10 of the 47") {
		t.Fatalf("drop: exit %d, %q", r.code, r.stdout)
	}
	r = cli(t, "", false, cmd("parked summary --json", base)...)
	var s parked.Summary
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil || s.Messages != 37 || len(s.Groups) != 5 {
		t.Errorf("%v: %+v", err, s)
	}
	parkedtest.AwaitDepth(t, topo.Queue, 1)
}
