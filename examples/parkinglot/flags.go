package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/dlxretry/dlxretry"
)

const defaultURL = "amqp://guest:guest@localhost:5672/"

// errHelp asks for the usage text.
var errHelp = errors.New("help requested")

// config is a parsed command line.
type config struct {
	command  string
	url      string
	queue    string
	filter   dlxretry.Filter
	json     bool
	progress int
	out      string // drop
	toQueue  string // move
	toExch   string // move
	toKey    string // move
}

// parse reads the command and its flags. Flag errors are returned, not
// printed: the flag set writes to io.Discard.
func parse(args []string) (config, error) {
	if len(args) == 0 {
		return config{}, errors.New("no command given; want list, replay, drop or move")
	}
	cfg := config{command: args[0]}
	switch cfg.command {
	case "help", "-h", "-help", "--help":
		return cfg, errHelp
	case "list", "replay", "drop", "move":
	default:
		return cfg, fmt.Errorf("unknown command %q; want list, replay, drop or move", cfg.command)
	}
	fs := cfg.flagSet()
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, errHelp
		}
		return cfg, fmt.Errorf("%s: %w", cfg.command, err)
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("%s: unexpected argument %q", cfg.command, fs.Arg(0))
	}
	return cfg, cfg.validate()
}

func (cfg *config) flagSet() *flag.FlagSet {
	fs := flag.NewFlagSet(cfg.command, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	url := os.Getenv("RABBITMQ_URL")
	if url == "" {
		url = defaultURL
	}
	fs.StringVar(&cfg.url, "url", url, "")
	fs.StringVar(&cfg.queue, "queue", "", "")
	fs.StringVar(&cfg.filter.ErrorContains, "error", "", "")
	fs.StringVar(&cfg.filter.OriginalQueue, "original-queue", "", "")
	fs.DurationVar(&cfg.filter.OlderThan, "older-than", 0, "")
	fs.DurationVar(&cfg.filter.NewerThan, "newer-than", 0, "")
	fs.Var(headerFlag{&cfg.filter.Headers}, "header", "")
	fs.IntVar(&cfg.filter.Limit, "limit", 0, "")
	fs.BoolVar(&cfg.json, "json", false, "")
	fs.IntVar(&cfg.progress, "progress", 1000, "")
	if cfg.command != "list" {
		fs.BoolVar(&cfg.filter.DryRun, "dry-run", false, "")
	}
	switch cfg.command {
	case "drop":
		fs.StringVar(&cfg.out, "out", "", "")
	case "move":
		fs.StringVar(&cfg.toQueue, "to-queue", "", "")
		fs.StringVar(&cfg.toExch, "to-exchange", "", "")
		fs.StringVar(&cfg.toKey, "to-key", "", "")
	}
	return fs
}

func (cfg *config) validate() error {
	switch {
	case cfg.queue == "":
		return fmt.Errorf("%s: --queue is required", cfg.command)
	case cfg.progress < 0:
		return fmt.Errorf("%s: --progress must not be negative", cfg.command)
	case cfg.command == "move" && (cfg.toQueue == "") == (cfg.toExch == ""):
		return errors.New("move: give exactly one of --to-queue and --to-exchange")
	case cfg.toQueue != "" && cfg.toKey != "":
		return errors.New("move: --to-key goes with --to-exchange, not --to-queue")
	}
	conn, err := dlxretry.NewConn(cfg.url) // its error hides the password
	if err != nil {
		return fmt.Errorf("%s: --url: %w", cfg.command, err)
	}
	conn.Close()
	if err := cfg.filter.Validate(); err != nil {
		return fmt.Errorf("%s: %w", cfg.command, err)
	}
	return nil
}

// target is where move publishes: an exchange and a routing key.
func (cfg *config) target() (exchange, key string) {
	if cfg.toQueue != "" {
		return "", cfg.toQueue
	}
	return cfg.toExch, cfg.toKey
}

// headerFlag collects --header KEY=VALUE into a map.
type headerFlag struct{ m *map[string]string }

func (h headerFlag) String() string {
	if h.m == nil {
		return ""
	}
	return fmt.Sprint(*h.m)
}

func (h headerFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want KEY=VALUE, got %q", s)
	}
	if *h.m == nil {
		*h.m = map[string]string{}
	}
	(*h.m)[k] = v
	return nil
}
