package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dlxretry/dlxretry"
)

// pastTense names what each command did to a message.
var pastTense = map[string]string{"replay": "replayed", "drop": "dropped", "move": "moved"}

// execute connects and runs the parsed command.
func execute(ctx context.Context, cfg config, stdout, stderr io.Writer) error {
	conn, err := dlxretry.Dial(ctx, cfg.url, dlxretry.WithConnectionName("dlxretry-parkinglot"),
		dlxretry.WithConnectTimeout(3*time.Second))
	if err != nil {
		// The error hides the password.
		return fmt.Errorf("cannot connect to RabbitMQ: %w (is it running? set --url or RABBITMQ_URL)", err)
	}
	defer conn.Close()
	var opts []dlxretry.ParkingLotOption
	if cfg.progress > 0 {
		opts = append(opts, dlxretry.WithProgress(cfg.progress, progress(cfg.command, stderr)))
	}
	lot, err := dlxretry.NewParkingLot(conn, cfg.queue, opts...)
	if err != nil {
		return err
	}
	if cfg.command == "list" {
		return list(ctx, lot, cfg, stdout, stderr)
	}
	rep, err := act(ctx, lot, cfg)
	if err != nil && rep.Visited == 0 {
		return err // it did nothing: the error says all
	}
	if werr := writeReport(stdout, cfg, rep); err == nil {
		err = werr
	}
	return err
}

// progress returns the function that reports progress on stderr.
func progress(command string, stderr io.Writer) func(dlxretry.Report) {
	return func(r dlxretry.Report) {
		fmt.Fprintf(stderr, "progress: visited %d of %d, matched %d", r.Visited, r.Total, r.Matched)
		if command != "list" {
			fmt.Fprintf(stderr, ", %s %d", pastTense[command], r.Acted)
		}
		fmt.Fprintln(stderr)
	}
}

// act runs replay, drop or move.
func act(ctx context.Context, lot *dlxretry.ParkingLot, cfg config) (dlxretry.Report, error) {
	switch cfg.command {
	case "replay":
		return lot.Replay(ctx, cfg.filter)
	case "move":
		exchange, key := cfg.target()
		return lot.Move(ctx, cfg.filter, exchange, key)
	}
	if cfg.out == "" || cfg.filter.DryRun {
		return lot.Drop(ctx, cfg.filter, nil)
	}
	f, err := os.OpenFile(cfg.out, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return dlxretry.Report{}, err
	}
	// An *os.File is synced after each line, before the message is acked.
	rep, err := lot.Drop(ctx, cfg.filter, f)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close %s: %w", cfg.out, cerr)
	}
	return rep, err
}

// writeReport prints what replay, drop or move did, also after a failure.
func writeReport(w io.Writer, cfg config, rep dlxretry.Report) error {
	if cfg.json {
		return json.NewEncoder(w).Encode(struct {
			Command string `json:"command"`
			DryRun  bool   `json:"dry_run"`
			dlxretry.Report
		}{cfg.command, cfg.filter.DryRun, rep})
	}
	if cfg.filter.DryRun {
		_, err := fmt.Fprintf(w, "dry run: would %s %d of %d parked messages; nothing was changed\n",
			cfg.command, rep.Matched, rep.Total)
		return err
	}
	_, err := fmt.Fprintf(w, "%s %d of %d parked messages (visited %d, matched %d, kept %d)\n",
		pastTense[cfg.command], rep.Acted, rep.Total, rep.Visited, rep.Matched, rep.Kept)
	return err
}

// list prints the selected messages as they are read: JSON lines, or a
// table once all are read.
func list(ctx context.Context, lot *dlxretry.ParkingLot, cfg config, stdout, stderr io.Writer) error {
	var print func(dlxretry.ParkedMessage) error
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	if cfg.json {
		enc := json.NewEncoder(stdout)
		print = func(m dlxretry.ParkedMessage) error { return enc.Encode(m) }
	} else {
		fmt.Fprintln(tw, "MESSAGE-ID\tORIGINAL-KEY\tATTEMPTS\tREPLAYS\tAGE\tSIZE\tERROR")
		print = func(m dlxretry.ParkedMessage) error { return row(tw, m) }
	}
	rep, err := lot.Each(ctx, cfg.filter, print)
	if err != nil && rep.Visited == 0 {
		return err // it read nothing: no table
	}
	if !cfg.json {
		if ferr := tw.Flush(); err == nil {
			err = ferr
		}
	}
	fmt.Fprintf(stderr, "%d of %d parked messages matched\n", rep.Matched, rep.Total)
	return err
}

func row(w io.Writer, m dlxretry.ParkedMessage) error {
	age := "-"
	if !m.ParkedAt.IsZero() {
		age = m.Age.Round(time.Second).String()
	}
	_, err := fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%s\t%d\t%s\n", orDash(m.MessageID), orDash(m.OriginalRoutingKey),
		m.Attempts, m.Replays, age, m.Size, orDash(oneLine(m.Error, 60)))
	return err
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// oneLine makes s fit a table cell: no tabs or line breaks, at most n runes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
