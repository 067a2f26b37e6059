package main

import (
	"encoding/json"
	"io"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/dlxretry/dlxretry/internal/parked"
)

// env is what the program meets outside its arguments; tests make their own.
type env struct {
	stdin       io.Reader
	stdout      io.Writer
	stderr      io.Writer
	interactive bool // stdin is a terminal: confirmations can be asked
	width       int  // stdout's width when it is a terminal, else 0: no truncation
	stderrTTY   bool // progress rewrites one line
	getenv      func(string) string
	secrets     []string // passwords to hide in everything it prints
}

func osEnv() *env {
	e := &env{
		stdin:       os.Stdin,
		stdout:      os.Stdout,
		stderr:      os.Stderr,
		interactive: isTerminal(os.Stdin),
		stderrTTY:   isTerminal(os.Stderr),
		getenv:      os.Getenv,
	}
	if isTerminal(os.Stdout) {
		e.width = terminalWidth(os.Stdout)
	}
	return e
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// terminalWidth asks the terminal, then $COLUMNS, and takes 100 if neither says.
func terminalWidth(f *os.File) int {
	if w := windowWidth(f); w > 0 {
		return w
	}
	if w, err := strconv.Atoi(os.Getenv("COLUMNS")); err == nil && w > 0 {
		return w
	}
	return 100
}

// json returns an encoder of JSON lines on stdout that leaves <, > and &
// as they are.
func (e *env) json() *json.Encoder {
	enc := json.NewEncoder(e.stdout)
	enc.SetEscapeHTML(false)
	return enc
}

// secret adds the password of a URL to what scrub hides.
func (e *env) secret(rawURL string) {
	if pw := parked.Password(rawURL); pw != "" {
		e.secrets = append(e.secrets, pw)
	}
}

// scrub hides every known password in s.
func (e *env) scrub(s string) string {
	for _, pw := range e.secrets {
		s = strings.ReplaceAll(s, pw, "xxxxx")
	}
	return s
}

// version is the module version the binary was built from.
func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}
