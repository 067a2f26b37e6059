package console

import (
	"net/http"
	"strconv"

	"github.com/dlxretry/dlxretry/internal/parked"
)

// Handler returns the console's HTTP handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.index)
	mux.HandleFunc("GET /lots/{queue}", s.lotPage)
	mux.HandleFunc("GET /lots/{queue}/messages/{id}", s.messagePage)
	mux.HandleFunc("GET /lots/{queue}/confirm", s.confirmPage)
	mux.HandleFunc("POST /lots/{queue}/act", s.act)
	mux.HandleFunc("POST /lots/{queue}/scan", s.rescan)
	mux.Handle("GET /static/", http.StripPrefix("/static", staticHandler()))

	var h http.Handler = mux
	h = s.sessions.middleware(h)
	h = http.NewCrossOriginProtection().Handler(h) // unsafe methods from another origin: 403
	if s.cfg.User != "" {
		h = basicAuth(s.cfg.User, s.cfg.Password, h)
	}
	h = hostCheck(s.cfg.Hosts, h)
	return secureHeaders(h)
}

// lotRow is a parking lot on the overview.
type lotRow struct {
	Queue, ParkingQueue string
	Depth               parked.Depth
	DepthErr            string
	Scan                scan
}

// Parked is how many messages the lot holds: the broker's ready count does
// not count those a running read of the console holds.
func (r lotRow) Parked() int {
	if r.Scan.Running {
		return r.Depth.Parked + r.Scan.Progress.Visited
	}
	return r.Depth.Parked
}

func (s *Server) index(w http.ResponseWriter, r *http.Request) {
	lots, discoverErr := s.allLots(r.Context())
	var rows []lotRow
	for _, l := range lots {
		pl := l.parked(nil)
		row := lotRow{Queue: l.queue, ParkingQueue: pl.ParkingQueue(), Scan: l.state()} // the scan first: it may end meanwhile
		var err error
		if row.Depth, err = pl.Depth(r.Context()); err != nil {
			row.DepthErr = err.Error()
		}
		rows = append(rows, row)
	}
	msg := ""
	if discoverErr != nil {
		msg = discoverErr.Error()
	}
	s.render(w, r, http.StatusOK, "index", page{Title: "Parking lots", Data: struct {
		Lots []lotRow
		Err  string
	}{rows, msg}})
}

// lotView is a parking lot's page.
type lotView struct {
	lotRow
	Groups   []parked.Group
	Group    *parked.Group // the group the messages are narrowed to
	GroupID  string
	Messages []parked.Message
	Busy     bool // a walk runs: the messages follow once it ends
	Page     int  // 1-based
	More     bool
	PageSize int
	ReadErr  string
}

func (s *Server) lotPage(w http.ResponseWriter, r *http.Request) {
	l, ok := s.known(r.PathValue("queue"))
	if !ok {
		s.fail(w, r, http.StatusNotFound, "The console does not serve the parking lot of "+strconv.Quote(r.PathValue("queue"))+".")
		return
	}
	pl := l.parked(nil)
	v := lotView{lotRow: lotRow{Queue: l.queue, ParkingQueue: pl.ParkingQueue()}, PageSize: s.cfg.PageSize}
	var err error
	v.Scan = l.state()
	if v.Depth, err = pl.Depth(r.Context()); err != nil {
		v.DepthErr = err.Error()
	}
	if st := l.state(); st.Summary == nil && !st.Running && v.Depth.Exists {
		l.startScan(s.life, &s.scans)
	}
	v.Scan = l.state()
	if v.Scan.Summary != nil {
		v.Groups = v.Scan.Summary.Groups
	}
	v.GroupID = r.FormValue("group")
	if v.GroupID != "" && v.Scan.Summary != nil {
		if g, ok := v.Scan.Summary.Group(v.GroupID); ok {
			v.Group = &g
		}
	}
	v.Page = max(1, atoi(r.FormValue("page")))
	s.readPage(r, l, &v)
	refresh := 0
	if v.Scan.Running || v.Busy {
		refresh = 2
	}
	s.render(w, r, http.StatusOK, "lot", page{Title: v.ParkingQueue, Refresh: refresh, Flash: flash(r), Data: v})
}

// readPage reads the page of messages unless a walk runs on the lot.
func (s *Server) readPage(r *http.Request, l *lot, v *lotView) {
	if !v.Depth.Exists {
		return
	}
	release, ok := l.tryAcquire()
	if !ok {
		v.Busy = true
		return
	}
	defer release()
	sel := parked.Selection{Group: v.GroupID}
	msgs, more, err := l.parked(nil).Page(r.Context(), sel, (v.Page-1)*s.cfg.PageSize, s.cfg.PageSize)
	v.Messages, v.More = msgs, more
	if err != nil {
		v.ReadErr = err.Error()
	}
}

// messageView is one message's page.
type messageView struct {
	Queue, ParkingQueue string
	Message             parked.Message
	Body                parked.Body
	Deaths              []parked.Death
	DeathsErr           string
	Headers             []header
}

type header struct{ Key, Value string }

// messageBodyLimit bounds the body a message page shows.
const messageBodyLimit = 256 << 10

func (s *Server) messagePage(w http.ResponseWriter, r *http.Request) {
	l, ok := s.known(r.PathValue("queue"))
	if !ok {
		s.fail(w, r, http.StatusNotFound, "The console does not serve the parking lot of "+strconv.Quote(r.PathValue("queue"))+".")
		return
	}
	release, err := l.acquire(r.Context())
	if err != nil {
		return // the browser left
	}
	found, err := l.parked(nil).Find(r.Context(), r.PathValue("id"))
	release()
	switch {
	case err != nil:
		s.fail(w, r, http.StatusBadGateway, err.Error())
		return
	case len(found) == 0:
		s.fail(w, r, http.StatusNotFound, "No message with id "+strconv.Quote(r.PathValue("id"))+" is parked in "+l.parked(nil).ParkingQueue()+".")
		return
	}
	m := found[0]
	v := messageView{Queue: l.queue, ParkingQueue: l.parked(nil).ParkingQueue(), Message: m,
		Body: parked.FormatBody(m.ContentType, m.Body, messageBodyLimit), Headers: headers(m)}
	if v.Deaths, err = parked.Deaths(m); err != nil {
		v.DeathsErr = err.Error()
	}
	s.render(w, r, http.StatusOK, "message", page{Title: "Message " + m.MessageID, Flash: flash(r), Data: v})
}

func headers(m parked.Message) []header {
	out := make([]header, 0, len(m.Headers))
	for k, v := range m.Headers {
		if k == "x-death" {
			continue // shown as the death history
		}
		out = append(out, header{k, parked.HeaderText(v)})
	}
	sortHeaders(out)
	return out
}

func (s *Server) rescan(w http.ResponseWriter, r *http.Request) {
	l, ok := s.known(r.PathValue("queue"))
	switch {
	case !ok:
		s.fail(w, r, http.StatusNotFound, "The console does not serve this parking lot.")
		return
	case !validToken(r):
		s.fail(w, r, http.StatusForbidden, "The form is stale or came from elsewhere: reload the page and try again.")
		return
	}
	l.startScan(s.life, &s.scans)
	http.Redirect(w, r, "/lots/"+escape(l.queue), http.StatusSeeOther)
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
