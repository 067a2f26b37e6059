package dlxretry_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"
	"testing"
	"time"

	"github.com/dlxretry/dlxretry"
	amqp "github.com/rabbitmq/amqp091-go"
)

// FuzzParseDeaths feeds ParseDeaths headers decoded from an AMQP 0-9-1 field
// table in wire format, the form in which the broker sends them. Its seeds
// are the hand-made tables below and the headers of real deliveries in
// testdata/xdeath-captured-*.json (see TestCaptureXDeathCorpus).
func FuzzParseDeaths(f *testing.F) {
	for _, h := range wireSeedHeaders() {
		b, err := encodeWireTable(h)
		if err != nil {
			f.Fatalf("encode seed: %v", err)
		}
		f.Add(b)
	}
	files, err := readCapturedFiles()
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		for _, d := range file.Deliveries {
			b, err := encodeWireTable(amqp.Table(d.Headers))
			if err != nil {
				f.Fatalf("encode %s: %v", d.Name, err)
			}
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		headers, err := decodeWireTable(data)
		if err != nil {
			return
		}
		checkWireRoundTrip(t, headers)
		checkDeathsInvariants(t, headers)
	})
}

func wireSeedHeaders() []amqp.Table {
	at := time.Unix(1700000000, 0)
	rejected := amqp.Table{
		"queue": "orders", "reason": "rejected", "count": int64(2), "time": at,
		"exchange": "events", "routing-keys": []any{"order.created", "audit"},
	}
	expired := amqp.Table{
		"queue": "orders.retry.1.1s", "reason": "expired", "count": int64(2), "time": at,
		"exchange": "orders.retry.first", "routing-keys": []any{"order.created"},
		"original-expiration": "1000",
	}
	return []amqp.Table{
		{},
		{"x-death": nil},
		{"x-death": "not an array"},
		{"x-death": []any{rejected, expired}, "x-first-death-queue": "orders"},
		{"x-death": []any{
			amqp.Table{"queue": "q", "reason": "rejected", "count": int8(-1)},
			amqp.Table{"queue": "q", "count": uint32(7)},
			"junk",
			amqp.Table{"queue": []byte("q"), "reason": "maxlen", "count": 3.5, "time": int32(5)},
		}},
		{"x-death": []any{amqp.Table{
			"queue": "q", "reason": "rejected", "count": uint16(3),
			"routing-keys": []any{int16(1), "k", nil, amqp.Decimal{Scale: 1, Value: 5}},
		}}, "x-delivery-count": int64(4)},
	}
}

// checkWireRoundTrip checks that the test codec is consistent: a decoded
// table encodes, and encoding is stable through a second decode.
func checkWireRoundTrip(t *testing.T, headers amqp.Table) {
	t.Helper()
	b1, err := encodeWireTable(headers)
	if err != nil {
		t.Fatalf("encode decoded table: %v", err)
	}
	h2, err := decodeWireTable(b1)
	if err != nil {
		t.Fatalf("decode encoded table: %v", err)
	}
	b2, err := encodeWireTable(h2)
	if err != nil {
		t.Fatalf("re-encode: %v", err)
	}
	if !bytes.Equal(b1, b2) {
		t.Fatalf("encoding not stable:\n%q\n%q", b1, b2)
	}
}

// checkDeathsInvariants runs ParseDeaths and the Deaths helpers on headers
// and checks what their documentation promises whatever the input.
func checkDeathsInvariants(t *testing.T, headers amqp.Table) {
	t.Helper()
	deaths, err := dlxretry.ParseDeaths(headers)
	raw := headers["x-death"]
	list, isList := raw.([]any)
	switch {
	case raw == nil:
		if deaths != nil || err != nil {
			t.Fatalf("no x-death: got %v, %v; want nil, nil", deaths, err)
		}
		return
	case !isList:
		if len(deaths) != 0 || err == nil {
			t.Fatalf("x-death is a %T: got %v, %v; want no deaths and an error", raw, deaths, err)
		}
		return
	}
	if len(deaths) > len(list) {
		t.Fatalf("%d deaths from %d entries", len(deaths), len(list))
	}
	if (err == nil) != (len(deaths) == len(list)) {
		t.Fatalf("%d of %d entries read, but error is %v", len(deaths), len(list), err)
	}
	checkEntriesKept(t, list, deaths)
	for _, d := range deaths {
		if d.Queue == "" || d.Reason == "" {
			t.Fatalf("death without queue or reason: %+v", d)
		}
		if got, ok := deaths.Find(d.Queue, d.Reason); !ok || got.Queue != d.Queue || got.Reason != d.Reason {
			t.Fatalf("Find(%q, %q) = %+v, %v", d.Queue, d.Reason, got, ok)
		}
		checkQueueHelpers(t, deaths, d.Queue)
	}
	checkQueueHelpers(t, deaths, "")
	checkQueueHelpers(t, deaths, "no such queue")
}

// checkEntriesKept checks that every well-formed entry is read: a table with
// a non-empty string queue and reason can be found, with its int64 count and
// its string routing keys, and that entries that are not tables are skipped.
func checkEntriesKept(t *testing.T, list []any, deaths dlxretry.Deaths) {
	t.Helper()
	seen := map[[2]string]bool{}
	tables := 0
	for _, item := range list {
		e, ok := wireTable(item)
		if !ok {
			continue
		}
		tables++
		q, qok := stringOrBytes(e["queue"])
		r, rok := stringOrBytes(e["reason"])
		key := [2]string{q, r}
		if !qok || !rok || q == "" || r == "" || seen[key] {
			continue
		}
		seen[key] = true // Find returns the first entry for key
		d, found := deaths.Find(q, r)
		if !found {
			t.Fatalf("well-formed entry %v not found", e)
		}
		if n, ok := e["count"].(int64); ok && d.Count != n {
			t.Fatalf("entry %v: Count = %d, want %d", e, d.Count, n)
		}
		if keys, ok := allStrings(e["routing-keys"]); ok && !sameStrings(d.RoutingKeys, keys) {
			t.Fatalf("entry %v: RoutingKeys = %q, want %q", e, d.RoutingKeys, keys)
		}
	}
	if len(deaths) > tables {
		t.Fatalf("%d deaths from %d table entries", len(deaths), tables)
	}
}

func wireTable(v any) (amqp.Table, bool) {
	switch t := v.(type) {
	case amqp.Table:
		return t, true
	case map[string]any:
		return t, true
	}
	return nil, false
}

func stringOrBytes(v any) (string, bool) {
	switch s := v.(type) {
	case string:
		return s, true
	case []byte:
		return string(s), true
	}
	return "", false
}

func checkQueueHelpers(t *testing.T, deaths dlxretry.Deaths, queue string) {
	t.Helper()
	n := deaths.Rejections(queue)
	d, found := deaths.Find(queue, dlxretry.ReasonRejected)
	switch {
	case n < 0:
		t.Fatalf("Rejections(%q) = %d < 0", queue, n)
	case !found && n != 0:
		t.Fatalf("Rejections(%q) = %d without a rejected entry", queue, n)
	case found && n != max(d.Count, 0):
		t.Fatalf("Rejections(%q) = %d, entry count %d", queue, n, d.Count)
	}
	key, ok := deaths.OriginalRoutingKey(queue)
	switch {
	case !ok && key != "":
		t.Fatalf("OriginalRoutingKey(%q) = %q, false", queue, key)
	case ok && (!found || len(d.RoutingKeys) == 0 || key != d.RoutingKeys[0]):
		t.Fatalf("OriginalRoutingKey(%q) = %q, but the rejected entry is %+v", queue, key, d)
	case !ok && found && len(d.RoutingKeys) > 0:
		t.Fatalf("OriginalRoutingKey(%q) not found, but the rejected entry is %+v", queue, d)
	}
}

func allStrings(v any) ([]string, bool) {
	list, ok := v.([]any)
	if !ok {
		return nil, false
	}
	out := make([]string, 0, len(list))
	for _, x := range list {
		s, ok := x.(string)
		if !ok {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

func sameStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// The AMQP 0-9-1 field-table codec below is the subset of the wire format
// that RabbitMQ and amqp091-go use, with amqp091-go's mapping of field types
// to Go types ('i' is a uint32, 'T' whole seconds). The decoder bounds every
// length by the bytes left and nests at most wireMaxDepth deep, so it returns
// an error, never panics, on any input.

var errWire = errors.New("malformed field table")

const wireMaxDepth = 32

type wireReader struct {
	buf   []byte
	depth int
}

// decodeWireTable decodes a field table: a 32-bit byte length, then pairs of
// short-string name and typed value. Trailing bytes are an error.
func decodeWireTable(b []byte) (amqp.Table, error) {
	r := &wireReader{buf: b}
	t, err := r.table()
	if err != nil {
		return nil, err
	}
	if len(r.buf) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the table", errWire, len(r.buf))
	}
	return t, nil
}

func (r *wireReader) take(n uint64) ([]byte, error) {
	if n > uint64(len(r.buf)) {
		return nil, fmt.Errorf("%w: %d bytes wanted, %d left", errWire, n, len(r.buf))
	}
	b := r.buf[:n:n]
	r.buf = r.buf[n:]
	return b, nil
}

func (r *wireReader) num(size int) (uint64, error) {
	b, err := r.take(uint64(size))
	if err != nil {
		return 0, err
	}
	var n uint64
	for _, c := range b {
		n = n<<8 | uint64(c)
	}
	return n, nil
}

// sized reads a 32-bit length and that many bytes, as a reader one level deeper.
func (r *wireReader) sized() (*wireReader, error) {
	if r.depth >= wireMaxDepth {
		return nil, fmt.Errorf("%w: nested deeper than %d", errWire, wireMaxDepth)
	}
	n, err := r.num(4)
	if err != nil {
		return nil, err
	}
	b, err := r.take(n)
	if err != nil {
		return nil, err
	}
	return &wireReader{buf: b, depth: r.depth + 1}, nil
}

func (r *wireReader) table() (amqp.Table, error) {
	sub, err := r.sized()
	if err != nil {
		return nil, err
	}
	t := amqp.Table{}
	for len(sub.buf) > 0 {
		n, err := sub.num(1)
		if err != nil {
			return nil, err
		}
		key, err := sub.take(n)
		if err != nil {
			return nil, err
		}
		if t[string(key)], err = sub.field(); err != nil {
			return nil, err
		}
	}
	return t, nil
}

func (r *wireReader) array() ([]any, error) {
	sub, err := r.sized()
	if err != nil {
		return nil, err
	}
	var list []any
	for len(sub.buf) > 0 {
		v, err := sub.field()
		if err != nil {
			return nil, err
		}
		list = append(list, v)
	}
	return list, nil
}

func (r *wireReader) bytes() ([]byte, error) {
	n, err := r.num(4)
	if err != nil {
		return nil, err
	}
	return r.take(n)
}

func (r *wireReader) field() (any, error) {
	typ, err := r.num(1)
	if err != nil {
		return nil, err
	}
	switch typ {
	case 'A':
		return r.array()
	case 'F':
		return r.table()
	case 'S':
		s, err := r.bytes()
		return string(s), err
	case 'x':
		b, err := r.bytes()
		return bytes.Clone(b), err
	case 'V':
		return nil, nil
	case 'D':
		scale, err := r.num(1)
		if err != nil {
			return nil, err
		}
		v, err := r.num(4)
		return amqp.Decimal{Scale: uint8(scale), Value: int32(v)}, err
	}
	return r.number(byte(typ))
}

func (r *wireReader) number(typ byte) (any, error) {
	size := map[byte]int{'t': 1, 'b': 1, 'B': 1, 's': 2, 'u': 2, 'I': 4, 'i': 4, 'f': 4, 'l': 8, 'd': 8, 'T': 8}[typ]
	if size == 0 {
		return nil, fmt.Errorf("%w: unknown field type %q", errWire, typ)
	}
	n, err := r.num(size)
	if err != nil {
		return nil, err
	}
	switch typ {
	case 't':
		return n != 0, nil
	case 'b':
		return int8(n), nil
	case 'B':
		return uint8(n), nil
	case 's':
		return int16(n), nil
	case 'u':
		return uint16(n), nil
	case 'I':
		return int32(n), nil
	case 'i':
		return uint32(n), nil
	case 'f':
		return math.Float32frombits(uint32(n)), nil
	case 'l':
		return int64(n), nil
	case 'd':
		return math.Float64frombits(n), nil
	}
	return time.Unix(int64(n), 0), nil // 'T'
}

// encodeWireTable encodes t as a field table, names in sorted order so that
// the encoding is deterministic. It takes the Go types decodeWireTable
// returns, plus int (as 'l') and map[string]any (as 'F').
func encodeWireTable(t amqp.Table) ([]byte, error) {
	var w bytes.Buffer
	err := writeWireTable(&w, t)
	return w.Bytes(), err
}

func writeWireTable(w *bytes.Buffer, t amqp.Table) error {
	keys := make([]string, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var body bytes.Buffer
	for _, k := range keys {
		if len(k) > math.MaxUint8 {
			return fmt.Errorf("field name of %d bytes", len(k))
		}
		body.WriteByte(byte(len(k)))
		body.WriteString(k)
		if err := writeWireField(&body, t[k]); err != nil {
			return fmt.Errorf("field %q: %w", k, err)
		}
	}
	return writeWireSized(w, body.Bytes())
}

func writeWireSized(w *bytes.Buffer, b []byte) error {
	if uint64(len(b)) > math.MaxUint32 {
		return fmt.Errorf("%d bytes do not fit a 32-bit length", len(b))
	}
	w.Write(binary.BigEndian.AppendUint32(nil, uint32(len(b))))
	w.Write(b)
	return nil
}

func writeWireField(w *bytes.Buffer, v any) error {
	switch v := v.(type) {
	case []any:
		var body bytes.Buffer
		for i, x := range v {
			if err := writeWireField(&body, x); err != nil {
				return fmt.Errorf("element %d: %w", i, err)
			}
		}
		w.WriteByte('A')
		return writeWireSized(w, body.Bytes())
	case amqp.Table:
		w.WriteByte('F')
		return writeWireTable(w, v)
	case map[string]any:
		w.WriteByte('F')
		return writeWireTable(w, v)
	case string:
		w.WriteByte('S')
		return writeWireSized(w, []byte(v))
	case []byte:
		w.WriteByte('x')
		return writeWireSized(w, v)
	case nil:
		w.WriteByte('V')
		return nil
	case amqp.Decimal:
		w.WriteByte('D')
		w.WriteByte(v.Scale)
		w.Write(binary.BigEndian.AppendUint32(nil, uint32(v.Value)))
		return nil
	}
	return writeWireNumber(w, v)
}

func writeWireNumber(w *bytes.Buffer, v any) error {
	var typ byte
	var n uint64
	var size int
	switch v := v.(type) {
	case bool:
		typ, size = 't', 1
		if v {
			n = 1
		}
	case int8:
		typ, size, n = 'b', 1, uint64(uint8(v))
	case uint8:
		typ, size, n = 'B', 1, uint64(v)
	case int16:
		typ, size, n = 's', 2, uint64(uint16(v))
	case uint16:
		typ, size, n = 'u', 2, uint64(v)
	case int32:
		typ, size, n = 'I', 4, uint64(uint32(v))
	case uint32:
		typ, size, n = 'i', 4, uint64(v)
	case float32:
		typ, size, n = 'f', 4, uint64(math.Float32bits(v))
	case int64:
		typ, size, n = 'l', 8, uint64(v)
	case int:
		typ, size, n = 'l', 8, uint64(int64(v))
	case float64:
		typ, size, n = 'd', 8, math.Float64bits(v)
	case time.Time:
		typ, size, n = 'T', 8, uint64(v.Unix())
	default:
		return fmt.Errorf("no field type for %T", v)
	}
	w.WriteByte(typ)
	for i := size - 1; i >= 0; i-- {
		w.WriteByte(byte(n >> (8 * i)))
	}
	return nil
}
