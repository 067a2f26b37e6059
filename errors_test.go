package dlxretry

import (
	"errors"
	"fmt"
	"testing"
)

type asTarget struct{ n int }

func (e *asTarget) Error() string { return fmt.Sprint("target ", e.n) }

// asAlias claims to be an *asTarget through an As method.
type asAlias struct{}

func (asAlias) Error() string { return "alias" }
func (asAlias) As(target any) bool {
	if p, ok := target.(**asTarget); ok {
		*p = &asTarget{n: 7}
		return true
	}
	return false
}

// asType finds what errors.As finds, through %w chains, joins and As methods.
func TestAsTypeAgreesWithErrorsAs(t *testing.T) {
	for _, err := range []error{
		nil,
		errors.New("plain"),
		&asTarget{1},
		fmt.Errorf("wrapped: %w", &asTarget{2}),
		errors.Join(errors.New("a"), fmt.Errorf("b: %w", &asTarget{3})),
		fmt.Errorf("x: %w", asAlias{}),
		errors.Join(errors.New("a"), errors.New("b")),
	} {
		var want *asTarget
		wantOK := errors.As(err, &want)
		got, ok := asType[*asTarget](err)
		if ok != wantOK || (ok && got.n != want.n) {
			t.Errorf("%v: asType = %v, %v; errors.As = %v, %v", err, got, ok, want, wantOK)
		}
	}
}
