package browsertest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dlxretry/dlxretry"
	"github.com/dlxretry/dlxretry/internal/brokertest"
	"github.com/dlxretry/dlxretry/internal/parked"
	"github.com/dlxretry/dlxretry/internal/parkedtest"
	"github.com/dlxretry/dlxretry/parkinglot"
)

// binary is the dlxretry command, built once for the tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "dlxretry-browsertest")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "dlxretry")
	build := exec.Command("go", "build", "-o", binary, "github.com/dlxretry/dlxretry/cmd/dlxretry")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build dlxretry:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// TestConsoleReplaysAGroup parks the 48 messages of parkedtest.Fleet and 6
// more that a real consumer fails three times, opens the console in
// Chromium, checks the groups and counts, replays the consumer's group, and
// checks on the broker that the consumer handled them again.
func TestConsoleReplaysAGroup(t *testing.T) {
	ctx := browser(t)
	topo := parkedtest.Topology(t, "orders")
	parkedtest.Park(t, topo, parkedtest.Fleet()...)
	svc := startService(t, topo)
	svc.publish(t, 6)
	parkedtest.AwaitDepth(t, topo.ParkingQueue(), 54)
	base := startConsole(t, "--queue", topo.Queue)

	run(t, ctx, chromedp.Navigate(base))
	waitText(t, ctx, topo.ParkingQueue())
	run(t, ctx, chromedp.Click(chromedp.CSS(`a[href="/lots/`+topo.Queue+`"]`)))
	waitText(t, ctx, "messages read")
	groups := groupRows(t, ctx)
	want := [][]string{
		{"upstream timeout after <n>ms", "20"},
		{"order <n> not found", "10"},
		{"malformed payload: invalid character 'x' at offset <n>", "8"},
		{"payment service unavailable: HTTP <n> (request <id>)", "6"},
		{"dial tcp <n>:<n>: connection refused", "5"},
		{"rate limited: retry after <n>s (request <id>)", "3"},
		{`duplicate key value violates unique constraint "orders_pkey" (id=<n>)`, "2"},
	}
	if !slices.EqualFunc(groups, want, slices.Equal) {
		t.Fatalf("groups on the page:\n%q\nwant\n%q", groups, want)
	}
	page := bodyText(t, ctx)
	for _, s := range []string{"Parked now\n54", "Permanent / exhausted\n10 / 44"} {
		if !strings.Contains(page, s) {
			t.Errorf("lot page lacks %q", s)
		}
	}

	group := parked.GroupID("payment service unavailable: HTTP 503 (request 1880f3c2a4b5d6e7)")
	run(t, ctx, chromedp.Click(chromedp.CSS(`a[href*="action=replay"][href*="group=`+group+`"]`)))
	waitText(t, ctx, "Replay 6 messages?")
	svc.healthy.Store(true)
	run(t, ctx, chromedp.Click(chromedp.CSS(`form button[type="submit"]`)))
	waitText(t, ctx, "Replayed 6 messages.")

	handled := svc.await(t, 6)
	for id, d := range handled {
		if d.Attempt != 1 || d.Headers[parkinglot.HeaderReplays] != int64(1) || d.Headers["x-death"] != nil {
			t.Errorf("%s handled at attempt %d with headers %v", id, d.Attempt, d.Headers)
		}
	}
	parkedtest.AwaitDepth(t, topo.ParkingQueue(), 48)
	waitText(t, ctx, "48 messages read")
	if page := bodyText(t, ctx); strings.Contains(page, "payment service unavailable") {
		t.Error("the replayed group is still on the page")
	}

	run(t, ctx, chromedp.Navigate(base+"/lots/"+topo.Queue+"/messages/m-0021"))
	waitText(t, ctx, "Death history")
	page = bodyText(t, ctx)
	for _, s := range []string{"order 4721 not found", "\"order\": 4721,\n  \"customer\": \"c-21\"", "rejected", "x-dlxretry-attempts"} {
		if !strings.Contains(page, s) {
			t.Errorf("message page lacks %q", s)
		}
	}
}

// TestScreenshots saves the README's pictures of the console, of two
// parking lots named demo.orders and demo.payments, when
// DLXRETRY_SCREENSHOTS names a directory.
func TestScreenshots(t *testing.T) {
	dir := os.Getenv("DLXRETRY_SCREENSHOTS")
	if dir == "" {
		t.Skip("set DLXRETRY_SCREENSHOTS=DIR to save pictures of the console in DIR")
	}
	ctx := browser(t)
	orders, payments := parkedtest.Named(t, "demo.orders"), parkedtest.Named(t, "demo.payments")
	parkedtest.Park(t, orders, parkedtest.Fleet()...)
	svc := startService(t, payments)
	svc.publish(t, 6)
	parkedtest.Park(t, payments,
		parkedtest.Message{ID: "pay-card-1", Error: "card declined: insufficient funds (authorization 88120)", Permanent: true, Attempts: 1, Age: 3 * time.Hour},
		parkedtest.Message{ID: "pay-card-2", Error: "card declined: insufficient funds (authorization 88342)", Permanent: true, Attempts: 1, Age: 2 * time.Hour})
	parkedtest.AwaitDepth(t, payments.ParkingQueue(), 8)
	base := startConsole(t, "--queue", orders.Queue, "--queue", payments.Queue, "--page-size", "8")
	for _, q := range []string{payments.Queue, orders.Queue} {
		run(t, ctx, chromedp.Navigate(base+"/lots/"+q))
		waitText(t, ctx, "messages read")
	}
	screenshot(t, ctx, dir, "console-lot.png")
	run(t, ctx, chromedp.Navigate(base))
	waitText(t, ctx, "demo.payments")
	screenshot(t, ctx, dir, "console-lots.png")
	run(t, ctx, chromedp.Navigate(base+"/lots/"+orders.Queue+"/confirm?action=replay&group="+parked.GroupID("upstream timeout after 1ms")))
	waitText(t, ctx, "Replay 20 messages?")
	screenshot(t, ctx, dir, "console-confirm.png")
	run(t, ctx, chromedp.Navigate(base+"/lots/"+orders.Queue+"/messages/m-0021"))
	waitText(t, ctx, "Death history")
	screenshot(t, ctx, dir, "console-message.png")
}

// A form on another site that posts to the console is refused by the
// browser's own request headers and the missing token.
func TestCrossSiteFormIsRefused(t *testing.T) {
	ctx := browser(t)
	topo := parkedtest.Topology(t, "orders")
	parkedtest.Park(t, topo, parkedtest.Fleet()...)
	base := startConsole(t, "--queue", topo.Queue)
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// localhost is another site than the console's 127.0.0.1.
		fmt.Fprintf(w, `<!doctype html><form method="post" action="%s/lots/%s/act">
<input type="hidden" name="action" value="drop"><input type="hidden" name="group" value="%s">
<input type="hidden" name="count" value="20"><button id="go">win a prize</button></form>`,
			base, topo.Queue, parked.GroupID("upstream timeout after 1ms"))
	}))
	defer evil.Close()
	run(t, ctx, chromedp.Navigate(strings.Replace(evil.URL, "127.0.0.1", "localhost", 1)))
	run(t, ctx, chromedp.Click(chromedp.CSS("#go")))
	waitText(t, ctx, "cross-origin")
	if n := parkedtest.Depth(t, topo.ParkingQueue()); n != 48 {
		t.Errorf("%d parked after the cross-site post, want 48", n)
	}
}

// browser starts Chromium for the test, or skips it when there is none.
func browser(t *testing.T) context.Context {
	t.Helper()
	path := findChrome()
	if path == "" {
		msg := "no Chromium: install it (Debian: apt-get install chromium) or set DLXRETRY_CHROME to its executable"
		if os.Getenv("DLXRETRY_REQUIRE_BROWSER") == "1" {
			t.Fatal(msg + "; DLXRETRY_REQUIRE_BROWSER=1 makes this a failure")
		}
		t.Skip(msg)
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	ctx, cancelCtx := chromedp.NewContext(alloc)
	// The first call starts the browser, which lives as long as its ctx.
	if err := chromedp.Do(ctx); err != nil {
		cancelCtx()
		cancelAlloc()
		t.Fatalf("start %s: %v", path, err)
	}
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(func() {
		cancelTimeout()
		cancelCtx()
		cancelAlloc()
	})
	return ctx
}

func findChrome() string {
	if p := os.Getenv("DLXRETRY_CHROME"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return ""
		}
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless_shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// run runs actions, twenty seconds at most.
func run(t *testing.T, ctx context.Context, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("browser: %v", err)
	}
}

const bodyTextJS = `document.body ? document.body.innerText : ""`

// bodyText is what the page shows, as text.
func bodyText(t *testing.T, ctx context.Context) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](bodyTextJS))
	if err != nil {
		t.Fatalf("browser: %v", err)
	}
	return s
}

// waitText waits until the page shows want; pages that reload themselves
// (while a lot is read) are read again.
func waitText(t *testing.T, ctx context.Context, want string) {
	t.Helper()
	var s string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		text, err := chromedp.Run(ctx, chromedp.Evaluate[string](bodyTextJS))
		if err == nil {
			s = text
			if strings.Contains(s, want) {
				return
			}
		}
	}
	t.Fatalf("the page never showed %q; it shows:\n%s", want, s)
}

// groupRows reads the error groups table: pattern and count.
func groupRows(t *testing.T, ctx context.Context) [][]string {
	t.Helper()
	rows, err := chromedp.Run(ctx, chromedp.Evaluate[[][]string](`Array.from(document.querySelectorAll("table.groups tbody tr")).map(
		tr => [tr.querySelector(".pattern").innerText, tr.cells[1].innerText])`))
	if err != nil {
		t.Fatalf("browser: %v", err)
	}
	return rows
}

// screenshot saves the whole page as dir/name.
func screenshot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// startConsole runs "dlxretry console" with args until the test ends and
// returns its URL.
func startConsole(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"console", "--listen", "127.0.0.1:0"}, args...)...)
	cmd.Env = append(os.Environ(), "RABBITMQ_URL="+brokertest.URL(t))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	lines := bufio.NewScanner(stderr)
	var url string
	for lines.Scan() {
		t.Log("console: " + lines.Text())
		if _, u, ok := strings.Cut(lines.Text(), "serving "); ok {
			url = strings.TrimSuffix(strings.Fields(u)[0], "/")
			break
		}
	}
	go func() {
		for lines.Scan() {
			t.Log("console: " + lines.Text())
		}
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	if url == "" {
		t.Fatal("the console did not say where it serves")
	}
	return url
}

// service is a consumer of the topology's work queue that fails every
// message (three attempts, then parking) until healthy.
type service struct {
	topo    dlxretry.Topology
	healthy atomic.Bool
	mu      sync.Mutex
	handled map[string]*dlxretry.Delivery
}

func startService(t *testing.T, topo dlxretry.Topology) *service {
	t.Helper()
	s := &service{topo: topo, handled: map[string]*dlxretry.Delivery{}}
	c, err := dlxretry.NewConsumer(brokertest.URL(t), topo, s.handle)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("consumer: %v", err)
		}
	})
	return s
}

func (s *service) handle(_ context.Context, d *dlxretry.Delivery) error {
	if !s.healthy.Load() {
		return fmt.Errorf("payment service unavailable: HTTP 503 (request %x)", time.Now().UnixNano())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handled[d.MessageId] = d
	return nil
}

// publish sends n messages to the work queue.
func (s *service) publish(t *testing.T, n int) {
	t.Helper()
	p, err := dlxretry.NewPublisher(brokertest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for i := range n {
		msg := amqp.Publishing{MessageId: fmt.Sprintf("pay-%d", i), ContentType: "application/json",
			Body: fmt.Appendf(nil, `{"payment":%d,"amount":"%d.00"}`, 9100+i, 10*(i+1))}
		if err := p.Publish(context.Background(), "", s.topo.Queue, msg); err != nil {
			t.Fatal(err)
		}
	}
}

// await waits until n messages were handled, and returns them by id.
func (s *service) await(t *testing.T, n int) map[string]*dlxretry.Delivery {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		s.mu.Lock()
		got := len(s.handled)
		s.mu.Unlock()
		if got >= n {
			break
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.handled) != n {
		t.Fatalf("%d messages handled, want %d", len(s.handled), n)
	}
	return s.handled
}
