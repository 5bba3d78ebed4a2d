package node

import (
	"context"
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Tracing is optional: with no Options.Tracer the pipeline starts no spans,
// so tracing off costs one nil check per stage; a client's own W3C trace
// context still reaches the backends unchanged.

// spanKinds holds each span kind's start options, built once: a variadic
// call with a ready slice allocates nothing.
type spanKinds [trace.SpanKindConsumer + 1][]trace.SpanStartOption

func newSpanKinds() *spanKinds {
	var k spanKinds
	for i := range k {
		k[i] = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKind(i))}
	}
	return &k
}

// startSpan starts a child span of ctx's span. Without a tracer it starts
// nothing; when the trace is not sampled, the span (which records nothing)
// is in the returned context, for the traceparent sent upstream, but nil is
// returned, so that callers build no attributes for it.
func (g *Gateway) startSpan(ctx context.Context, name string, kind trace.SpanKind, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if g.tracer == nil {
		return ctx, nil
	}
	ctx, s := g.tracer.Start(ctx, name, g.spanKinds[kind]...)
	if !s.IsRecording() {
		return ctx, nil
	}
	if len(attrs) > 0 {
		s.SetAttributes(attrs...)
	}
	return ctx, s
}

// endSpan ends s (nil: no tracing) with the attributes given; failed marks an error.
func endSpan(s trace.Span, failed string, attrs ...attribute.KeyValue) {
	if s == nil {
		return
	}
	s.SetAttributes(attrs...)
	if failed != "" {
		s.SetStatus(codes.Error, failed)
	}
	s.End()
}

// injectTrace puts the W3C traceparent (and tracestate) of ctx's span into
// an upstream request, so the backend's own traces join the client's. With
// tracing off it is the client's own (from, its request header), passed on
// as the client sent it once parsed, so that the backend's traces still join
// the client's; a malformed one is not passed on.
func (g *Gateway) injectTrace(ctx context.Context, from, h http.Header) {
	tc := propagation.TraceContext{}
	if g.tracer == nil {
		if len(from[traceparentHeader]) == 0 {
			return
		}
		ctx = tc.Extract(ctx, propagation.HeaderCarrier(from))
	}
	tc.Inject(ctx, propagation.HeaderCarrier(h))
}

// traceparentHeader is W3C Trace Context's header, in canonical form.
const traceparentHeader = "Traceparent"
