package telemetry

import (
	"context"
	"log/slog"
	"unicode/utf8"
)

// DefaultCaptureBytes caps each captured prompt and completion.
const DefaultCaptureBytes = 4096

// RequestLog writes one line per request at info level with the fields of
// the request log (SPEC §13). With the node's JSON handler it is one JSON
// object per line.
type RequestLog struct {
	log *slog.Logger
	// capture is the cap on captured content; 0 = not captured.
	capture int
}

// NewRequestLog logs through l. captureBytes > 0 adds the captured prompt
// and completion, each cut to that many bytes.
func NewRequestLog(l *slog.Logger, captureBytes int) *RequestLog {
	return &RequestLog{log: l, capture: max(captureBytes, 0)}
}

// Capture reports whether the log wants content: the front end then fills
// Request.Prompt and Completion.
func (l *RequestLog) Capture() bool { return l != nil && l.capture > 0 }

// Observe implements Observer.
func (l *RequestLog) Observe(ctx context.Context, r *Request) {
	if !l.log.Enabled(ctx, slog.LevelInfo) {
		return
	}
	attrs := make([]slog.Attr, 0, 20)
	attrs = append(attrs,
		slog.String("request_id", r.RequestID),
		slog.String("consumer", r.Consumer),
		slog.String("user", r.User),
		slog.String("route", r.Route),
		slog.String("op", r.Op),
		slog.String("backend", r.Backend),
		slog.Int("status", r.Status),
		slog.Int64("prompt_tokens", r.PromptTokens),
		slog.Int64("completion_tokens", r.CompletionTokens),
		slog.String("cache", r.Cache),
	)
	if r.Cache == "hit" {
		attrs = append(attrs, slog.Float64("cache_distance", r.Distance))
	} else {
		attrs = append(attrs, slog.Any("cache_distance", nil))
	}
	attrs = append(attrs,
		slog.Float64("duration_ms", millis(r.Duration.Nanoseconds())),
		slog.Float64("upstream_ms", millis(r.Upstream.Nanoseconds())),
		slog.String("refusal", r.Refusal),
	)
	if r.CachedTokens > 0 {
		attrs = append(attrs, slog.Int64("cached_tokens", r.CachedTokens))
	}
	if r.Saved > 0 {
		attrs = append(attrs, slog.Int64("tokens_saved", r.Saved))
	}
	if r.Aborted != "" {
		attrs = append(attrs, slog.String("aborted", r.Aborted))
	}
	if r.Credential != "" {
		attrs = append(attrs, slog.String("credential", r.Credential))
	}
	if r.Attempts > 1 {
		attrs = append(attrs, slog.Int("attempts", r.Attempts))
	}
	if l.capture > 0 {
		if r.Prompt != nil {
			attrs = append(attrs, slog.String("prompt", capped(r.Prompt, l.capture)))
		}
		if r.Completion != nil {
			attrs = append(attrs, slog.String("completion", capped(r.Completion, l.capture)))
		}
	}
	l.log.LogAttrs(ctx, slog.LevelInfo, "request", attrs...)
}

// millis is a duration in milliseconds with microsecond precision.
func millis(ns int64) float64 { return float64(ns/1000) / 1000 }

// capped cuts b to at most n bytes without splitting a UTF-8 sequence.
func capped(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(b[cut]) {
		cut--
	}
	return string(b[:cut]) + "…"
}
