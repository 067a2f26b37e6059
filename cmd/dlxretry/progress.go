package main

import (
	"fmt"
	"strings"

	"github.com/dlxretry/dlxretry"
	"github.com/dlxretry/dlxretry/internal/parked"
)

// progress reports how far a long operation got, on stderr: one line
// rewritten in place on a terminal, a line per report otherwise.
type progress struct {
	e     *env
	every int
	shown int // length of the line on screen, on a terminal
}

func (e *env) progress(every int) *progress { return &progress{e: e, every: every} }

// lot returns the Lot of queue that reports to p.
func (p *progress) lot(conn *dlxretry.Conn, queue, verb string) parked.Lot {
	l := parked.Lot{Conn: conn, Queue: queue, Every: p.every}
	if p.every > 0 {
		l.Progress = func(r parked.Report) { p.report(reportLine(l.ParkingQueue(), verb, r)) }
	}
	return l
}

func reportLine(queue, verb string, r parked.Report) string {
	s := fmt.Sprintf("%s: visited %d of %d, matched %d", queue, r.Visited, r.Total, r.Matched)
	if verb != "" {
		s += fmt.Sprintf(", %s %d", verb, r.Acted)
	}
	return s
}

func (p *progress) report(line string) {
	if !p.e.stderrTTY {
		fmt.Fprintln(p.e.stderr, line)
		return
	}
	pad := strings.Repeat(" ", max(0, p.shown-len(line)))
	fmt.Fprintf(p.e.stderr, "\r%s%s", line, pad)
	p.shown = len(line)
}

// done ends the line on a terminal.
func (p *progress) done() {
	if p.shown > 0 {
		fmt.Fprintf(p.e.stderr, "\r%s\r", strings.Repeat(" ", p.shown))
		p.shown = 0
	}
}
