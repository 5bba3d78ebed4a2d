package telemetry

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracev1 "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

// bodies is an OTLP/HTTP endpoint on loopback that keeps every body posted
// to it, answering with status (200 when 0).
type bodies struct {
	mu     sync.Mutex
	got    [][]byte
	status int
}

func newBodies(t *testing.T, status int) (*bodies, string) {
	b := &bodies{status: status}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Header.Get("Content-Type") != "application/x-protobuf" {
			t.Errorf("Content-Type %q", r.Header.Get("Content-Type"))
		}
		b.mu.Lock()
		b.got = append(b.got, body)
		b.mu.Unlock()
		if b.status != 0 {
			w.WriteHeader(b.status)
		}
	}))
	t.Cleanup(srv.Close)
	return b, srv.URL
}

func (b *bodies) requests(t *testing.T) []*tracev1.ExportTraceServiceRequest {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []*tracev1.ExportTraceServiceRequest
	for _, body := range b.got {
		var m tracev1.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &m); err != nil {
			t.Fatalf("decoding an export: %v", err)
		}
		out = append(out, &m)
	}
	return out
}

// spanVariety ends spans that use every part of the span model: a remote
// parent with a tracestate, attributes of every type, events, links, each
// status, each kind.
func spanVariety(tp *sdktrace.TracerProvider) {
	tr := tp.Tracer("github.com/llmgate/llmgate", trace.WithInstrumentationVersion("v1"), trace.WithSchemaURL("https://opentelemetry.io/schemas/1.26.0"))
	ts, _ := trace.ParseTraceState("vendor=abc,other=1")
	remote := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, SpanID: trace.SpanID{1, 2, 3, 4, 5, 6, 7, 8},
		TraceFlags: trace.FlagsSampled, TraceState: ts, Remote: true,
	})
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), remote)
	ctx, root := tr.Start(ctx, "chat gpt-4o", trace.WithSpanKind(trace.SpanKindServer))
	root.SetAttributes(
		attribute.String("gen_ai.operation.name", "chat"), attribute.String("empty", ""),
		attribute.Int64("gen_ai.usage.input_tokens", 12), attribute.Int64("negative", -7), attribute.Int("zero", 0),
		attribute.Bool("yes", true), attribute.Bool("no", false), attribute.Float64("ratio", 0.25), attribute.Float64("nothing", 0),
		attribute.StringSlice("strings", []string{"a", "", "c"}), attribute.Int64Slice("ints", []int64{1, -2, 0}),
		attribute.BoolSlice("bools", []bool{true, false}), attribute.Float64Slice("floats", []float64{1.5, 0}),
		attribute.StringSlice("no strings", nil),
	)
	root.AddEvent("retry", trace.WithAttributes(attribute.String("llmgate.backend", "east"), attribute.Int("n", 2)))
	root.AddEvent("")
	root.SetStatus(codes.Error, "upstream_error")
	_, child := tr.Start(ctx, "upstream east", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithLinks(trace.Link{SpanContext: trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: trace.TraceID{9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9}, SpanID: trace.SpanID{7, 7, 7, 7, 7, 7, 7, 7}, Remote: true}),
			Attributes: []attribute.KeyValue{attribute.String("why", "batch")}}))
	child.SetAttributes(attribute.Int("http.response.status_code", 503))
	child.SetStatus(codes.Ok, "")
	child.End()
	_, internal := tr.Start(ctx, "admission")
	internal.End()
	root.End()
	// Another scope, and a span with no attributes at all.
	_, other := tp.Tracer("other").Start(context.Background(), "x", trace.WithSpanKind(trace.SpanKindProducer))
	other.End()
}

func TestSpanEncodingMatchesTheSDKExporter(t *testing.T) {
	res := resource.NewSchemaless(attribute.String("service.name", "llmgate"), attribute.String("service.instance.id", "gw-1"), attribute.Int("n", 3))
	sdkSink, sdkURL := newBodies(t, 0)
	ourSink, ourURL := newBodies(t, 0)
	exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(sdkURL+"/v1/traces"))
	if err != nil {
		t.Fatal(err)
	}
	ours := newSpanExport(ourURL+"/v1/traces", 5*time.Second, "test", nil, nil)
	tp := sdktrace.NewTracerProvider(sdktrace.WithResource(res), sdktrace.WithBatcher(exp), sdktrace.WithSpanProcessor(ours))
	spanVariety(tp)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tp.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	want, got := spansByScope(t, sdkSink.requests(t)), spansByScope(t, ourSink.requests(t))
	if len(want) != 2 {
		t.Fatalf("the SDK exporter sent %d scopes, want 2", len(want))
	}
	for scope, w := range want {
		if !proto.Equal(w, got[scope]) {
			t.Errorf("scope %s: our encoding differs from the SDK exporter's:\nSDK:  %v\nours: %v", scope, prototext.Format(w), prototext.Format(got[scope]))
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d scopes, the SDK exporter %d", len(got), len(want))
	}
}

// spansByScope flattens exports to scope name -> a ResourceSpans holding
// that scope's spans only, in the order sent (the SDK exporter groups
// through maps: its order of scopes is not fixed).
func spansByScope(t *testing.T, reqs []*tracev1.ExportTraceServiceRequest) map[string]*tracepb.ResourceSpans {
	out := map[string]*tracepb.ResourceSpans{}
	for _, r := range reqs {
		for _, rs := range r.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				name := ss.Scope.GetName()
				if prev, ok := out[name]; ok {
					if !proto.Equal(prev.Resource, rs.Resource) {
						t.Errorf("scope %s under two resources", name)
					}
					prev.ScopeSpans[0].Spans = append(prev.ScopeSpans[0].Spans, ss.Spans...)
					continue
				}
				one := &tracepb.ResourceSpans{Resource: rs.Resource, SchemaUrl: rs.SchemaUrl, ScopeSpans: []*tracepb.ScopeSpans{ss}}
				out[name] = proto.Clone(one).(*tracepb.ResourceSpans)
			}
		}
	}
	return out
}

func TestSpanExportSendsOnceFlushBytesArePending(t *testing.T) {
	sink, url := newBodies(t, 0)
	e := newSpanExport(url+"/v1/traces", 5*time.Second, "test", nil, nil)
	e.flushBytes = 2 << 10 // the interval (2 s) is not waited for
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(e))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	for range 100 {
		_, s := tp.Tracer("t").Start(context.Background(), "upstream east")
		s.SetAttributes(attribute.String("llmgate.backend", "east"), attribute.Int("http.response.status_code", 200))
		s.End()
	}
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if n := countSpans(sink.requests(t)); n > 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("nothing sent within 1 s with %d bytes pending", e.flushBytes)
}

func countSpans(reqs []*tracev1.ExportTraceServiceRequest) int {
	n := 0
	for _, r := range reqs {
		for _, rs := range r.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				n += len(ss.Spans)
			}
		}
	}
	return n
}

func TestSpanExportSendsEverySpanOnce(t *testing.T) {
	sink, url := newBodies(t, 0)
	e := newSpanExport(url+"/v1/traces", 5*time.Second, "test", nil, nil)
	e.flushBytes = 4 << 10
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(e))
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 500 {
				_, s := tp.Tracer("t").Start(context.Background(), "admission")
				s.SetAttributes(attribute.Int("worker", w), attribute.Int("i", i))
				s.End()
			}
		})
	}
	wg.Wait()
	if err := tp.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	seen := map[[2]int64]int{}
	for _, r := range sink.requests(t) {
		for _, rs := range r.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, sp := range ss.Spans {
					seen[[2]int64{sp.Attributes[0].Value.GetIntValue(), sp.Attributes[1].Value.GetIntValue()}]++
				}
			}
		}
	}
	if len(seen) != 2000 {
		t.Errorf("the collector got %d distinct spans, want 2000", len(seen))
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("span %v sent %d times", k, n)
		}
	}
	if len(sink.requests(t)) < 2 {
		t.Errorf("2000 spans went in %d request(s), want several batches", len(sink.requests(t)))
	}
}

// hangingCollector is a collector that never answers a request until the
// request's context ends or the test does.
func hangingCollector(t *testing.T) *httptest.Server {
	t.Helper()
	hang := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(hang) })
	return srv
}

func TestSpanExportPastItsBoundDropsAndNeverBlocks(t *testing.T) {
	srv := hangingCollector(t)
	var logs bytes.Buffer
	e := newSpanExport(srv.URL+"/v1/traces", time.Hour, "test", nil, slog.New(slog.NewTextHandler(&logs, nil)))
	e.flushBytes, e.maxPending = 1<<10, 8<<10
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(e))
	start := time.Now()
	for range 10000 {
		_, s := tp.Tracer("t").Start(context.Background(), "admission")
		s.SetAttributes(attribute.Int("llmgate.tokens.reserved", 100))
		s.End()
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("10000 spans with the collector hanging took %v", d)
	}
	if e.dropped.Load() == 0 {
		t.Error("nothing dropped past the bound")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start = time.Now()
	err := tp.Shutdown(ctx)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Shutdown took %v past its context", d)
	}
	if err == nil {
		t.Error("Shutdown with the collector hanging returned no error")
	}
	if !strings.Contains(logs.String(), "spans dropped") {
		t.Errorf("no report of the dropped spans in the log: %q", logs.String())
	}
}

func TestSpanExportRefusedBatchIsDroppedAndReported(t *testing.T) {
	sink, url := newBodies(t, http.StatusBadRequest)
	var logs bytes.Buffer
	e := newSpanExport(url+"/v1/traces", 5*time.Second, "test", nil, slog.New(slog.NewTextHandler(&logs, nil)))
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(e))
	_, s := tp.Tracer("t").Start(context.Background(), "admission")
	s.End()
	err := tp.ForceFlush(context.Background())
	if err == nil || !strings.Contains(err.Error(), "400") {
		t.Errorf("ForceFlush = %v, want the collector's 400", err)
	}
	if !strings.Contains(logs.String(), "spans=1") {
		t.Errorf("log %q does not report the one span dropped", logs.String())
	}
	// Nothing is sent twice: the next flush has nothing to send.
	if err := tp.ForceFlush(context.Background()); err != nil {
		t.Errorf("second ForceFlush = %v", err)
	}
	if n := len(sink.requests(t)); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
	if err := tp.Shutdown(context.Background()); err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("Shutdown = %v", err)
	}
}

func TestOTLPHeadersParse(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     http.Header
	}{
		{"one pair", "api-key=secret", http.Header{"Api-Key": {"secret"}}},
		{"several, spaces trimmed", " a = 1 ,b=2", http.Header{"A": {"1"}, "B": {"2"}}},
		{"value percent-decoded", "authorization=Basic%20dXNlcjpwYXNz", http.Header{"Authorization": {"Basic dXNlcjpwYXNz"}}},
		{"value keeps its equals signs", "k=a=b", http.Header{"K": {"a=b"}}},
		{"pair without equals skipped", "novalue,k=v", http.Header{"K": {"v"}}},
		{"key that is no token skipped", "bad key=1,k(=2,k=v", http.Header{"K": {"v"}}},
		{"undecodable value skipped", "a=%zz,k=v", http.Header{"K": {"v"}}},
		{"value with a line break skipped", "a=x%0D%0AInjected: 1,k=v", http.Header{"K": {"v"}}},
		{"empty", "", http.Header{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := otlpHeaders(tc.in)
			if len(got) != len(tc.want) {
				t.Fatalf("otlpHeaders(%q) = %v, want %v", tc.in, got, tc.want)
			}
			for k, v := range tc.want {
				if got.Get(k) != v[0] {
					t.Errorf("otlpHeaders(%q)[%s] = %q, want %q", tc.in, k, got.Get(k), v[0])
				}
			}
		})
	}
}

func TestOTLPHeadersFromTheEnvironmentReachTheCollector(t *testing.T) {
	got := make(chan string, 8)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/traces" {
			got <- r.Header.Get("Api-Key") + " " + r.Header.Get("X-Tenant")
		}
	}))
	defer srv.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", "api-key=general,x-tenant=t1")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "api-key=for-traces")
	o, err := NewOTLP(context.Background(), OTLPOptions{Endpoint: srv.URL, MetricInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	_, s := o.Tracer().Start(context.Background(), "chat gpt-4o")
	s.End()
	if err := o.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The traces' own variable wins over the general one, as in the SDK.
	if h := <-got; h != "for-traces " {
		t.Errorf("the collector got headers %q, want the traces' own", h)
	}
}

// FuzzOTLPHeaders: any value parses without panicking into headers that
// are valid on the wire.
func FuzzOTLPHeaders(f *testing.F) {
	for _, s := range []string{"api-key=secret", "a=%20b,c", "=,=,", "k=%0Dx", "a=b=c, d = e "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for k, vs := range otlpHeaders(s) {
			if !validHeaderKey(k) {
				t.Fatalf("key %q", k)
			}
			for _, v := range vs {
				if strings.ContainsAny(v, "\r\n\x00") {
					t.Fatalf("value %q", v)
				}
			}
		}
	})
}

// FuzzKeyValueEncoding: an attribute of each scalar type, encoded by
// appendKeyValue, decodes with the generated OTLP types to the same key and
// value (and the size computed ahead matches what was written).
func FuzzKeyValueEncoding(f *testing.F) {
	f.Add("gen_ai.request.model", "gpt-4o", int64(12), 0.5, true, []byte("x"))
	f.Add("", "", int64(-1), -0.0, false, []byte(nil))
	f.Add(strings.Repeat("k", 200), strings.Repeat("v", 20000), int64(1)<<62, 1e300, true, bytes.Repeat([]byte{0}, 300))
	f.Fuzz(func(t *testing.T, key, s string, i int64, fl float64, b bool, raw []byte) {
		for _, kv := range []attribute.KeyValue{
			attribute.String(key, s), attribute.Int64(key, i), attribute.Float64(key, fl), attribute.Bool(key, b),
			attribute.StringSlice(key, []string{s, key}), attribute.Int64Slice(key, []int64{i, -i}), {Key: attribute.Key(key), Value: attribute.ByteSliceValue(raw)},
		} {
			enc := appendKeyValue(nil, fSpanAttributes, kv)
			var span tracepb.Span
			if err := proto.Unmarshal(enc, &span); err != nil {
				t.Fatalf("%v: %v", kv.Value.Type(), err)
			}
			if len(span.Attributes) != 1 {
				t.Fatalf("%v: %d attributes decoded", kv.Value.Type(), len(span.Attributes))
			}
			got := span.Attributes[0]
			// Invalid UTF-8 is sent replaced, as a protobuf string must be UTF-8.
			key, s := strings.ToValidUTF8(key, "\uFFFD"), strings.ToValidUTF8(s, "\uFFFD")
			if got.Key != key {
				t.Fatalf("key %q, want %q", got.Key, key)
			}
			v := got.Value
			var ok bool
			switch kv.Value.Type() {
			case attribute.STRING:
				ok = v.GetStringValue() == s
			case attribute.INT64:
				ok = v.GetIntValue() == i
			case attribute.FLOAT64:
				ok = v.GetDoubleValue() == fl || (fl != fl && v.GetDoubleValue() != v.GetDoubleValue())
			case attribute.BOOL:
				ok = v.GetBoolValue() == b
			case attribute.STRINGSLICE:
				a := v.GetArrayValue().GetValues()
				ok = len(a) == 2 && a[0].GetStringValue() == s && a[1].GetStringValue() == key
			case attribute.INT64SLICE:
				a := v.GetArrayValue().GetValues()
				ok = len(a) == 2 && a[0].GetIntValue() == i && a[1].GetIntValue() == -i
			case attribute.BYTESLICE:
				ok = bytes.Equal(v.GetBytesValue(), raw)
			}
			if !ok {
				t.Fatalf("%v %v decoded as %v", kv.Value.Type(), kv.Value.Emit(), v)
			}
		}
	})
}
