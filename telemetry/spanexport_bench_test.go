//go:build unix

package telemetry

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/llmgate/llmgate/internal/cputime"
)

// BenchmarkRequestSpans is the spans of one traced request (the server span
// with its GenAI attributes, admission, one upstream attempt) exported over
// OTLP/HTTP to a loopback receiver that discards them, through this
// package's export and through the SDK's batch span processor and OTLP/HTTP
// exporter. cpu-ns/op is the process's CPU time (user + system) per request,
// the background export and the receiver included; compare the two within
// one run.
func BenchmarkRequestSpans(b *testing.B) {
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer sink.Close()
	for _, tc := range []struct {
		name string
		proc func(b *testing.B) sdktrace.SpanProcessor
	}{
		{"llmgate export", func(*testing.B) sdktrace.SpanProcessor {
			return newSpanExport(sink.URL+"/v1/traces", 10*time.Second, "bench", nil, nil)
		}},
		{"SDK batcher and otlptracehttp", func(b *testing.B) sdktrace.SpanProcessor {
			exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(sink.URL+"/v1/traces"))
			if err != nil {
				b.Fatal(err)
			}
			// Blocking: a span is never dropped for a full queue, so that
			// both export every span.
			return sdktrace.NewBatchSpanProcessor(exp, sdktrace.WithBlocking())
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(tc.proc(b)))
			tr := tp.Tracer("github.com/llmgate/llmgate")
			server := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer)}
			client := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}
			b.ReportAllocs()
			cpu0 := cputime.Process()
			for b.Loop() {
				ctx, root := tr.Start(context.Background(), "chat", server...)
				_, adm := tr.Start(ctx, "admission")
				adm.SetAttributes(attribute.Int64("llmgate.tokens.reserved", 1200), attribute.Int64("llmgate.tokens.prompt_estimate", 200))
				adm.End()
				_, up := tr.Start(ctx, "upstream east", client...)
				up.SetAttributes(attribute.String("llmgate.backend", "east"), attribute.Int("http.response.status_code", 200))
				up.End()
				root.SetName("chat gpt-4o")
				root.SetAttributes(
					attribute.String("gen_ai.operation.name", "chat"), attribute.String("gen_ai.request.model", "gpt-4o"),
					attribute.Int64("gen_ai.usage.input_tokens", 200), attribute.Int64("gen_ai.usage.output_tokens", 120),
					attribute.Int("http.response.status_code", 200), attribute.String("llmgate.cache", "miss"),
					attribute.String("llmgate.request_id", "b3f1c2d4e5f60718293a4b5c6d7e8f90"), attribute.String("gen_ai.response.id", "chatcmpl-123"),
					attribute.String("llmgate.consumer", "team-a"), attribute.String("llmgate.backend", "east"))
				root.SetStatus(codes.Unset, "")
				root.End()
			}
			// What is pending goes out, on the clock.
			if err := tp.Shutdown(context.Background()); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(cputime.Process()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// BenchmarkSpanExportParallel is OnEnd from 64 goroutines at once (a node's
// workers under load): the processor's lock is what they share.
func BenchmarkSpanExportParallel(b *testing.B) {
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	defer sink.Close()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(newSpanExport(sink.URL+"/v1/traces", 10*time.Second, "bench", nil, nil)))
	tr := tp.Tracer("github.com/llmgate/llmgate")
	b.ReportAllocs()
	b.SetParallelism(32)
	cpu0 := cputime.Process()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_, s := tr.Start(context.Background(), "admission")
			s.SetAttributes(attribute.Int64("llmgate.tokens.reserved", 1200), attribute.String("llmgate.backend", "east"))
			s.End()
		}
	})
	if err := tp.Shutdown(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(cputime.Process()-cpu0)/float64(b.N), "cpu-ns/op")
}
