// Package leaktest checks that a test binary leaves no goroutine of the
// library, or of amqp091-go on its behalf, running after its tests: every
// goroutine the library starts must end when what started it returns or
// is closed. It needs no module beyond the standard library, so that the
// library's go.mod lists what users need and nothing else.
package leaktest

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// settle is how long goroutines get to end after the tests: closing a
// connection ends amqp091-go's reader a moment later.
const settle = 5 * time.Second

// owners are the packages whose goroutines must not outlive the tests.
var owners = []string{"github.com/dlxretry/dlxretry", "github.com/rabbitmq/amqp091-go"}

// VerifyTestMain runs the tests and then fails the binary, listing their
// stacks, if goroutines of the library or amqp091-go are still running
// after the tests passed and a few seconds went by.
func VerifyTestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := Leaked(settle); len(leaked) > 0 {
			fmt.Fprintf(os.Stderr, "leaktest: %d goroutines still running after the tests:\n\n%s\n",
				len(leaked), strings.Join(leaked, "\n\n"))
			code = 1
		}
	}
	os.Exit(code)
}

// Leaked waits up to wait for the library's goroutines to end and returns
// the stacks of those that did not.
func Leaked(wait time.Duration) []string {
	deadline := time.Now().Add(wait)
	for {
		leaked := running()
		if len(leaked) == 0 || time.Now().After(deadline) {
			return leaked
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// running returns the stacks of the goroutines, other than this one, that
// run code of the owners.
func running() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for i, g := range strings.Split(string(buf), "\n\n") {
		if i == 0 { // this goroutine
			continue
		}
		if owned(g) {
			out = append(out, g)
		}
	}
	return out
}

func owned(stack string) bool {
	for _, o := range owners {
		if strings.Contains(stack, o+".") || strings.Contains(stack, o+"/") {
			return true
		}
	}
	return false
}
