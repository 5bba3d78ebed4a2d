package api

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/llmgate/llmgate/internal/config"
)

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

func TestTraceFollowsTheClientsTraceparent(t *testing.T) {
	const (
		clientTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
		clientSpan  = "00f067aa0ba902b7"
	)
	primary := newUpstream(t, status(500)) // the first attempt fails, the second serves
	var sawTraceparent []string
	secondary := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		okChat("west")(w, r)
	})
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	s := twoBackends(primary, secondary)
	s.cache, s.limits = true, true
	s.tracer = tp.Tracer("test")
	g := newGateway(t, s)

	a := do(t, "POST", g.data.URL+"/v1/chat/completions", keyA, chatBody, "traceparent", "00-"+clientTrace+"-"+clientSpan+"-01")
	if a.status != 200 {
		t.Fatalf("%d %s", a.status, a.body)
	}
	for _, u := range []*upstream{primary, secondary} {
		sawTraceparent = append(sawTraceparent, u.lastReq.Load().header.Get("traceparent"))
	}
	if err := tp.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	spans := exp.GetSpans().Snapshots()
	byName := map[string]sdktrace.ReadOnlySpan{}
	for _, sp := range spans {
		byName[sp.Name()] = sp
	}
	server := byName["chat gpt-4o"]
	if server == nil {
		var names []string
		for _, sp := range spans {
			names = append(names, sp.Name())
		}
		t.Fatalf("no span named \"chat gpt-4o\"; spans: %v", names)
	}
	if got := server.SpanContext().TraceID().String(); got != clientTrace {
		t.Errorf("trace id = %s, want the client's %s", got, clientTrace)
	}
	if got := server.Parent().SpanID().String(); got != clientSpan || !server.Parent().IsRemote() {
		t.Errorf("parent = %s (remote %v), want the client's span %s", got, server.Parent().IsRemote(), clientSpan)
	}
	at := attrs(server)
	for k, want := range map[attribute.Key]attribute.Value{
		"gen_ai.operation.name":      attribute.StringValue("chat"),
		"gen_ai.request.model":       attribute.StringValue("gpt-4o"),
		"gen_ai.usage.input_tokens":  attribute.Int64Value(5),
		"gen_ai.usage.output_tokens": attribute.Int64Value(3),
		"gen_ai.response.id":         attribute.StringValue("chatcmpl-1"),
		"llmgate.consumer":           attribute.StringValue("team-a"),
		"llmgate.backend":            attribute.StringValue("secondary"),
	} {
		if at[k] != want {
			t.Errorf("%s = %v, want %v", k, at[k].Emit(), want.Emit())
		}
	}
	for _, name := range []string{"cache.lookup", "admission", "upstream primary", "upstream secondary"} {
		sp := byName[name]
		if sp == nil {
			t.Errorf("no %q span", name)
			continue
		}
		if sp.Parent().SpanID() != server.SpanContext().SpanID() {
			t.Errorf("%q is not a child of the request's span", name)
		}
	}
	if sp := byName["upstream primary"]; sp != nil && sp.Status().Code != codes.Error {
		t.Errorf("the failed attempt's span status = %v, want Error", sp.Status())
	}
	// Each backend got the trace, with its own attempt's span as the parent.
	for i, name := range []string{"upstream primary", "upstream secondary"} {
		sp := byName[name]
		if sp == nil {
			continue
		}
		want := "00-" + clientTrace + "-" + sp.SpanContext().SpanID().String() + "-01"
		if sawTraceparent[i] != want {
			t.Errorf("%s got traceparent %q, want %q", name, sawTraceparent[i], want)
		}
	}
}

func TestTraceOfARefusal(t *testing.T) {
	up := newUpstream(t, okChat("east"))
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	s := twoBackends(up, up)
	s.tracer = tp.Tracer("test")
	g := newGateway(t, s)
	do(t, "POST", g.data.URL+"/v1/chat/completions", "sk-wrong", chatBody)
	_ = tp.ForceFlush(context.Background())
	spans := exp.GetSpans().Snapshots()
	if len(spans) != 1 || spans[0].Status().Code != codes.Error || attrs(spans[0])["error.type"].AsString() != "invalid_api_key" {
		t.Fatalf("spans = %v, want one failed span with error.type invalid_api_key", spans)
	}
	if !strings.HasPrefix(spans[0].Name(), "chat") {
		t.Errorf("span name = %q", spans[0].Name())
	}
}

// TestTracingOffForwardsTheClientsTraceparent: with no tracer the node
// starts no span, yet the backend still gets the client's W3C trace context,
// so its traces join the client's; nothing is made up and garbage is not
// passed on.
func TestTracingOffForwardsTheClientsTraceparent(t *testing.T) {
	const valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	tests := []struct {
		name                  string
		headers               []string
		wantParent, wantState string
	}{
		{"the client's traceparent reaches the backend", []string{"traceparent", valid}, valid, ""},
		{"with its tracestate", []string{"traceparent", valid, "tracestate", "vendor=abc,other=1"}, valid, "vendor=abc,other=1"},
		{"an unsampled one too", []string{"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"}, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", ""},
		{"none sent, none made up", nil, "", ""},
		{"a tracestate alone is not passed on", []string{"tracestate", "vendor=abc"}, "", ""},
		{"a malformed traceparent is not passed on", []string{"traceparent", "00-not-a-trace-01", "tracestate", "vendor=abc"}, "", ""},
		{"an all-zero trace id is not passed on", []string{"traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"}, "", ""},
	}
	up := newUpstream(t, okChat("east"))
	g := newGateway(t, twoBackends(up, up))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, "POST", g.data.URL+"/v1/chat/completions", keyA, chatBody, tt.headers...)
			if r.status != 200 {
				t.Fatalf("%d %s", r.status, r.body)
			}
			h := up.lastReq.Load().header
			if got := h.Get("traceparent"); got != tt.wantParent {
				t.Errorf("the backend got traceparent %q, want %q", got, tt.wantParent)
			}
			if got := h.Get("tracestate"); got != tt.wantState {
				t.Errorf("the backend got tracestate %q, want %q", got, tt.wantState)
			}
		})
	}
}

func TestTraceHasAJudgeSpan(t *testing.T) {
	var fail, judged atomic.Int32
	up := newUpstream(t, judgeUpstream(func(a, b string) string { return "yes" }, &fail, &judged))
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	g := cached(t, up, func(s *setup) {
		s.tracer = tp.Tracer("test")
		s.mutate = func(c *config.Config) {
			c.Cache.Verify = &config.CacheVerify{Route: "gpt-4o-mini", AuditRate: 1e-9}
		}
	})
	url := g.data.URL + "/v1/chat/completions"
	do(t, "POST", url, keyA, chatAbout("How do I rotate the API key of my Azure OpenAI resource?"))
	a := do(t, "POST", url, keyA, chatAbout("How would I rotate the API key of my Azure OpenAI resource?"))
	if judged.Load() == 0 || a.header.Get("x-llmgate-cache-tier") != "verified" {
		t.Fatalf("the judge was not asked (tier %q)", a.header.Get("x-llmgate-cache-tier"))
	}
	_ = tp.ForceFlush(context.Background())
	byID := map[string]sdktrace.ReadOnlySpan{}
	var judge sdktrace.ReadOnlySpan
	for _, sp := range exp.GetSpans().Snapshots() {
		byID[sp.SpanContext().SpanID().String()] = sp
		if sp.Name() == "cache.judge" {
			judge = sp
		}
	}
	if judge == nil {
		t.Fatal("no cache.judge span")
	}
	if p := byID[judge.Parent().SpanID().String()]; p == nil || p.Name() != "cache.lookup" {
		t.Errorf("the judge span's parent is %v, want the cache look-up", p)
	}
	if attrs(judge)["llmgate.judge.same"] != attribute.BoolValue(true) {
		t.Errorf("judge span attributes = %v", judge.Attributes())
	}
	// The judge's own upstream attempt is its child.
	found := false
	for _, sp := range byID {
		if strings.HasPrefix(sp.Name(), "upstream ") && sp.Parent().SpanID() == judge.SpanContext().SpanID() {
			found = true
		}
	}
	if !found {
		t.Error("no upstream attempt under the judge span")
	}
}
