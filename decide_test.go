package dlxretry

import (
	"errors"
	"fmt"
	"testing"
)

func TestDecide(t *testing.T) {
	fail := errors.New("down")
	cases := []struct {
		name        string
		err         error
		attempt     int
		maxAttempts int
		want        action
	}{
		{"success", nil, 1, 3, actionAck},
		{"success on the last attempt", nil, 3, 3, actionAck},
		{"first failure", fail, 1, 3, actionRetry},
		{"failure below the threshold", fail, 2, 3, actionRetry},
		{"failure at the threshold", fail, 3, 3, actionPark},
		{"failure past the threshold (replayed history)", fail, 9, 3, actionPark},
		{"single attempt", fail, 1, 1, actionPark},
		{"permanent on the first attempt", Permanent(fail), 1, 3, actionPark},
		{"permanent wrapped further", fmt.Errorf("handler: %w", Permanent(fail)), 1, 3, actionPark},
		{"redelivery limit", ErrRedeliveryLimit, 1, 3, actionRetry},
		{"panic", &PanicError{Value: "x"}, 1, 3, actionRetry},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := decide(c.err, c.attempt, c.maxAttempts); got != c.want {
				t.Errorf("decide(%v, %d, %d) = %v, want %v", c.err, c.attempt, c.maxAttempts, got, c.want)
			}
		})
	}
}

func TestPermanent(t *testing.T) {
	if Permanent(nil) != nil {
		t.Error("Permanent(nil) is not nil")
	}
	base := errors.New("bad input")
	err := Permanent(base)
	if !errors.Is(err, base) || err.Error() != "bad input" {
		t.Errorf("Permanent(base) = %v, does not wrap base", err)
	}
}

func TestTruncateUTF8(t *testing.T) {
	cases := []struct {
		in   string
		n    int
		want string
	}{
		{"short", 16, "short"},
		{"exactly sixteen!", 16, "exactly sixteen!"},
		{"0123456789abcdefXYZ", 16, "0123456789abc…"},
		{"ééééééééé", 16, "éééééé…"}, // 2-byte runes are not split
	}
	for _, c := range cases {
		got := truncateUTF8(c.in, c.n)
		if got != c.want || len(got) > c.n {
			t.Errorf("truncateUTF8(%q, %d) = %q (%d bytes), want %q", c.in, c.n, got, len(got), c.want)
		}
	}
}
