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
func endTrace(span trace.Span, r *telemetry.Request) {
	if !span.IsRecording() {
		span.End()
		return
	}
	if r.Route != "" {
		span.SetName(r.Op + " " + r.Route)
	}
	attrs := []attribute.KeyValue{
		attribute.String("gen_ai.operation.name", r.Op),
		attribute.String("gen_ai.request.model", r.Route),
		attribute.Int64("gen_ai.usage.input_tokens", r.PromptTokens),
		attribute.Int64("gen_ai.usage.output_tokens", r.CompletionTokens),
		attribute.Int("http.response.status_code", r.Status),
		attribute.String("llmgate.cache", r.Cache),
		attribute.String("llmgate.request_id", r.RequestID),
	}
	if r.ResponseID != "" {
		attrs = append(attrs, attribute.String("gen_ai.response.id", r.ResponseID))
	}
	if r.Consumer != "" {
		attrs = append(attrs, attribute.String("llmgate.consumer", r.Consumer))
	}
	if r.Backend != "" {
		attrs = append(attrs, attribute.String("llmgate.backend", r.Backend))
	}
	span.SetAttributes(attrs...)
	switch {
	case r.Refusal != "":
		span.SetAttributes(attribute.String("error.type", r.Refusal))
		span.SetStatus(codes.Error, r.Refusal)
	case r.Status >= 500:
		span.SetStatus(codes.Error, http.StatusText(r.Status))
	}
	span.End()
}
