package console

import (
	"context"

	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/dlxretry/dlxretry/internal/parked"
)

// verbs are the actions the console offers, with what they did.
var verbs = map[string]string{"replay": "replayed", "drop": "dropped"}

// target is what an action request names: a group or one message.
type target struct {
	Action  string
	GroupID string
	Group   *parked.Group // when the last summary has it
	ID      string
}

func (t target) selection(limit int) parked.Selection {
	s := parked.Selection{Group: t.GroupID, Limit: limit}
	if t.ID != "" {
		s.IDs = []string{t.ID}
	}
	return s
}

// confirmView is the question asked before an action.
type confirmView struct {
	target
	Queue, ParkingQueue string
	Count, Total        int // the dry run's
	Busy                bool
	DropLog             string
}

// readTarget reads and checks the action, and group or id, of a request.
func (s *Server) readTarget(w http.ResponseWriter, r *http.Request) (*lot, target, bool) {
	l, ok := s.known(r.PathValue("queue"))
	t := target{Action: r.FormValue("action"), GroupID: r.FormValue("group"), ID: r.FormValue("id")}
	switch {
	case s.cfg.ReadOnly:
		s.fail(w, r, http.StatusForbidden, "The console is read-only.")
	case !ok:
		s.fail(w, r, http.StatusNotFound, "The console does not serve the parking lot of "+strconv.Quote(r.PathValue("queue"))+".")
	case verbs[t.Action] == "":
		s.fail(w, r, http.StatusBadRequest, "Unknown action "+strconv.Quote(t.Action)+".")
	case (t.GroupID == "") == (t.ID == ""):
		s.fail(w, r, http.StatusBadRequest, "Name a group or a message.")
	default:
		if sum := l.state().Summary; sum != nil && t.GroupID != "" {
			if g, ok := sum.Group(t.GroupID); ok {
				t.Group = &g
			}
		}
		return l, t, true
	}
	return nil, t, false
}

// confirmPage counts, with a dry run, what the action would touch and asks.
func (s *Server) confirmPage(w http.ResponseWriter, r *http.Request) {
	l, t, ok := s.readTarget(w, r)
	if !ok {
		return
	}
	pl := l.parked(nil)
	v := confirmView{target: t, Queue: l.queue, ParkingQueue: pl.ParkingQueue(), DropLog: s.cfg.DropLogName}
	release, ok := l.tryAcquire()
	if !ok {
		v.Busy = true
		s.render(w, r, http.StatusOK, "confirm", page{Title: "Confirm", Refresh: 2, Data: v})
		return
	}
	sel := t.selection(0)
	sel.DryRun = true
	rep, err := pl.Drop(r.Context(), sel, nil)
	release()
	if err != nil {
		s.fail(w, r, http.StatusBadGateway, "Counting the messages failed: "+err.Error())
		return
	}
	v.Count, v.Total = rep.Matched, rep.Total
	s.render(w, r, http.StatusOK, "confirm", page{Title: "Confirm", Data: v})
}

// act does a confirmed action, on no more messages than were counted.
func (s *Server) act(w http.ResponseWriter, r *http.Request) {
	if !validToken(r) {
		s.fail(w, r, http.StatusForbidden, "The form is stale or came from elsewhere: reload the page and try again.")
		return
	}
	l, t, ok := s.readTarget(w, r)
	if !ok {
		return
	}
	confirmed := atoi(r.FormValue("count"))
	if confirmed <= 0 {
		http.Redirect(w, r, "/lots/"+escape(l.queue), http.StatusSeeOther)
		return
	}
	release, err := l.acquire(r.Context())
	if err != nil {
		return // the browser left before the lot was free
	}
	// Once begun, the action goes on if the browser leaves; it stops when
	// the server does.
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	defer cancel()
	defer context.AfterFunc(s.life, cancel)()
	rep, err := s.do(ctx, l, t, confirmed)
	release()
	l.startScan(s.life, &s.scans) // the summary no longer holds
	s.log.Info("console action", "action", t.Action, "queue", l.queue, "group", t.GroupID, "id", t.ID,
		"confirmed", confirmed, "acted", rep.Acted, "remote", r.RemoteAddr, "err", err)
	if err != nil {
		s.fail(w, r, http.StatusBadGateway, fmt.Sprintf("%s %d of %d messages, then: %v. The rest are still parked.",
			capitalize(verbs[t.Action]), rep.Acted, confirmed, err))
		return
	}
	q := url.Values{"did": {t.Action}, "n": {strconv.Itoa(rep.Acted)}}
	http.Redirect(w, r, "/lots/"+escape(l.queue)+"?"+q.Encode(), http.StatusSeeOther)
}

func (s *Server) do(ctx context.Context, l *lot, t target, limit int) (parked.Report, error) {
	pl := l.parked(nil)
	sel := t.selection(limit)
	if t.Action == "replay" {
		return pl.Replay(ctx, sel)
	}
	if s.cfg.DropLog == nil {
		return pl.Drop(ctx, sel, nil)
	}
	s.dropMu.Lock()
	defer s.dropMu.Unlock()
	return pl.Drop(ctx, sel, s.cfg.DropLog)
}

// flash says what the action a redirect came from did.
func flash(r *http.Request) string {
	did, n := verbs[r.FormValue("did")], r.FormValue("n")
	if did == "" {
		return ""
	}
	if _, err := strconv.Atoi(n); err != nil {
		return ""
	}
	if n == "1" {
		return capitalize(did) + " 1 message."
	}
	return capitalize(did) + " " + n + " messages."
}

func escape(queue string) string { return url.PathEscape(queue) }

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func sortHeaders(h []header) {
	slices.SortFunc(h, func(a, b header) int { return strings.Compare(a.Key, b.Key) })
}
