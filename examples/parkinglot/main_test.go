package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/dlxretry/dlxretry/internal/brokertest"
)

// TestParkingLot runs the example under a name of its own and checks what
// it prints, which the package comment shows.
func TestParkingLot(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), brokertest.URL(t), brokertest.Name(t, "orders"), &out); err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	want := `parked order-1 after 2 attempts: upstream timeout
parked order-2 after 2 attempts: upstream timeout
parked order-3 after 1 attempt: malformed order (permanent)
dry run: would replay 2 of 3 parked messages
replayed 2 of 3 parked messages
handled order-1 at attempt 1, replayed 1 time
handled order-2 at attempt 1, replayed 1 time
dropped 1 parked message, saved as 1 JSON line
`
	if out.String() != want {
		t.Errorf("output:\n%s\nwant:\n%s", out.String(), want)
	}
}
