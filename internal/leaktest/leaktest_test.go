package leaktest

import (
	"testing"
	"time"
)

// A goroutine running code of its own package is found until it ends.
func TestLeakedFindsARunningGoroutine(t *testing.T) {
	stop := make(chan struct{})
	done := make(chan struct{})
	owners = append(owners, "github.com/dlxretry/dlxretry/internal/leaktest")
	go func() { blockUntil(stop); close(done) }()
	if got := Leaked(100 * time.Millisecond); len(got) != 1 {
		t.Fatalf("Leaked found %d goroutines, want the one running blockUntil: %q", len(got), got)
	}
	close(stop)
	<-done
	if got := Leaked(time.Second); len(got) != 0 {
		t.Fatalf("Leaked found %d goroutines after the goroutine ended: %q", len(got), got)
	}
}

func blockUntil(c chan struct{}) { <-c }
