package telemetry

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	metricsv1 "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	tracev1 "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// receiver is an OTLP/HTTP endpoint on loopback that decodes what it gets.
type receiver struct {
	mu      sync.Mutex
	spans   map[string]map[string]any // name -> attributes
	metrics map[string]bool
}

func newReceiver(t *testing.T) (*receiver, string) {
	r := &receiver{spans: map[string]map[string]any{}, metrics: map[string]bool{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		switch req.URL.Path {
		case "/v1/traces":
			var m tracev1.ExportTraceServiceRequest
			if err := proto.Unmarshal(body, &m); err != nil {
				t.Errorf("traces: %v", err)
			}
			for _, rs := range m.ResourceSpans {
				for _, ss := range rs.ScopeSpans {
					for _, sp := range ss.Spans {
						at := map[string]any{}
						for _, kv := range sp.Attributes {
							if iv := kv.Value.GetIntValue(); iv != 0 {
								at[kv.Key] = iv
							}
							if sv := kv.Value.GetStringValue(); sv != "" {
								at[kv.Key] = sv
							}
						}
						r.spans[sp.Name] = at
					}
				}
			}
		case "/v1/metrics":
			var m metricsv1.ExportMetricsServiceRequest
			if err := proto.Unmarshal(body, &m); err != nil {
				t.Errorf("metrics: %v", err)
			}
			for _, rm := range m.ResourceMetrics {
				for _, sm := range rm.ScopeMetrics {
					for _, mt := range sm.Metrics {
						r.metrics[mt.Name] = true
					}
				}
			}
		default:
			t.Errorf("unexpected OTLP path %s", req.URL.Path)
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	t.Cleanup(srv.Close)
	return r, srv.URL
}

func TestOTLPExportsSpansAndMetricsToAReceiver(t *testing.T) {
	rcv, url := newReceiver(t)
	o, err := NewOTLP(context.Background(), OTLPOptions{Endpoint: url, Node: "gw-1", Version: "test", MetricInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, span := o.Tracer().Start(context.Background(), "chat gpt-4o", trace.WithSpanKind(trace.SpanKindServer))
	span.SetAttributes(attribute.String("gen_ai.operation.name", "chat"), attribute.Int64("gen_ai.usage.input_tokens", 12))
	span.End()
	o.Observe(ctx, &Request{Op: "chat", Route: "gpt-4o", Consumer: "team-a", Status: 200, Cache: "miss",
		PromptTokens: 12, CompletionTokens: 30, Duration: 40 * time.Millisecond})
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := o.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	at, ok := rcv.spans["chat gpt-4o"]
	if !ok {
		t.Fatalf("the receiver got spans %v, not \"chat gpt-4o\"", rcv.spans)
	}
	if at["gen_ai.operation.name"] != "chat" || at["gen_ai.usage.input_tokens"] != int64(12) {
		t.Errorf("span attributes = %v", at)
	}
	for _, m := range []string{"gen_ai.client.token.usage", "gen_ai.client.operation.duration", "llmgate.requests"} {
		if !rcv.metrics[m] {
			t.Errorf("metric %s not received (got %v)", m, rcv.metrics)
		}
	}
}

func TestOTLPCollectorDownNeverBlocks(t *testing.T) {
	// Nothing listens there: exporting fails in the background.
	o, err := NewOTLP(context.Background(), OTLPOptions{Endpoint: "http://127.0.0.1:1", Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for range 1000 {
		_, span := o.Tracer().Start(context.Background(), "chat gpt-4o")
		span.End()
		o.Observe(context.Background(), &Request{Op: "chat", Route: "gpt-4o", Status: 200, PromptTokens: 1})
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("1000 spans with the collector down took %v", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_ = o.Shutdown(ctx) // fails (nothing to send to), but returns
}
