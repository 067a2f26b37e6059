package main

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dlxretry/dlxretry/internal/parked"
)

// writeMessage prints one message for a person: what parking recorded,
// the death history, the headers and the body.
func writeMessage(w io.Writer, l parked.Lot, m parked.Message, now time.Time) error {
	fmt.Fprintf(w, "Message %s\n\n", orDash(m.MessageID))
	for _, f := range facts(l, m, now) {
		fmt.Fprintf(w, "  %-18s %s\n", f[0], f[1])
	}
	writeDeaths(w, m)
	writeHeaders(w, m)
	b := parked.FormatBody(m.ContentType, m.Body, bodyLimit)
	fmt.Fprintf(w, "\nBody (%s, %d bytes)\n", b.Kind, m.Size)
	if b.Text != "" {
		fmt.Fprintln(w, indent(strings.TrimRight(b.Text, "\n"), "  "))
	}
	if b.Cut > 0 {
		fmt.Fprintf(w, "  … %d more bytes not shown\n", b.Cut)
	}
	return nil
}

// facts are the label and value pairs show prints first.
func facts(l parked.Lot, m parked.Message, now time.Time) [][2]string {
	parkedAt := "-"
	if !m.ParkedAt.IsZero() {
		parkedAt = fmt.Sprintf("%s (%s ago)", m.ParkedAt.UTC().Format(time.RFC3339), short(now.Sub(m.ParkedAt)))
	}
	outcome := fmt.Sprintf("exhausted: parked after %d attempts", m.Attempts)
	if m.Permanent {
		outcome = fmt.Sprintf("permanent: parked at attempt %d", m.Attempts)
	}
	timestamp := "-"
	if !m.Timestamp.IsZero() {
		timestamp = m.Timestamp.UTC().Format(time.RFC3339)
	}
	return [][2]string{
		{"Parking queue", l.ParkingQueue()},
		{"Failed in", orDash(m.Queue)},
		{"Error", orDash(m.Error)},
		{"Group", parked.GroupID(m.Error) + "  " + parked.Normalize(m.Error)},
		{"Outcome", outcome},
		{"Parked at", parkedAt},
		{"Replays", strconv.Itoa(m.Replays)},
		{"Original exchange", orDash(m.OriginalExchange)},
		{"Original key", orDash(m.OriginalRoutingKey)},
		{"Content type", orDash(m.ContentType)},
		{"Correlation id", orDash(m.CorrelationID)},
		{"Timestamp", timestamp},
	}
}

func writeDeaths(w io.Writer, m parked.Message) {
	deaths, err := parked.Deaths(m)
	fmt.Fprintln(w, "\nDeath history (x-death, most recent first)")
	if err != nil {
		fmt.Fprintf(w, "  (%s)\n", strings.TrimPrefix(err.Error(), "dlxretry: "))
	}
	if len(deaths) == 0 {
		fmt.Fprintln(w, "  none")
		return
	}
	t := &table{header: []string{"QUEUE", "REASON", "COUNT", "FIRST", "EXCHANGE", "ROUTING KEYS"}, right: map[int]bool{2: true}}
	for _, d := range deaths {
		first := "-"
		if !d.Time.IsZero() {
			first = d.Time.UTC().Format(time.RFC3339)
		}
		t.add(d.Queue, d.Reason, strconv.FormatInt(d.Count, 10), first, orDash(d.Exchange), strings.Join(d.RoutingKeys, ","))
	}
	var b strings.Builder
	_ = t.write(&b, 0)
	fmt.Fprint(w, indent(strings.TrimRight(b.String(), "\n"), "  ")+"\n")
}

func writeHeaders(w io.Writer, m parked.Message) {
	fmt.Fprintln(w, "\nHeaders")
	keys := make([]string, 0, len(m.Headers))
	for k := range m.Headers {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if len(keys) == 0 {
		fmt.Fprintln(w, "  none")
	}
	for _, k := range keys {
		v := parked.HeaderText(m.Headers[k])
		if k == "x-death" {
			v = "(the death history above)"
		}
		if strings.Contains(v, "\n") {
			fmt.Fprintf(w, "  %s:\n%s\n", k, indent(strings.TrimRight(v, "\n"), "      "))
			continue
		}
		fmt.Fprintf(w, "  %s: %s\n", k, v)
	}
}

func indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix)
}
