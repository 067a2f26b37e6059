package console

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"time"

	"github.com/dlxretry/dlxretry/internal/parked"
)

//go:embed templates/*.html
var templateFiles embed.FS

//go:embed static
var staticFiles embed.FS

// pages holds one template per page, each with the layout.
type pages struct{ byName map[string]*template.Template }

var pageNames = []string{"index", "lot", "message", "confirm", "error"}

func parsePages() (*pages, error) {
	p := &pages{byName: map[string]*template.Template{}}
	for _, name := range pageNames {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFiles, "templates/layout.html", "templates/parts.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", name, err)
		}
		p.byName[name] = t
	}
	return p, nil
}

// page is what the layout needs besides a page's own data.
type page struct {
	Title    string
	ReadOnly bool
	Token    string // the session's CSRF token, for forms
	Refresh  int    // seconds until the page reloads itself; 0: never
	Flash    string // what the last action did
	Now      time.Time
	Data     any
}

// render writes page name with data; a template that fails to run is a
// 500 without a half-written page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name string, pg page) {
	pg.ReadOnly, pg.Token, pg.Now = s.cfg.ReadOnly, token(r), time.Now()
	var buf bytes.Buffer
	if err := s.pages.byName[name].Execute(&buf, pg); err != nil {
		s.log.Error("render page", "page", name, "err", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = buf.WriteTo(w)
}

// fail renders the error page.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	s.render(w, r, status, "error", page{Title: http.StatusText(status), Data: msg})
}

func staticHandler() http.Handler {
	sub, _ := fs.Sub(staticFiles, "static")
	return http.FileServerFS(sub)
}

var funcs = template.FuncMap{
	"lotURL": func(queue string) string { return "/lots/" + url.PathEscape(queue) },
	"messageURL": func(queue, id string) string {
		return "/lots/" + url.PathEscape(queue) + "/messages/" + url.PathEscape(id)
	},
	"ago": func(t, now time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return short(now.Sub(t)) + " ago"
	},
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"duration":   func(d time.Duration) string { return d.Round(time.Millisecond).String() },
	"headerText": parked.HeaderText,
	"headers":    headers,
	"deaths": func(m parked.Message) []parked.Death {
		d, _ := parked.Deaths(m) // what could be read; the message page says what not
		return d
	},
	"bodyOf": func(m parked.Message, limit int) bodyView {
		return bodyView{Message: m, Body: parked.FormatBody(m.ContentType, m.Body, limit)}
	},
	"groupID":   parked.GroupID,
	"normalize": parked.Normalize,
	"add":       func(a, b int) int { return a + b },
	"percent": func(n, of int) int {
		if of <= 0 {
			return 0
		}
		return min(100, n*100/of)
	},
}

// bodyView is what the body template shows.
type bodyView struct {
	Message parked.Message
	Body    parked.Body
}

// short says a duration to two units: 45s, 12m, 3h5m, 2d3h.
func short(d time.Duration) string {
	d = max(0, d).Round(time.Second)
	day := 24 * time.Hour
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < day:
		return fmt.Sprintf("%dh%dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%dh", int(d/day), int(d.Hours())%24)
}
