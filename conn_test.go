package dlxretry_test

import (
	"testing"

	"github.com/dlxretry/dlxretry"
	"github.com/dlxretry/dlxretry/internal/brokertest"
)

// newConn returns a Conn to the test broker, closed when the test ends.
func newConn(t *testing.T, opts ...dlxretry.ConnOption) *dlxretry.Conn {
	t.Helper()
	c, err := dlxretry.NewConn(brokertest.URL(t), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
