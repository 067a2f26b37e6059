package parked

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"mime"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Body kinds, by how a body reads.
const (
	KindEmpty  = "empty"
	KindJSON   = "json"   // JSON, indented
	KindText   = "text"   // UTF-8 text, as it is
	KindBinary = "binary" // anything else, as a hex dump
)

// Body is a message body as an operator reads it.
type Body struct {
	Kind string
	Text string // indented JSON, the text, or a hex dump
	Cut  int    // bytes of the body left out to keep Text within the limit
}

// FormatBody renders body by its content type: JSON indented, text as
// text, anything else as a hex dump. Without a content type, a body that
// parses as JSON is JSON and printable UTF-8 is text. At most limit bytes
// of the body are shown (0: all).
func FormatBody(contentType string, body []byte, limit int) Body {
	switch kind := kindOf(contentType, body); kind {
	case KindEmpty:
		return Body{Kind: kind}
	case KindJSON:
		var buf bytes.Buffer
		if len(body) <= limit || limit == 0 {
			if json.Indent(&buf, body, "", "  ") == nil {
				return Body{Kind: kind, Text: buf.String()}
			}
		}
		return cutText(KindJSON, body, limit)
	case KindText:
		return cutText(kind, body, limit)
	}
	shown := body
	if limit > 0 && len(shown) > limit {
		shown = shown[:limit]
	}
	return Body{Kind: KindBinary, Text: hex.Dump(shown), Cut: len(body) - len(shown)}
}

// cutText keeps at most limit bytes of body, without splitting a rune.
func cutText(kind string, body []byte, limit int) Body {
	if limit == 0 || len(body) <= limit {
		return Body{Kind: kind, Text: string(body)}
	}
	n := limit
	for n > 0 && !utf8.RuneStart(body[n]) {
		n--
	}
	return Body{Kind: kind, Text: string(body[:n]), Cut: len(body) - n}
}

func kindOf(contentType string, body []byte) string {
	if len(body) == 0 {
		return KindEmpty
	}
	media, _, err := mime.ParseMediaType(contentType)
	switch {
	case err != nil || media == "":
		return sniff(body)
	case isJSON(media) && json.Valid(body):
		return KindJSON
	case isText(media) && printable(body):
		return KindText
	}
	return KindBinary
}

func isJSON(media string) bool {
	return media == "application/json" || media == "text/json" || strings.HasSuffix(media, "+json")
}

func isText(media string) bool {
	switch {
	case strings.HasPrefix(media, "text/"), isJSON(media), strings.HasSuffix(media, "+xml"):
		return true
	}
	switch media {
	case "application/xml", "application/yaml", "application/x-yaml", "application/x-www-form-urlencoded", "application/javascript":
		return true
	}
	return false
}

// sniff tells the kind of a body without a content type.
func sniff(body []byte) string {
	trimmed := bytes.TrimSpace(body)
	switch {
	case len(trimmed) > 0 && (trimmed[0] == '{' || trimmed[0] == '[') && json.Valid(body):
		return KindJSON
	case printable(body):
		return KindText
	}
	return KindBinary
}

// printable tells UTF-8 text without control characters other than white space.
func printable(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for _, r := range string(b) {
		if unicode.IsControl(r) && !unicode.IsSpace(r) {
			return false
		}
	}
	return true
}

// MarshalMessage is m as JSON for people and scripts: the fields of
// [parkinglot.Message], with the body as JSON when it is JSON, as a
// string when it is text, and in base64 otherwise, as body_encoding says
// ("json", "text" or "base64"), and the parsed death history as deaths.
// [Restore] reads it back, as it reads what Drop writes.
func MarshalMessage(m Message) ([]byte, error) {
	plain, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(plain))
	dec.UseNumber()
	var fields map[string]any
	if err := dec.Decode(&fields); err != nil {
		return nil, err
	}
	fields["body"], fields["body_encoding"] = bodyValue(m)
	deaths, _ := Deaths(m)
	fields["deaths"] = deathsJSON(deaths)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // error texts and bodies keep <, > and &
	if err := enc.Encode(fields); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// bodyValue is m's body as MarshalMessage writes it, and its encoding.
func bodyValue(m Message) (body any, encoding string) {
	switch kindOf(m.ContentType, m.Body) {
	case KindJSON:
		var buf bytes.Buffer
		if json.Compact(&buf, m.Body) == nil {
			return json.RawMessage(buf.Bytes()), "json"
		}
	case KindText, KindEmpty:
		return string(m.Body), "text"
	}
	return m.Body, "base64" // []byte: base64
}

// deathJSON is a Death with JSON names.
type deathJSON struct {
	Queue       string   `json:"queue"`
	Reason      string   `json:"reason"`
	Count       int64    `json:"count"`
	Time        string   `json:"time,omitempty"`
	Exchange    string   `json:"exchange"`
	RoutingKeys []string `json:"routing_keys"`
}

func deathsJSON(ds []Death) []deathJSON {
	out := make([]deathJSON, 0, len(ds))
	for _, d := range ds {
		dj := deathJSON{Queue: d.Queue, Reason: d.Reason, Count: d.Count, Exchange: d.Exchange, RoutingKeys: d.RoutingKeys}
		if !d.Time.IsZero() {
			dj.Time = d.Time.UTC().Format("2006-01-02T15:04:05Z07:00")
		}
		out = append(out, dj)
	}
	return out
}

// HeaderText shows a header value as text: strings and UTF-8 byte arrays
// as they are, other byte arrays in hex, timestamps in RFC 3339, anything
// else as Go prints it.
func HeaderText(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []byte:
		if utf8.Valid(x) {
			return string(x)
		}
		return hex.EncodeToString(x)
	case time.Time:
		return x.UTC().Format(time.RFC3339)
	case nil:
		return "(void)"
	}
	return fmt.Sprint(v)
}
