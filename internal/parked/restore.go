package parked

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dlxretry/dlxretry"
)

// RestoreReport says what Restore did.
type RestoreReport struct {
	Lines    int            `json:"lines"`    // messages read
	Restored int            `json:"restored"` // messages published back: 0 in a dry run
	Lots     map[string]int `json:"lots"`     // messages read per work queue
}

// Restore publishes the messages in r back to their parking lots: r holds
// JSON lines as [parkinglot.Lot.Drop] writes them (or as
// [MarshalMessage] does). Each goes to the parking exchange of queue or,
// when queue is "", of the work queue its line names, with the routing key
// it was parked with, its headers, body and the properties the line keeps
// (content type, message id, correlation id, timestamp), persistent, with
// confirms and as mandatory. JSON keeps no header types: Restore gives
// back timestamps and integers to the headers dlxretry writes and to the
// x-death entries; other headers keep what JSON made of them (numbers,
// strings). It stops at the first line it cannot read or publish; the
// report says how far it got. A dry run reads every line and publishes
// none. progress, when not nil, is called after each message.
func Restore(ctx context.Context, conn *dlxretry.Conn, r io.Reader, queue string, dryRun bool, progress func(RestoreReport)) (RestoreReport, error) {
	rep := RestoreReport{Lots: map[string]int{}}
	var pub *dlxretry.Publisher
	if !dryRun {
		p, err := dlxretry.NewPublisher(conn)
		if err != nil {
			return rep, err
		}
		defer p.Close()
		pub = p
	}
	br := bufio.NewReader(r)
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			if perr := restoreLine(ctx, pub, line, queue, &rep); perr != nil {
				return rep, fmt.Errorf("line %d: %w", n, perr)
			}
			if progress != nil {
				progress(rep)
			}
		}
		switch {
		case errors.Is(err, io.EOF):
			return rep, nil
		case err != nil:
			return rep, err
		}
	}
}

func restoreLine(ctx context.Context, pub *dlxretry.Publisher, line []byte, queue string, rep *RestoreReport) error {
	m, err := ReadLine(line)
	if err != nil {
		return err
	}
	if queue == "" {
		queue = m.Queue
	}
	if queue == "" {
		return errors.New("the message names no work queue; give the queue")
	}
	rep.Lines++
	rep.Lots[queue]++
	if pub == nil {
		return nil
	}
	msg := amqp.Publishing{
		Headers:       m.Headers,
		ContentType:   m.ContentType,
		DeliveryMode:  amqp.Persistent,
		CorrelationId: m.CorrelationID,
		MessageId:     m.MessageID,
		Timestamp:     m.Timestamp,
		Body:          m.Body,
	}
	exchange := dlxretry.Topology{Queue: queue}.ParkingExchange()
	if err := pub.Publish(ctx, exchange, m.RoutingKey, msg); err != nil {
		return err
	}
	rep.Restored++
	return nil
}

// ReadLine reads one JSON line as Drop or MarshalMessage writes it.
func ReadLine(line []byte) (Message, error) {
	var v struct {
		Message
		Body         json.RawMessage `json:"body"`
		BodyEncoding string          `json:"body_encoding"`
	}
	if err := json.Unmarshal(line, &v); err != nil {
		return Message{}, fmt.Errorf("not a parked message: %w", err)
	}
	m := v.Message
	var err error
	if m.Body, err = decodeBody(v.Body, v.BodyEncoding); err != nil {
		return Message{}, err
	}
	m.Headers = restoreTable(m.Headers)
	return m, nil
}

func decodeBody(raw json.RawMessage, encoding string) ([]byte, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	switch encoding {
	case "json":
		return raw, nil
	case "text":
		var s string
		err := json.Unmarshal(raw, &s)
		return []byte(s), err
	case "", "base64":
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, fmt.Errorf("body: %w", err)
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("body: %w", err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("unknown body_encoding %q", encoding)
}

// timeHeaders are the headers (and x-death fields) that restoreTable turns
// back into timestamps.
var timeHeaders = map[string]bool{dlxretry.HeaderParkedAt: true, "time": true}

// restoreTable gives a table decoded from JSON the types AMQP needs: nested
// objects become tables, whole numbers int64 (as the counts dlxretry and
// the broker write are), and their timestamps time.Time.
func restoreTable(t amqp.Table) amqp.Table {
	if t == nil {
		return nil
	}
	out := make(amqp.Table, len(t))
	for k, v := range t {
		out[k] = restoreValue(k, v)
	}
	return out
}

func restoreValue(key string, v any) any {
	switch x := v.(type) {
	case map[string]any:
		return restoreTable(x)
	case amqp.Table:
		return restoreTable(x)
	case []any:
		out := make([]any, len(x))
		for i, item := range x {
			out[i] = restoreValue("", item)
		}
		return out
	case string:
		if timeHeaders[key] {
			if t, err := time.Parse(time.RFC3339Nano, x); err == nil {
				return t
			}
		}
		return x
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return int64(x)
		}
		return x
	}
	return v
}
