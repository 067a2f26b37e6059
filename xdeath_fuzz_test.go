package dlxretry_test

import (
	"encoding/binary"
	"errors"
	"math"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/dlxretry/dlxretry"
	amqp "github.com/rabbitmq/amqp091-go"
)

// FuzzParseDeaths checks ParseDeaths, the Deaths helpers and the consumer's
// check of a death history on the headers a header program builds, the
// fuzz input being the program.
func FuzzParseDeaths(f *testing.F) {
	for _, seed := range seedPrograms() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, prog []byte) {
		checkDeathsInvariants(t, buildHeaders(prog))
	})
}

func seedPrograms() [][]byte {
	// entry is an x-death entry: a table of queue, reason and n more fields.
	entry := func(queue, reason string, n int, fields ...any) []byte {
		return assemble(append([]any{opTable, 2 + n, "queue", opString, queue, "reason", opString, reason}, fields...)...)
	}
	xdeath := func(values ...[]byte) []byte {
		return slices.Concat(assemble(1, "x-death", opArray, len(values)), slices.Concat(values...))
	}
	rejected := entry("orders", "rejected", 4, "count", opInt64, int64(2), "time", opTime, int64(1700000000),
		"exchange", opString, "events", "routing-keys", opArray, 2, opString, "order.created", opString, "audit")
	expired := entry("orders.retry.1.1s", "expired", 5, "count", opInt64, int64(2), "time", opTime, int64(1700000000),
		"exchange", opString, "orders.retry.first", "routing-keys", opArray, 1, opString, "order.created",
		"original-expiration", opString, "1000")
	return [][]byte{
		{},
		assemble(1, "x-death", opNil),
		assemble(2, "x-death", opString, "not an array", "x-first-death-queue", opString, "orders"),
		xdeath(rejected, expired),
		xdeath(rejected, rejected),
		xdeath(entry("orders", "rejected", 1, "count", opInt64, int64(103))), // the most trusted for MaxAttempts 3
		xdeath(entry("orders", "rejected", 1, "count", opInt64, int64(104))),
		xdeath(entry("orders", "rejected", 1, "count", opInt64, int64(math.MaxInt64))),
		xdeath(entry("orders", "rejected", 1, "count", opFloat64, int64(math.Float64bits(2)))),
		xdeath(entry("orders", "rejected", 1, "count", opInt8, 0xff)),
		xdeath(entry("orders", "rejected", 2, "count", opInt64, int64(1), "routing-keys", opArray, 1, opString, "")),
		xdeath(assemble(opTable, 2, "queue", opString, "q", "count", opUint32, 0, 0, 0, 7), assemble(opString, "junk"),
			assemble(opTable, 4, "queue", opBytes, "q", "reason", opString, "maxlen",
				"count", opFloat64, int64(math.Float64bits(3.5)), "time", opInt32, 0, 0, 0, 5)),
		xdeath(entry("q", "rejected", 3, "count", opUint16, 0, 3, "exchange", opBool, 1, "routing-keys", opArray, 5,
			opInt16, 0, 1, opString, "k", opNil, opDecimal, 1, 0, 0, 0, 5, opString, "")),
		xdeath(slices.Concat(assemble(opArray, 1, opTable, 1, "x-death", opArray, 1), rejected),
			assemble(opFloat32, 0x3f, 0x80, 0, 0), assemble(opUint8, 1), assemble(opBool, 0)),
	}
}

// A header program builds an amqp.Table, so that every fuzz input is a
// header a publisher could send. A table is a count byte and that many pairs
// of a text (the name) and a value; an array, a count byte and that many
// values. A value is a type byte, taken modulo opCount, then: a text for a
// string or byte array; a table or array; 8 bytes of Unix seconds for a
// timestamp; or a number of the type numberTypes holds at op-opBool, in
// big-endian binary. A text is a byte below 0x80 choosing one of
// programWords, or 0x80+n and n bytes. Past its end a program reads zeros,
// so every input builds a table, in time linear in its length.
const (
	opNil, opString, opBytes, opTable, opArray, opTime, opBool, opInt8, opUint8    = 0, 1, 2, 3, 4, 5, 6, 7, 8
	opInt16, opUint16, opInt32, opUint32, opInt64, opFloat32, opFloat64, opDecimal = 9, 10, 11, 12, 13, 14, 15, 16
	opCount                                                                        = 17
)

var numberTypes = []any{false, int8(0), uint8(0), int16(0), uint16(0), int32(0), uint32(0),
	int64(0), float32(0), float64(0), amqp.Decimal{}}

var programWords = []string{"x-death", "queue", "reason", "count", "time", "exchange",
	"routing-keys", "original-expiration", "orders", "rejected", "expired", ""}

type programReader struct{ rest []byte }

func buildHeaders(prog []byte) amqp.Table { return (&programReader{prog}).table() }

// take returns the next n bytes of the program, zeros past its end.
func (r *programReader) take(n int) []byte {
	b := make([]byte, n)
	r.rest = r.rest[copy(b, r.rest):]
	return b
}

func (r *programReader) byte() byte { return r.take(1)[0] }

func (r *programReader) text() string {
	c := r.byte()
	if c < 0x80 {
		return programWords[int(c)%len(programWords)]
	}
	return string(r.take(min(int(c-0x80), len(r.rest))))
}

func (r *programReader) table() amqp.Table {
	t := amqp.Table{}
	for n := r.byte(); n > 0; n-- {
		name := r.text()
		t[name] = r.value()
	}
	return t
}

func (r *programReader) value() any {
	switch op := r.byte() % opCount; op {
	case opNil:
		return nil
	case opString:
		return r.text()
	case opBytes:
		return []byte(r.text())
	case opTable:
		return r.table()
	case opArray:
		list := make([]any, r.byte())
		for i := range list {
			list[i] = r.value()
		}
		return list
	case opTime:
		return time.Unix(int64(binary.BigEndian.Uint64(r.take(8))), 0)
	default:
		p := reflect.New(reflect.TypeOf(numberTypes[op-opBool]))
		_, _ = binary.Decode(r.take(binary.Size(p.Interface())), binary.BigEndian, p.Interface())
		return p.Elem().Interface()
	}
}

// assemble writes a header program: an int is a byte, an int64 8 bytes,
// a string a text (of at most 127 bytes).
func assemble(parts ...any) []byte {
	var b []byte
	for _, p := range parts {
		switch p := p.(type) {
		case int:
			b = append(b, byte(p))
		case int64:
			b = binary.BigEndian.AppendUint64(b, uint64(p))
		case string:
			b = append(append(b, 0x80+byte(len(p))), p...)
		}
	}
	return b
}

// checkDeathsInvariants checks what ParseDeaths, the Deaths helpers and the
// consumer's check of a history promise, whatever the headers. The consumer
// is that of a work queue "orders" that parks after 3 failures: a history it
// trusts reads without error, one entry per {queue, reason}, with counts
// from 1 to 2^31 and no more rejections from "orders" than the slack allows.
func checkDeathsInvariants(t *testing.T, headers amqp.Table) {
	t.Helper()
	deaths, err := dlxretry.ParseDeaths(headers)
	raw := headers["x-death"]
	list, isList := raw.([]any)
	switch {
	case raw == nil && (deaths != nil || err != nil):
		t.Fatalf("no x-death: got %v, %v; want nil, nil", deaths, err)
	case raw != nil && !isList && (len(deaths) != 0 || err == nil):
		t.Fatalf("x-death is a %T: got %v, %v; want no deaths and an error", raw, deaths, err)
	case isList && (err == nil) != (len(deaths) == len(list)):
		t.Fatalf("%d of %d entries read, but error is %v", len(deaths), len(list), err)
	}
	pairs := checkEntriesKept(t, list, deaths)
	for _, q := range []string{"", "no such queue"} {
		checkQueueHelpers(t, deaths, q)
	}
	for _, d := range deaths {
		checkQueueHelpers(t, deaths, d.Queue)
	}
	trustErr := dlxretry.CheckDeaths(headers, "orders", 3)
	badCount := slices.ContainsFunc(deaths, func(d dlxretry.Death) bool { return d.Count < 1 || d.Count > 1<<31 })
	switch {
	case trustErr != nil && !errors.Is(trustErr, dlxretry.ErrUnreadableHistory):
		t.Fatalf("CheckDeaths: %v, not ErrUnreadableHistory", trustErr)
	case trustErr == nil && (err != nil || pairs != len(deaths) || badCount ||
		deaths.Rejections("orders") > 3+dlxretry.RejectionSlack):
		t.Fatalf("CheckDeaths trusts %+v (ParseDeaths: %v)", deaths, err)
	}
}

// checkEntriesKept checks that the deaths are the entries that are tables
// with a non-empty queue and reason (string or byte array), each found by
// Find with its integer count and its other fields; a field of another type
// reads as zero. It returns how many {queue, reason} pairs it saw.
func checkEntriesKept(t *testing.T, list []any, deaths dlxretry.Deaths) int {
	t.Helper()
	kept, seen := 0, map[[2]string]bool{}
	for _, item := range list {
		e, _ := item.(amqp.Table)
		pair := [2]string{fieldText(e["queue"]), fieldText(e["reason"])}
		if pair[0] == "" || pair[1] == "" {
			continue
		}
		kept++
		if seen[pair] {
			continue // Find returns the first entry for a pair
		}
		seen[pair] = true
		d, found := deaths.Find(pair[0], pair[1])
		count, isInt := fieldInt(e["count"])
		at, isTime := e["time"].(time.Time)
		keys, isArray := fieldTexts(e["routing-keys"])
		if !found || isInt && d.Count != count || isTime && !d.Time.Equal(at) ||
			d.Exchange != fieldText(e["exchange"]) || d.OriginalExpiration != fieldText(e["original-expiration"]) ||
			isArray && !slices.Equal(d.RoutingKeys, keys) {
			t.Fatalf("entry %v read as %+v, %v", e, d, found)
		}
	}
	if len(deaths) != kept {
		t.Fatalf("%d deaths from %d readable entries", len(deaths), kept)
	}
	return len(seen)
}

// checkQueueHelpers checks Rejections and OriginalRoutingKey against the
// {queue, rejected} entry, or its absence.
func checkQueueHelpers(t *testing.T, deaths dlxretry.Deaths, queue string) {
	t.Helper()
	var want dlxretry.Death
	if d, found := deaths.Find(queue, dlxretry.ReasonRejected); found {
		want = d
	}
	wantKey, wantOK := "", len(want.RoutingKeys) > 0
	if wantOK {
		wantKey = want.RoutingKeys[0]
	}
	key, ok := deaths.OriginalRoutingKey(queue)
	if n := deaths.Rejections(queue); n != max(want.Count, 0) || key != wantKey || ok != wantOK {
		t.Fatalf("Rejections, OriginalRoutingKey(%q) = %d, %q, %v; the rejected entry is %+v", queue, n, key, ok, want)
	}
}

// fieldText is v's text when v is a string or a byte array, else "".
func fieldText(v any) string {
	s, _ := v.(string)
	b, _ := v.([]byte)
	return s + string(b)
}

// fieldTexts is the texts among v's elements, when v is an array: what
// ParseDeaths keeps of routing-keys.
func fieldTexts(v any) ([]string, bool) {
	list, ok := v.([]any)
	out := []string{}
	for _, x := range list {
		switch x.(type) {
		case string, []byte:
			out = append(out, fieldText(x))
		}
	}
	return out, ok
}

// fieldInt is v's value when v is an integer of any width.
func fieldInt(v any) (int64, bool) {
	switch r := reflect.ValueOf(v); {
	case r.CanInt():
		return r.Int(), true
	case r.CanUint():
		return int64(r.Uint()), true
	}
	return 0, false
}
