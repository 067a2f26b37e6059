package console

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dlxretry/dlxretry"
	"github.com/dlxretry/dlxretry/internal/brokertest"
	"github.com/dlxretry/dlxretry/internal/parked"
	"github.com/dlxretry/dlxretry/internal/parkedtest"
)

// serve parks parkedtest.Fleet's 48 messages and serves a console for them.
func serve(t *testing.T, cfg Config) (*httptest.Server, dlxretry.Topology) {
	t.Helper()
	topo := parkedtest.Topology(t, "orders")
	parkedtest.Park(t, topo, parkedtest.Fleet()...)
	conn, err := dlxretry.Dial(context.Background(), brokertest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	cfg.Conn = conn
	cfg.Queues = append(cfg.Queues, topo.Queue)
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		ts.Close()
		srv.Close()
	})
	return ts, topo
}

// browser is an HTTP client with cookies that does not follow redirects.
func browser(t *testing.T) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func get(t *testing.T, c *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// lotPage loads the lot's page until its summary is there.
func lotPage(t *testing.T, c *http.Client, base, queue, query string) string {
	t.Helper()
	return lotPageWithin(t, c, base, queue, query, 10*time.Second)
}

func lotPageWithin(t *testing.T, c *http.Client, base, queue, query string, wait time.Duration) string {
	t.Helper()
	for deadline := time.Now().Add(wait); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		code, body := get(t, c, base+"/lots/"+url.PathEscape(queue)+query)
		if code != http.StatusOK {
			t.Fatalf("lot page: %d\n%s", code, body)
		}
		if strings.Contains(body, "messages read") && !strings.Contains(body, "being read") {
			return body
		}
	}
	t.Fatal("the lot's summary never came")
	return ""
}

var (
	tags   = regexp.MustCompile(`<[^>]+>`)
	spaces = regexp.MustCompile(`\s+`)
)

// text is a page's text with tags and runs of space made one space.
func text(html string) string {
	return strings.TrimSpace(spaces.ReplaceAllString(tags.ReplaceAllString(html, " "), " "))
}

func TestLotPageGroupsAndPages(t *testing.T) {
	ts, topo := serve(t, Config{PageSize: 20})
	c := browser(t)
	page := text(lotPage(t, c, ts.URL, topo.Queue, ""))
	for _, want := range []string{
		"Parked now 48", "Permanent / exhausted 10 / 38",
		"upstream timeout after &lt;n&gt;ms e.g. upstream timeout after 1000ms 20 0 20",
		"order &lt;n&gt; not found e.g. order 4720 not found 10 0 10",
		"malformed payload: invalid character &#39;x&#39; at offset &lt;n&gt;",
		"Messages page 1", "m-0000", "m-0019", "next 20 →",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("lot page lacks %q", want)
		}
	}
	if strings.Contains(page, "m-0020") {
		t.Error("page 1 shows the 21st message")
	}
	page = text(lotPage(t, c, ts.URL, topo.Queue, "?page=3"))
	if !strings.Contains(page, "m-0040") || !strings.Contains(page, "m-0047") || strings.Contains(page, "next 20") {
		t.Errorf("page 3: %s", page)
	}
	page = text(lotPage(t, c, ts.URL, topo.Queue, "?group="+parked.GroupID("order 1 not found")))
	if !strings.Contains(page, "m-0020") || !strings.Contains(page, "m-0029") || strings.Contains(page, "m-0019") || strings.Contains(page, "m-0030") {
		t.Errorf("group page: %s", page)
	}
	code, body := get(t, c, ts.URL+"/")
	if code != http.StatusOK || !strings.Contains(text(body), topo.Queue+" "+topo.ParkingQueue()+" 48 0 0 6") {
		t.Errorf("overview: %d %s", code, text(body))
	}
	if n := parkedtest.Depth(t, topo.ParkingQueue()); n != 48 {
		t.Errorf("%d parked after browsing, want 48", n)
	}
}

func TestMessagePage(t *testing.T) {
	ts, topo := serve(t, Config{})
	code, body := get(t, browser(t), ts.URL+"/lots/"+topo.Queue+"/messages/m-0021")
	page := text(body)
	for _, want := range []string{
		"Message m-0021 exhausted", "Error order 4721 not found", "Attempts 3",
		"Original routing key order.created", topo.Queue + " rejected 2",
		"x-dlxretry-attempts 3", `&#34;order&#34;: 4721,`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("message page lacks %q", want)
		}
	}
	if code != http.StatusOK || !strings.Contains(body, "{\n  &#34;order&#34;: 4721,\n  &#34;customer&#34;") {
		t.Errorf("%d: the body is not indented JSON", code)
	}
	code, _ = get(t, browser(t), ts.URL+"/lots/"+topo.Queue+"/messages/nope")
	if code != http.StatusNotFound {
		t.Errorf("a missing message: %d", code)
	}
	code, _ = get(t, browser(t), ts.URL+"/lots/t.someone.else/messages/m-0001")
	if code != http.StatusNotFound {
		t.Errorf("a lot the console does not serve: %d", code)
	}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// confirm loads the confirmation page of an action and returns its form.
func confirm(t *testing.T, c *http.Client, base, queue, query string) (url.Values, string) {
	t.Helper()
	code, body := get(t, c, base+"/lots/"+queue+"/confirm?"+query)
	if code != http.StatusOK {
		t.Fatalf("confirm: %d %s", code, text(body))
	}
	form := url.Values{}
	for _, m := range regexp.MustCompile(`<input type="hidden" name="(\w+)" value="([^"]*)">`).FindAllStringSubmatch(body, -1) {
		form.Set(m[1], m[2])
	}
	return form, text(body)
}

func TestReplayGroupOverHTTP(t *testing.T) {
	ts, topo := serve(t, Config{})
	c := browser(t)
	form, page := confirm(t, c, ts.URL, topo.Queue, "action=replay&group="+parked.GroupID("order 1 not found"))
	if !strings.Contains(page, "Replay 10 messages?") || form.Get("count") != "10" || form.Get("csrf") == "" {
		t.Fatalf("confirm page: %s, form %v", page, form)
	}
	resp, err := c.PostForm(ts.URL+"/lots/"+topo.Queue+"/act", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "did=replay&n=10") {
		t.Fatalf("act: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	page = text(lotPage(t, c, ts.URL, topo.Queue, "?did=replay&n=10")) // once the new summary is there
	if n, m := parkedtest.Depth(t, topo.Queue), parkedtest.Depth(t, topo.ParkingQueue()); n != 10 || m != 38 {
		t.Errorf("work queue %d, parked %d; want 10 and 38", n, m)
	}
	if !strings.Contains(page, "Replayed 10 messages.") || !strings.Contains(page, "Parked now 38") || strings.Contains(page, "order &lt;n&gt; not found") {
		t.Errorf("after the replay: %s", page)
	}
}

func TestDropOneMessageToTheLog(t *testing.T) {
	log := &syncBuffer{}
	ts, topo := serve(t, Config{DropLog: log, DropLogName: "dropped.jsonl"})
	c := browser(t)
	form, page := confirm(t, c, ts.URL, topo.Queue, "action=drop&id=m-0033")
	if !strings.Contains(page, "Drop 1 message?") || !strings.Contains(page, "appending it to dropped.jsonl") {
		t.Fatalf("confirm page: %s", page)
	}
	resp, err := c.PostForm(ts.URL+"/lots/"+topo.Queue+"/act", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var m parked.Message
	if err := json.Unmarshal([]byte(log.String()), &m); err != nil || m.MessageID != "m-0033" || log.syncs != 1 {
		t.Errorf("drop log %q (%v), %d syncs", log.String(), err, log.syncs)
	}
	parkedtest.AwaitDepth(t, topo.ParkingQueue(), 47)
}

type syncBuffer struct {
	strings.Builder
	syncs int
}

func (b *syncBuffer) Sync() error { b.syncs++; return nil }

// Actions refuse requests without the session's token, from other origins,
// and in read-only mode.
func TestActionsAreProtected(t *testing.T) {
	ts, topo := serve(t, Config{})
	c := browser(t)
	form, _ := confirm(t, c, ts.URL, topo.Queue, "action=drop&group="+parked.GroupID("order 1 not found"))
	act := ts.URL + "/lots/" + topo.Queue + "/act"
	post := func(form url.Values, header map[string]string, client *http.Client) int {
		req, _ := http.NewRequest(http.MethodPost, act, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	noToken := url.Values{}
	for k, v := range form {
		noToken[k] = v
	}
	noToken.Del("csrf")
	if code := post(noToken, nil, c); code != http.StatusForbidden {
		t.Errorf("without the token: %d", code)
	}
	if code := post(form, nil, browser(t)); code != http.StatusForbidden {
		t.Errorf("the token of another session: %d", code)
	}
	if code := post(form, map[string]string{"Sec-Fetch-Site": "cross-site"}, c); code != http.StatusForbidden {
		t.Errorf("Sec-Fetch-Site cross-site: %d", code)
	}
	if code := post(form, map[string]string{"Origin": "https://evil.example"}, c); code != http.StatusForbidden {
		t.Errorf("Origin of another site: %d", code)
	}
	if n := parkedtest.Depth(t, topo.ParkingQueue()); n != 48 {
		t.Errorf("%d parked after refused actions, want 48", n)
	}
	if code := post(form, map[string]string{"Sec-Fetch-Site": "same-origin"}, c); code != http.StatusSeeOther {
		t.Errorf("the console's own form: %d", code)
	}
}

func TestReadOnly(t *testing.T) {
	ts, topo := serve(t, Config{ReadOnly: true})
	c := browser(t)
	page := lotPage(t, c, ts.URL, topo.Queue, "")
	if strings.Contains(page, "Replay…") || strings.Contains(page, "Drop…") || !strings.Contains(page, "read-only") {
		t.Error("a read-only lot page offers actions")
	}
	if code, _ := get(t, c, ts.URL+"/lots/"+topo.Queue+"/confirm?action=replay&id=m-0001"); code != http.StatusForbidden {
		t.Errorf("confirm: %d", code)
	}
	token := csrfField.FindStringSubmatch(page)[1]
	resp, err := c.PostForm(ts.URL+"/lots/"+topo.Queue+"/act", url.Values{"csrf": {token}, "action": {"drop"}, "id": {"m-0001"}, "count": {"1"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || parkedtest.Depth(t, topo.ParkingQueue()) != 48 {
		t.Errorf("act: %d", resp.StatusCode)
	}
}

func TestBasicAuthAndHosts(t *testing.T) {
	ts, _ := serve(t, Config{User: "ops", Password: "s3cret", Hosts: []string{"127.0.0.1"}})
	req := func(user, pass, host string) int {
		r, _ := http.NewRequest(http.MethodGet, ts.URL+"/", nil)
		if user != "" {
			r.SetBasicAuth(user, pass)
		}
		if host != "" {
			r.Host = host
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, c := range []struct {
		user, pass, host string
		want             int
	}{
		{"", "", "", http.StatusUnauthorized},
		{"ops", "wrong", "", http.StatusUnauthorized},
		{"ops", "s3cret", "", http.StatusOK},
		{"ops", "s3cret", "rebound.example:8080", http.StatusMisdirectedRequest},
	} {
		if got := req(c.user, c.pass, c.host); got != c.want {
			t.Errorf("%+v: %d", c, got)
		}
	}
}

func TestDiscoveryThroughTheManagementAPI(t *testing.T) {
	topo := parkedtest.Topology(t, "found")
	mgmt := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, _ := r.BasicAuth(); u != "guest" || p != "guest" || r.URL.EscapedPath() != "/api/queues/%2F" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		json.NewEncoder(w).Encode([]map[string]string{{"name": topo.Queue}, {"name": topo.ParkingQueue()}, {"name": "other"}})
	}))
	defer mgmt.Close()
	conn, err := dlxretry.Dial(context.Background(), brokertest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	m := parked.Management{URL: mgmt.URL, User: "guest", Pass: "guest"}
	srv, err := New(Config{Conn: conn, Discover: func(ctx context.Context) ([]string, error) { return m.Discover(ctx, "/") }})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	_, body := get(t, browser(t), ts.URL+"/")
	if page := text(body); !strings.Contains(page, topo.Queue+" "+topo.ParkingQueue()+" 0 0 0") || strings.Contains(page, "other") {
		t.Errorf("overview: %s", page)
	}
}
