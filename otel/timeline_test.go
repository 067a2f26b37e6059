package dlxotel_test

import (
	"fmt"
	"html"
	"os"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	dlxotel "github.com/dlxretry/dlxretry/otel"
)

// row is one span of a trace, laid out on its timeline.
type row struct {
	label      string
	outcome    string // a process span's, "" for others
	depth      int
	start, end time.Duration // from the trace's first start
}

// rows lays out spans (one trace, in start order) by depth under their
// parent. Labels call the exchange "orders".
func rows(spans []tracetest.SpanStub, exchange string) (out []row, total time.Duration) {
	depth := map[trace.SpanID]int{}
	t0 := spans[0].StartTime
	for _, s := range spans {
		d := 0
		if p, ok := depth[s.Parent.SpanID()]; ok {
			d = p + 1
		}
		depth[s.SpanContext.SpanID()] = d
		r := row{label: strings.ReplaceAll(label(s), exchange, "orders"), outcome: attr(s, dlxotel.OutcomeKey), depth: d,
			start: s.StartTime.Sub(t0), end: s.EndTime.Sub(t0)}
		total = max(total, r.end)
		out = append(out, r)
	}
	return out, total
}

func label(s tracetest.SpanStub) string {
	if s.SpanKind != trace.SpanKindConsumer {
		return s.Name
	}
	l := fmt.Sprintf("%s, attempt %s: %s", s.Name, attr(s, dlxotel.AttemptKey), attr(s, dlxotel.OutcomeKey))
	if tier := attr(s, dlxotel.FromTierKey); tier != "" {
		l += fmt.Sprintf(" (after tier %s, %s)", tier, attr(s, dlxotel.FromDelayKey))
	}
	if n := attr(s, dlxotel.ReplaysKey); n != "" {
		l += " (replayed)"
	}
	return l
}

// timeline draws the trace as text, one span a line.
func timeline(spans []tracetest.SpanStub, exchange string) string {
	const width = 60
	rs, total := rows(spans, exchange)
	var b strings.Builder
	for _, r := range rs {
		from := int(int64(width) * int64(r.start) / int64(total))
		to := max(from+1, int(int64(width)*int64(r.end)/int64(total)))
		bar := strings.Repeat(" ", from) + strings.Repeat("█", to-from) + strings.Repeat(" ", max(0, width-to))
		fmt.Fprintf(&b, "%6dms |%s| %s%s\n", r.start.Milliseconds(), bar, strings.Repeat("  ", r.depth), r.label)
	}
	return b.String()
}

// svg draws the trace as an SVG picture: labels on the left, one bar a span
// on a time axis, coloured by outcome.
func svg(spans []tracetest.SpanStub, exchange string) string {
	const labelW, barW, rowH, top = 430, 520, 26, 60
	rs, total := rows(spans, exchange)
	height := top + rowH*len(rs) + 40
	x := func(d time.Duration) float64 { return labelW + float64(barW)*float64(d)/float64(total) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">`+"\n", labelW+barW+20, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="#ffffff"/>`+"\n")
	fmt.Fprintf(&b, `<text x="8" y="20" font-weight="bold">One trace, %d spans: a message's publish and every attempt to handle it</text>`+"\n", len(rs))
	step := tickStep(total)
	for d := time.Duration(0); d <= total; d += step {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#e4e4e4"/>`+"\n", x(d), top-8, x(d), height-6)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" fill="#777" text-anchor="middle">%dms</text>`+"\n", x(d), top-14, d.Milliseconds())
	}
	for i, r := range rs {
		y := top + i*rowH
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", 8+14*r.depth, y+16, html.EscapeString(r.label))
		w := max(2, x(r.end)-x(r.start))
		fmt.Fprintf(&b, `<rect x="%.1f" y="%d" width="%.1f" height="%d" rx="3" fill="%s"/>`+"\n", x(r.start), y+4, w, rowH-8, colour(r))
	}
	legend(&b, height-14)
	b.WriteString("</svg>\n")
	return b.String()
}

// legend explains the colours, along the bottom.
func legend(b *strings.Builder, y int) {
	x := 8
	for _, l := range []struct{ name, colour string }{
		{"publish", "#4a78c2"}, {"retry", "#e39b2d"}, {"park", "#c8423b"}, {"ack", "#3f9b4f"}, {"the handler's own span", "#9a9a9a"},
	} {
		fmt.Fprintf(b, `<rect x="%d" y="%d" width="12" height="12" rx="2" fill="%s"/>`+"\n", x, y-10, l.colour)
		fmt.Fprintf(b, `<text x="%d" y="%d" fill="#444">%s</text>`+"\n", x+17, y, l.name)
		x += 30 + 7*len(l.name)
	}
}

func tickStep(total time.Duration) time.Duration {
	for _, s := range []time.Duration{50, 100, 200, 500, 1000, 2000, 5000} {
		if step := s * time.Millisecond; total/step <= 10 {
			return step
		}
	}
	return total / 10
}

func colour(r row) string {
	switch {
	case r.depth == 0:
		return "#4a78c2" // publish
	case r.outcome == dlxotel.OutcomeAck:
		return "#3f9b4f"
	case r.outcome == dlxotel.OutcomeRetry:
		return "#e39b2d"
	case r.outcome == dlxotel.OutcomePark, r.outcome == dlxotel.OutcomeRelease:
		return "#c8423b"
	}
	return "#9a9a9a" // the handler's own spans
}

func writeSVG(t *testing.T, path string, spans []tracetest.SpanStub, exchange string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(svg(spans, exchange)), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", path)
}
