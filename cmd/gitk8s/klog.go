package main

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"

	"k8s.io/klog/v2"
)

// klogTarget is the handler that client-go's own lines (leader election,
// watches) go to: the handler of the daemon that started last.
var klogTarget atomic.Pointer[slog.Handler]

var klogOnce sync.Once

// routeKlogTo sends klog's lines to logger's handler. klog's logger is a
// process-wide variable that klog reads without a lock, so it is set only
// once, to a handler that forwards to whichever handler was routed last;
// a second daemon in the same process (as in tests) switches the target
// without writing the variable informers of the first one still read.
func routeKlogTo(logger *slog.Logger) {
	h := logger.Handler()
	klogTarget.Store(&h)
	klogOnce.Do(func() {
		klog.SetSlogLogger(slog.New(forwardingHandler{}))
	})
}

// forwardingHandler is a slog.Handler that passes each record to the
// handler in klogTarget, with the attributes and groups given to it on
// the way applied to that handler at the time of the record.
type forwardingHandler struct {
	ops []func(slog.Handler) slog.Handler
}

func (f forwardingHandler) target() slog.Handler {
	p := klogTarget.Load()
	if p == nil {
		return slog.DiscardHandler
	}
	h := *p
	for _, op := range f.ops {
		h = op(h)
	}
	return h
}

// Enabled reports whether the current target handles level.
func (f forwardingHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return f.target().Enabled(ctx, level)
}

// Handle passes r to the current target.
func (f forwardingHandler) Handle(ctx context.Context, r slog.Record) error {
	return f.target().Handle(ctx, r)
}

// WithAttrs returns a handler that adds attrs to the target's records.
func (f forwardingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return forwardingHandler{ops: append(f.ops[:len(f.ops):len(f.ops)], func(h slog.Handler) slog.Handler { return h.WithAttrs(attrs) })}
}

// WithGroup returns a handler that puts the target's records in group name.
func (f forwardingHandler) WithGroup(name string) slog.Handler {
	return forwardingHandler{ops: append(f.ops[:len(f.ops):len(f.ops)], func(h slog.Handler) slog.Handler { return h.WithGroup(name) })}
}
