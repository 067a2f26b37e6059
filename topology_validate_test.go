package dlxretry_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dlxretry/dlxretry"
)

// validTopology is the smallest valid Topology; cases change one field of it.
func validTopology() dlxretry.Topology {
	return dlxretry.Topology{Queue: "orders", Delays: []time.Duration{time.Second}, MaxAttempts: 3}
}

// longestDelay is the longest x-message-ttl a tier may have: 2^31-1 ms.
const longestDelay = (1<<31 - 1) * time.Millisecond

func TestTopologyValidate(t *testing.T) {
	tests := []struct {
		name      string
		change    func(*dlxretry.Topology)
		wantField string // "" for valid
	}{
		{name: "minimal", change: func(*dlxretry.Topology) {}},
		{name: "everything set", change: func(tp *dlxretry.Topology) {
			tp.Delays = []time.Duration{time.Millisecond, time.Minute, longestDelay}
			tp.Type = dlxretry.Quorum
			tp.Exchange, tp.ExchangeKind, tp.BindingKeys = "events", "direct", []string{"order.created", "order.updated"}
			tp.Bindings = []dlxretry.Binding{{Exchange: "amq.topic", Key: "#"}, {Exchange: "legacy"}}
		}},
		{name: "classic", change: func(tp *dlxretry.Topology) { tp.Type = dlxretry.Classic }},
		{name: "queue of 200 bytes", change: func(tp *dlxretry.Topology) { tp.Queue = strings.Repeat("q", 200) }},
		{name: "headers exchange", change: func(tp *dlxretry.Topology) { tp.Exchange, tp.ExchangeKind = "events", "headers" }},

		{name: "no queue", change: func(tp *dlxretry.Topology) { tp.Queue = "" }, wantField: "Topology.Queue"},
		{name: "queue too long", change: func(tp *dlxretry.Topology) { tp.Queue = strings.Repeat("q", 201) }, wantField: "Topology.Queue"},
		{name: "reserved queue name", change: func(tp *dlxretry.Topology) { tp.Queue = "amq.orders" }, wantField: "Topology.Queue"},
		{name: "no delays", change: func(tp *dlxretry.Topology) { tp.Delays = nil }, wantField: "Topology.Delays"},
		{name: "empty delays", change: func(tp *dlxretry.Topology) { tp.Delays = []time.Duration{} }, wantField: "Topology.Delays"},
		{name: "zero delay", change: func(tp *dlxretry.Topology) { tp.Delays = []time.Duration{0} }, wantField: "Topology.Delays[0]"},
		{name: "negative delay", change: func(tp *dlxretry.Topology) { tp.Delays = []time.Duration{time.Second, -time.Second} },
			wantField: "Topology.Delays[1]"},
		{name: "delay under 1ms", change: func(tp *dlxretry.Topology) { tp.Delays = []time.Duration{999 * time.Microsecond} },
			wantField: "Topology.Delays[0]"},
		{name: "delay not whole milliseconds", change: func(tp *dlxretry.Topology) {
			tp.Delays = []time.Duration{time.Second, 2 * time.Second, 1500 * time.Microsecond}
		}, wantField: "Topology.Delays[2]"},
		{name: "delay too long", change: func(tp *dlxretry.Topology) {
			tp.Delays = []time.Duration{time.Second, longestDelay + time.Millisecond}
		}, wantField: "Topology.Delays[1]"},
		{name: "zero max attempts", change: func(tp *dlxretry.Topology) { tp.MaxAttempts = 0 }, wantField: "Topology.MaxAttempts"},
		{name: "negative max attempts", change: func(tp *dlxretry.Topology) { tp.MaxAttempts = -1 }, wantField: "Topology.MaxAttempts"},
		{name: "unknown type", change: func(tp *dlxretry.Topology) { tp.Type = "stream" }, wantField: "Topology.Type"},
		{name: "type in capitals", change: func(tp *dlxretry.Topology) { tp.Type = "Quorum" }, wantField: "Topology.Type"},
		{name: "exchange kind without exchange", change: func(tp *dlxretry.Topology) { tp.ExchangeKind = "topic" },
			wantField: "Topology.Exchange"},
		{name: "binding keys without exchange", change: func(tp *dlxretry.Topology) { tp.BindingKeys = []string{"#"} },
			wantField: "Topology.Exchange"},
		{name: "reserved exchange name", change: func(tp *dlxretry.Topology) { tp.Exchange = "amq.topic" },
			wantField: "Topology.Exchange"},
		{name: "exchange too long", change: func(tp *dlxretry.Topology) { tp.Exchange = strings.Repeat("x", 201) },
			wantField: "Topology.Exchange"},
		{name: "unknown exchange kind", change: func(tp *dlxretry.Topology) { tp.Exchange, tp.ExchangeKind = "events", "x-delayed-message" },
			wantField: "Topology.ExchangeKind"},
		{name: "binding to the default exchange", change: func(tp *dlxretry.Topology) {
			tp.Bindings = []dlxretry.Binding{{Exchange: "events", Key: "a"}, {Exchange: "", Key: "orders"}}
		}, wantField: "Topology.Bindings[1].Exchange"},
		{name: "first invalid field reported", change: func(tp *dlxretry.Topology) { tp.Queue, tp.MaxAttempts = "", 0 },
			wantField: "Topology.Queue"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			topo := validTopology()
			tt.change(&topo)
			checkConfigError(t, topo.Validate(), tt.wantField)
		})
	}
}

func checkConfigError(t *testing.T, err error, wantField string) {
	t.Helper()
	if wantField == "" {
		if err != nil {
			t.Fatalf("error = %v, want nil", err)
		}
		return
	}
	var ce *dlxretry.ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("error = %v (%T), want a *ConfigError", err, err)
	}
	if ce.Field != wantField {
		t.Errorf("Field = %q, want %q (error %q)", ce.Field, wantField, err)
	}
	if ce.Problem == "" || !strings.Contains(err.Error(), wantField) {
		t.Errorf("error %q does not say what is wrong with %s", err, wantField)
	}
}

// Declare and Delete validate before they touch the channel.
func TestTopologyValidateBeforeDeclare(t *testing.T) {
	topo := validTopology()
	topo.MaxAttempts = 0
	checkConfigError(t, topo.Declare(context.Background(), nil), "Topology.MaxAttempts")
	checkConfigError(t, topo.Delete(context.Background(), nil), "Topology.MaxAttempts")
}
