package node

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/config"
	"github.com/llmgate/llmgate/internal/openai"
	"github.com/llmgate/llmgate/quota"
)

// prompt500 is a chat request whose prompt is about 500 tokens.
func prompt500(tb testing.TB) *Call {
	tb.Helper()
	text := strings.Repeat("The gateway counts every prompt before it forwards it, and settles after. ", 35)
	body, _ := json.Marshal(map[string]any{"model": "gpt-4o", "max_tokens": 200, "messages": []map[string]string{{"role": "system", "content": "You are terse."}, {"role": "user", "content": text}}})
	r, e := openai.ParseChat(body)
	if e != nil {
		tb.Fatal(e)
	}
	return &Call{Op: openai.OpChat, Route: "gpt-4o", Model: "gpt-4o", Body: body, Chat: r, Consumer: &Consumer{Name: "team-a", CounterKey: config.CounterConsumer}, Header: http.Header{}}
}

func admitGateway(tb testing.TB) *Gateway {
	tb.Helper()
	l, err := quota.Open(quota.Options{}, map[string]quota.Limits{"team-a": {TPM: 1 << 40}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = l.Close() })
	cfg := &config.Config{
		Backends:  []config.Backend{{Name: "b", Kind: "openai", URL: "http://127.0.0.1:1/v1"}},
		Routes:    map[string]config.Route{"gpt-4o": {Pool: [][]string{{"b"}}}},
		Consumers: []config.Consumer{{Name: "team-a", Keys: []string{"k"}}},
	}
	cfg.ApplyDefaults()
	g, err := New(cfg, Options{Limiter: l})
	if err != nil {
		tb.Fatal(err)
	}
	return g
}

func TestAdmitEstimate(t *testing.T) {
	g := admitGateway(t)
	call := prompt500(t)
	a, e := g.admit(context.Background(), call)
	if e != nil {
		t.Fatal(e)
	}
	if a.prompt < 450 || a.prompt > 600 || a.tokens != a.prompt+200 {
		t.Errorf("prompt %d, reserved %d: want ≈500 and prompt+max_tokens", a.prompt, a.tokens)
	}
}

// BenchmarkAdmit is the admit stage for a 500-token prompt: counting plus
// the reservation (settled at once, as a reply would).
func BenchmarkAdmit(b *testing.B) {
	g := admitGateway(b)
	call := prompt500(b)
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		a, _ := g.admit(ctx, call)
		lat = append(lat, time.Since(start))
		g.limiter.Settle(ctx, a.res, a.tokens)
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkReserveOnly is the reservation alone, the cost on top of counting.
func BenchmarkReserveOnly(b *testing.B) {
	g := admitGateway(b)
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	for b.Loop() {
		start := time.Now()
		res, _, _ := g.limiter.Reserve(ctx, "team-a", "", 700)
		lat = append(lat, time.Since(start))
		g.limiter.Settle(ctx, res, 700)
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1000, "p99-µs")
}
