package dlxotel

import (
	"context"

	"github.com/dlxretry/dlxretry"
)

// Merge returns hooks that call those of each of hooks in the order given:
// for example Merge(dlxotel.Hooks(), metrics, mine), so that the handler and
// every later hook see this package's span. OnDelivery calls are chained: each
// gets the context the previous one returned (or its own ctx if that was
// nil), and the last context is the handler's and the outcome hooks'. A field
// that no hook sets stays nil.
func Merge(hooks ...dlxretry.Hooks) dlxretry.Hooks {
	var m dlxretry.Hooks
	m.OnDelivery = mergeDelivery(hooks)
	m.OnAck = merge(hooks, func(h dlxretry.Hooks) func(context.Context, dlxretry.AckEvent) { return h.OnAck })
	m.OnRetry = merge(hooks, func(h dlxretry.Hooks) func(context.Context, dlxretry.RetryEvent) { return h.OnRetry })
	m.OnPark = merge(hooks, func(h dlxretry.Hooks) func(context.Context, dlxretry.ParkEvent) { return h.OnPark })
	m.OnRelease = merge(hooks, func(h dlxretry.Hooks) func(context.Context, dlxretry.ReleaseEvent) { return h.OnRelease })
	m.OnPublish = merge(hooks, func(h dlxretry.Hooks) func(context.Context, dlxretry.PublishEvent) { return h.OnPublish })
	m.OnConnect = mergeEvent(hooks, func(h dlxretry.Hooks) func(dlxretry.ConnectEvent) { return h.OnConnect })
	m.OnDisconnect = mergeEvent(hooks, func(h dlxretry.Hooks) func(dlxretry.DisconnectEvent) { return h.OnDisconnect })
	return m
}

func mergeDelivery(hooks []dlxretry.Hooks) func(context.Context, dlxretry.DeliveryEvent) context.Context {
	var fs []func(context.Context, dlxretry.DeliveryEvent) context.Context
	for _, h := range hooks {
		if h.OnDelivery != nil {
			fs = append(fs, h.OnDelivery)
		}
	}
	if len(fs) == 0 {
		return nil
	}
	return func(ctx context.Context, e dlxretry.DeliveryEvent) context.Context {
		for _, f := range fs {
			if next := f(ctx, e); next != nil {
				ctx = next
			}
		}
		return ctx
	}
}

// merge chains one outcome hook of each of hooks; field picks it.
func merge[E any](hooks []dlxretry.Hooks, field func(dlxretry.Hooks) func(context.Context, E)) func(context.Context, E) {
	var fs []func(context.Context, E)
	for _, h := range hooks {
		if f := field(h); f != nil {
			fs = append(fs, f)
		}
	}
	if len(fs) == 0 {
		return nil
	}
	return func(ctx context.Context, e E) {
		for _, f := range fs {
			f(ctx, e)
		}
	}
}

// mergeEvent chains one connection hook of each of hooks.
func mergeEvent[E any](hooks []dlxretry.Hooks, field func(dlxretry.Hooks) func(E)) func(E) {
	var fs []func(E)
	for _, h := range hooks {
		if f := field(h); f != nil {
			fs = append(fs, f)
		}
	}
	if len(fs) == 0 {
		return nil
	}
	return func(e E) {
		for _, f := range fs {
			f(e)
		}
	}
}
