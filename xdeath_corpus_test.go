package dlxretry_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/dlxretry/dlxretry"
	amqp "github.com/rabbitmq/amqp091-go"
)

// capturedFile is one testdata/xdeath-captured-*.json file: the headers of
// real deliveries of messages that had been rejected, written by
// TestCaptureXDeathCorpus.
type capturedFile struct {
	Broker     string             `json:"broker"`
	Deliveries []capturedDelivery `json:"deliveries"`
}

// capturedDelivery is one delivery's headers and the routing key its message
// was published with.
type capturedDelivery struct {
	Name         string      `json:"name"`
	PublishedKey string      `json:"published_key"`
	Headers      taggedTable `json:"headers"`
}

// taggedTable is a header table as JSON in which every value keeps its AMQP
// type: an object with one member named for the type, {"int64": 2},
// {"time": "2023-11-14T22:13:20Z"}, {"table": {...}}, {"array": [...]},
// {"void": null}, {"bytes": "base64"}, {"decimal": {"Scale": 1, "Value": 5}}.
type taggedTable amqp.Table

// scalarTags names the types amqp091-go decodes field values to, besides
// tables, arrays and void.
var scalarTags = map[string]reflect.Type{
	"time": reflect.TypeFor[time.Time](),
	"bool": reflect.TypeFor[bool](), "string": reflect.TypeFor[string](), "bytes": reflect.TypeFor[[]byte](),
	"int8": reflect.TypeFor[int8](), "uint8": reflect.TypeFor[uint8](),
	"int16": reflect.TypeFor[int16](), "uint16": reflect.TypeFor[uint16](),
	"int32": reflect.TypeFor[int32](), "uint32": reflect.TypeFor[uint32](), "int64": reflect.TypeFor[int64](),
	"float32": reflect.TypeFor[float32](), "float64": reflect.TypeFor[float64](),
	"decimal": reflect.TypeFor[amqp.Decimal](),
}

func (t taggedTable) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, len(t))
	for k, v := range t {
		var err error
		if m[k], err = tagged(v); err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
	}
	return json.Marshal(m)
}

func (t *taggedTable) UnmarshalJSON(b []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	*t = make(taggedTable, len(m))
	for k, raw := range m {
		v, err := untagged(raw)
		if err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
		(*t)[k] = v
	}
	return nil
}

// tagged is v as a value for json.Marshal that keeps its type.
func tagged(v any) (any, error) {
	switch v := v.(type) {
	case nil:
		return map[string]any{"void": nil}, nil
	case amqp.Table:
		return map[string]any{"table": taggedTable(v)}, nil
	case time.Time:
		return map[string]any{"time": v.UTC()}, nil
	case []any:
		list := make([]any, len(v))
		for i, x := range v {
			var err error
			if list[i], err = tagged(x); err != nil {
				return nil, fmt.Errorf("element %d: %w", i, err)
			}
		}
		return map[string]any{"array": list}, nil
	}
	for tag, typ := range scalarTags {
		if reflect.TypeOf(v) == typ {
			return map[string]any{tag: v}, nil
		}
	}
	return nil, fmt.Errorf("no JSON form for a %T", v)
}

// untagged reads a value that tagged wrote.
func untagged(b []byte) (any, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil || len(m) != 1 {
		return nil, fmt.Errorf("want an object with one type member, got %.60s (%v)", b, err)
	}
	var tag string
	var raw json.RawMessage
	for tag, raw = range m { // the one member
	}
	switch tag {
	case "void":
		return nil, nil
	case "table":
		var t taggedTable
		err := json.Unmarshal(raw, &t)
		return amqp.Table(t), err
	case "array":
		return untaggedArray(raw)
	}
	typ, ok := scalarTags[tag]
	if !ok {
		return nil, fmt.Errorf("unknown type %q", tag)
	}
	p := reflect.New(typ)
	err := json.Unmarshal(raw, p.Interface())
	return p.Elem().Interface(), err
}

func untaggedArray(b []byte) ([]any, error) {
	var raws []json.RawMessage
	if err := json.Unmarshal(b, &raws); err != nil {
		return nil, err
	}
	list := make([]any, len(raws))
	for i, raw := range raws {
		var err error
		if list[i], err = untagged(raw); err != nil {
			return nil, fmt.Errorf("element %d: %w", i, err)
		}
	}
	return list, nil
}

// readCaptured reads the deliveries of every testdata/xdeath-captured-*.json
// file, each named <broker>/<name>.
func readCaptured() ([]capturedDelivery, error) {
	names, err := filepath.Glob(filepath.Join("testdata", "xdeath-captured-*.json"))
	if err != nil {
		return nil, err
	}
	var all []capturedDelivery
	for _, name := range names {
		var f capturedFile
		b, err := os.ReadFile(name)
		if err == nil {
			err = json.Unmarshal(b, &f)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		for _, d := range f.Deliveries {
			d.Name = f.Broker + "/" + d.Name
			all = append(all, d)
		}
	}
	return all, nil
}

// TestParseDeathsCorpus checks the headers of real deliveries of messages
// that had been rejected: they parse without error, the consumer trusts
// them, and the work queue's {queue, rejected} entry counts at least one
// failure and still holds the key the message was published with, not a tier
// key, however often the message went round the tiers.
func TestParseDeathsCorpus(t *testing.T) {
	captured, err := readCaptured()
	if err != nil {
		t.Fatal(err)
	}
	if len(captured) == 0 {
		t.Fatal("no testdata/xdeath-captured-*.json; run go test -run TestCaptureXDeathCorpus -capture-xdeath")
	}
	for _, d := range captured {
		t.Run(d.Name, func(t *testing.T) {
			headers := amqp.Table(d.Headers)
			checkDeathsInvariants(t, headers)
			deaths, err := dlxretry.ParseDeaths(headers)
			if err != nil {
				t.Fatalf("ParseDeaths: %v", err)
			}
			checkCapturedRejection(t, headers, deaths, d.PublishedKey)
		})
	}
}

func checkCapturedRejection(t *testing.T, headers amqp.Table, deaths dlxretry.Deaths, wantKey string) {
	t.Helper()
	for _, d := range deaths {
		if d.Reason != dlxretry.ReasonRejected {
			continue
		}
		if n := deaths.Rejections(d.Queue); n < 1 {
			t.Fatalf("Rejections(%q) = %d, want >= 1", d.Queue, n)
		}
		if key, ok := deaths.OriginalRoutingKey(d.Queue); !ok || key != wantKey {
			t.Fatalf("OriginalRoutingKey(%q) = %q, %v; want the publisher's %q", d.Queue, key, ok, wantKey)
		}
		if d.Time.IsZero() || d.Exchange == "" {
			t.Fatalf("rejected entry lacks time or exchange: %+v", d)
		}
		if err := dlxretry.CheckDeaths(headers, d.Queue, captureMaxAttempts); err != nil {
			t.Fatalf("the consumer does not trust a history the broker wrote: %v", err)
		}
		return
	}
	t.Fatalf("no {queue, rejected} entry in %+v", deaths)
}
