package dlxretry_test

import (
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"strings"
	"sync"
	"testing"
)

// An option that means nothing to a constructor does not compile with it.
func TestOptionsCheckedAtCompileTime(t *testing.T) {
	long(t)
	t.Parallel()
	cases := []struct {
		call    string
		compile bool
	}{
		{`dlxretry.NewPublisher(url, dlxretry.WithConcurrency(8))`, false},
		{`dlxretry.NewPublisher(url, dlxretry.WithPrefetch(4))`, false},
		{`dlxretry.NewPublisher(url, dlxretry.WithShutdownTimeout(time.Second))`, false},
		{`dlxretry.NewConn(url, dlxretry.WithConcurrency(8))`, false},
		{`dlxretry.NewPublisher(url, dlxretry.WithLogger(nil), dlxretry.WithHooks(dlxretry.Hooks{}), dlxretry.WithURLs(url))`, true},
		{`dlxretry.NewConsumer(url, topo, h, dlxretry.WithConcurrency(8), dlxretry.WithPrefetch(16), dlxretry.WithURLs(url))`, true},
		{`dlxretry.NewConn(url, dlxretry.WithConnectTimeout(time.Second), dlxretry.WithReconnectDelay(1, 2))`, true},
	}
	for _, c := range cases {
		err := typeCheck(t, c.call)
		switch {
		case c.compile && err != nil:
			t.Errorf("%s does not compile: %v", c.call, err)
		case !c.compile && err == nil:
			t.Errorf("%s compiles", c.call)
		case !c.compile && !strings.Contains(err.Error(), "does not implement"):
			t.Errorf("%s: %v, want an option type mismatch", c.call, err)
		}
	}
}

var (
	sourceOnce     sync.Once
	sourceFiles    = token.NewFileSet()
	sourceImporter types.Importer
)

// typeCheck type-checks call in a small program that imports this package
// from source.
func typeCheck(t *testing.T, call string) error {
	t.Helper()
	src := `package p

import (
	"context"
	"time"

	"github.com/dlxretry/dlxretry"
)

var _ = time.Second

func f(url string, topo dlxretry.Topology, h func(context.Context, *dlxretry.Delivery) error) {
	_, _ = ` + call + `
}
`
	f, err := parser.ParseFile(sourceFiles, "p.go", src, 0)
	if err != nil {
		t.Fatal(err)
	}
	sourceOnce.Do(func() { sourceImporter = importer.ForCompiler(sourceFiles, "source", nil) })
	var first error
	conf := types.Config{Importer: sourceImporter, Error: func(err error) {
		if first == nil {
			first = err
		}
	}}
	_, _ = conf.Check("p", sourceFiles, []*ast.File{f}, nil)
	return first
}
