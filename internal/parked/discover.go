package parked

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

const parkingSuffix = ".parking"

// WorkQueue is the work queue a name given by an operator stands for: the
// name itself, or, for a parking queue (Q.parking), Q.
func WorkQueue(name string) string {
	if q, ok := strings.CutSuffix(name, parkingSuffix); ok && q != "" {
		return q
	}
	return name
}

// Management is RabbitMQ's management HTTP API, where queues can be listed.
type Management struct {
	URL    string // for example http://localhost:15672; its user and password, when it has them, log in
	User   string // the login when URL has none
	Pass   string
	Client *http.Client // http.DefaultClient when nil
}

// Discover returns the work queues of vhost that have a parking queue
// (Q.parking), sorted.
func (m Management) Discover(ctx context.Context, vhost string) ([]string, error) {
	req, err := m.request(ctx, vhost)
	if err != nil {
		return nil, err
	}
	client := m.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("list queues: %s", scrub(err.Error(), m.URL))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("list queues at %s: %s", req.URL.Redacted(), resp.Status)
	}
	var queues []struct {
		Name string `json:"name"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&queues); err != nil {
		return nil, fmt.Errorf("list queues at %s: %w", req.URL.Redacted(), err)
	}
	var work []string
	for _, q := range queues {
		if w, ok := strings.CutSuffix(q.Name, parkingSuffix); ok && w != "" {
			work = append(work, w)
		}
	}
	slices.Sort(work)
	return work, nil
}

// request is the API call that lists vhost's queues by name, logged in.
func (m Management) request(ctx context.Context, vhost string) (*http.Request, error) {
	base, err := url.Parse(m.URL)
	if err != nil {
		return nil, fmt.Errorf("management URL: %s", scrub(err.Error(), m.URL))
	}
	user, pass := m.User, m.Pass
	if base.User != nil {
		user = base.User.Username()
		pass, _ = base.User.Password()
		base.User = nil
	}
	// The vhost is one path segment: "/" is %2F.
	endpoint := *base
	endpoint.Path = strings.TrimSuffix(base.Path, "/") + "/api/queues/" + vhost
	endpoint.RawPath = strings.TrimSuffix(base.EscapedPath(), "/") + "/api/queues/" + url.PathEscape(vhost)
	endpoint.RawQuery = "columns=name"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint.String(), nil)
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth(user, pass)
	return req, nil
}

// scrub hides the password of rawURL wherever s shows it, also when
// rawURL does not parse.
func scrub(s, rawURL string) string {
	if pw := Password(rawURL); pw != "" {
		s = strings.ReplaceAll(s, pw, "xxxxx")
		if esc := url.QueryEscape(pw); esc != pw {
			s = strings.ReplaceAll(s, esc, "xxxxx")
		}
	}
	return s
}

// Password finds the password in a URL by its shape, scheme://user:password@,
// so that it can be hidden in what is shown even when the URL does not parse.
func Password(rawURL string) string {
	if u, err := url.Parse(rawURL); err == nil && u.User != nil {
		pw, _ := u.User.Password()
		return pw
	}
	_, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		rest = rawURL
	}
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return ""
	}
	_, pw, _ := strings.Cut(rest[:at], ":")
	return pw
}
