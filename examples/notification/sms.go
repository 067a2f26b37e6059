package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sync"

	"github.com/dlxretry/dlxretry"
)

// SMS is the message the notification exchange carries with key mobile.
type SMS struct {
	To   string `json:"to"`
	Text string `json:"text"`
}

// phoneNumber is an E.164 number: +, a country code, at most 15 digits.
var phoneNumber = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)

var errGatewayBusy = errors.New("SMS gateway busy")

// gateway stands for an SMS provider that is busy for some numbers: it
// refuses the first busy[number] sends to a number (forever: all of them),
// and records what it sent.
type gateway struct {
	mu    sync.Mutex
	busy  map[string]int
	tries map[string]int
	sent  map[string]int
}

const forever = -1

func newGateway(busy map[string]int) *gateway {
	return &gateway{busy: busy, tries: map[string]int{}, sent: map[string]int{}}
}

// handle is the dlxretry.Handler. Invalid data will not get better, so it is
// a permanent error and the message is parked at once, with the reason; a
// busy gateway is a resource that will be back, so the message is retried.
func (g *gateway) handle(ctx context.Context, d *dlxretry.Delivery) error {
	var sms SMS
	if err := json.Unmarshal(d.Body, &sms); err != nil {
		return dlxretry.Permanent(fmt.Errorf("unreadable SMS: %w", err))
	}
	if !phoneNumber.MatchString(sms.To) {
		return dlxretry.Permanent(fmt.Errorf("invalid phone number %q", sms.To))
	}
	return g.send(ctx, sms)
}

func (g *gateway) send(ctx context.Context, sms SMS) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.tries[sms.To]++
	if n := g.busy[sms.To]; n == forever || g.tries[sms.To] <= n {
		return errGatewayBusy
	}
	g.sent[sms.To]++
	return nil
}

// sentTo is how many SMS the gateway sent to each number.
func (g *gateway) sentTo() map[string]int {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[string]int, len(g.sent))
	for k, v := range g.sent {
		out[k] = v
	}
	return out
}
