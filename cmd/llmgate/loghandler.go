package main

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"sync/atomic"
)

// logFormat is the node's log handler: JSON or text (log.format) at the
// level of a LevelVar (log.level), both changed by a reload. Every logger
// derived from it (With, WithGroup) follows a change of format, so the
// components built once at start need not be rebuilt.
type logFormat struct {
	w    io.Writer
	opts *slog.HandlerOptions
	base atomic.Pointer[slog.Handler] // the handler of the current format
}

func newLogFormat(w io.Writer, lv *slog.LevelVar, format string) *logFormat {
	f := &logFormat{w: w, opts: &slog.HandlerOptions{Level: lv}}
	f.set(format)
	return f
}

// set switches the format ("text", else JSON) from the next record on.
func (f *logFormat) set(format string) {
	var h slog.Handler = slog.NewJSONHandler(f.w, f.opts)
	if format == "text" {
		h = slog.NewTextHandler(f.w, f.opts)
	}
	f.base.Store(&h)
}

func (f *logFormat) handler() slog.Handler { return &switchHandler{f: f} }

// switchHandler is a logger's view of logFormat: the attributes and groups
// it was derived with, replayed on the current format's handler (and kept
// until the format changes).
type switchHandler struct {
	f     *logFormat
	ops   []func(slog.Handler) slog.Handler
	built atomic.Pointer[builtHandler]
}

type builtHandler struct {
	base *slog.Handler
	h    slog.Handler
}

func (s *switchHandler) current() slog.Handler {
	base := s.f.base.Load()
	if b := s.built.Load(); b != nil && b.base == base {
		return b.h
	}
	h := *base
	for _, op := range s.ops {
		h = op(h)
	}
	s.built.Store(&builtHandler{base: base, h: h})
	return h
}

func (s *switchHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return s.current().Enabled(ctx, l)
}

func (s *switchHandler) Handle(ctx context.Context, r slog.Record) error {
	return s.current().Handle(ctx, r)
}

func (s *switchHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &switchHandler{f: s.f, ops: append(slices.Clip(s.ops), func(h slog.Handler) slog.Handler { return h.WithAttrs(as) })}
}

func (s *switchHandler) WithGroup(name string) slog.Handler {
	return &switchHandler{f: s.f, ops: append(slices.Clip(s.ops), func(h slog.Handler) slog.Handler { return h.WithGroup(name) })}
}
