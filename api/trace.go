package api

import (
	"context"
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/llmgate/llmgate/internal/openai"
	"github.com/llmgate/llmgate/telemetry"
)

// startTrace starts a request's server span, the child of the client's W3C
// traceparent when it sent one.
func (a *API) startTrace(ctx context.Context, h http.Header, op openai.Operation) (context.Context, trace.Span) {
	if len(h["Traceparent"]) > 0 {
		ctx = propagation.TraceContext{}.Extract(ctx, propagation.HeaderCarrier(h))
	}
	return a.opts.Tracer.Start(ctx, op.String(), a.serverSpan...)
}

// endTrace names the span after the OpenTelemetry GenAI conventions
// ("{operation} {model}") and records what the request came to. A span of
// a trace not sampled records nothing: nothing is built for it.
func (a *API) endTrace(span trace.Span, r *telemetry.Request) {
	if !span.IsRecording() {
		span.End()
		return
	}
	if r.Route != "" {
		span.SetName(r.Op + " " + r.Route)
	}
	// The attributes go in one call, from a pooled array: passed through the
	// Span interface, a slice made here would be one more allocation per
	// request. The SDK's span copies them.
	buf, _ := a.spanAttrs.Get().(*[spanAttrsMax]attribute.KeyValue)
	if buf == nil {
		buf = new([spanAttrsMax]attribute.KeyValue)
	}
	attrs := append(buf[:0],
		attribute.String("gen_ai.operation.name", r.Op),
		attribute.String("gen_ai.request.model", r.Route),
		attribute.Int64("gen_ai.usage.input_tokens", r.PromptTokens),
		attribute.Int64("gen_ai.usage.output_tokens", r.CompletionTokens),
		attribute.Int("http.response.status_code", r.Status),
		attribute.String("llmgate.cache", r.Cache),
		attribute.String("llmgate.request_id", r.RequestID),
	)
	if r.ResponseID != "" {
		attrs = append(attrs, attribute.String("gen_ai.response.id", r.ResponseID))
	}
	if r.Consumer != "" {
		attrs = append(attrs, attribute.String("llmgate.consumer", r.Consumer))
	}
	if r.Backend != "" {
		attrs = append(attrs, attribute.String("llmgate.backend", r.Backend))
	}
	if r.Refusal != "" {
		attrs = append(attrs, attribute.String("error.type", r.Refusal))
	}
	span.SetAttributes(attrs...)
	clear(buf[:]) // the strings are not kept alive by the pool
	a.spanAttrs.Put(buf)
	switch {
	case r.Refusal != "":
		span.SetStatus(codes.Error, r.Refusal)
	case r.Status >= 500:
		span.SetStatus(codes.Error, http.StatusText(r.Status))
	}
	span.End()
}

// spanAttrsMax is the most attributes endTrace sets.
const spanAttrsMax = 11
