//go:build unix

package node

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/config"
	"github.com/llmgate/llmgate/internal/cputime"
	"github.com/llmgate/llmgate/internal/openai"
	"github.com/llmgate/llmgate/quota"
)

// overheadCall is the request of `llmgate bench overhead` (about 200 prompt
// tokens) from team-a.
func overheadCall(tb testing.TB, g *Gateway) *Call {
	tb.Helper()
	body, _ := json.Marshal(map[string]any{"model": "gpt-4o", "max_tokens": 16, "messages": []map[string]string{
		{"role": "system", "content": "You are a careful assistant for an engineering team. Answer in plain English, cite the relevant section of the document when you can, and say so when the document does not answer the question. Keep answers under five sentences."},
		{"role": "user", "content": "Our deployment runs three gateway nodes behind a load balancer, each with 2 vCPUs and 4 GiB of memory. Last week the p99 latency rose from 180 ms to 1.2 s during the nightly batch (about 40,000 requests between 01:00 and 02:00 UTC), while CPU stayed below 60%. The backend's x-ratelimit-remaining-tokens header dropped to zero several times. Which of these is the most likely cause, and what should we change first: the TPM limits of the batch consumer, the priority groups of the route, or the size of the nodes?"},
	}})
	r, e := openai.ParseChat(body)
	if e != nil {
		tb.Fatal(e)
	}
	return &Call{Op: openai.OpChat, Route: "gpt-4o", Model: "gpt-4o", Body: body, Chat: r, Consumer: g.byName["team-a"], Header: http.Header{}}
}

// BenchmarkAdmitIdle is the admission and settlement of the overhead
// benchmark's request by a node with a TPM, one request per 1.5 ms as at a
// few hundred requests per second: admit, 0.5 ms "upstream", settle to the
// answer's usage. "counted" counts the prompt and reserves before the call
// (a limiter without ReserveSpare); "bounded" reserves a bound from a grant
// and counts beside the call. It reports the median admission and
// settlement (what they add to the request's path) and the process's CPU
// per request, the counting goroutine's and the runtime's included.
//
// prompt=short is a request of about 25 prompt tokens (150 bytes).
func BenchmarkAdmitIdle(b *testing.B) {
	for _, mode := range []string{"counted", "bounded"} {
		for _, prompt := range []string{"overhead", "short"} {
			b.Run(mode+"/prompt="+prompt, func(b *testing.B) {
				benchAdmitIdle(b, mode, prompt)
			})
		}
	}
}

func benchAdmitIdle(b *testing.B, mode, prompt string) {
	{
		{
			g := admitBenchGateway(b, mode)
			ctx := context.Background()
			u := &usage{Prompt: 23, Completion: 16, Total: 39}
			var admits, settles []time.Duration
			before := cputime.Process()
			n := 0
			for b.Loop() {
				time.Sleep(time.Millisecond)
				call := overheadCall(b, g)
				if prompt == "short" {
					call = benchCalls(b)["chat"]
					call.Consumer, call.Header = g.byName["team-a"], http.Header{}
				}
				start := time.Now()
				a, e := g.admit(ctx, call)
				admits = append(admits, time.Since(start))
				if e != nil {
					b.Fatal(e)
				}
				time.Sleep(500 * time.Microsecond)
				x := &exchange{call: call, adm: a, reached: true}
				start = time.Now()
				g.settle(ctx, x, u)
				settles = append(settles, time.Since(start))
				n++
			}
			b.ReportMetric(float64((cputime.Process()-before).Nanoseconds())/float64(n)/1e3, "cpu-µs")
			b.ReportMetric(float64(p50(admits).Nanoseconds())/1e3, "admit-p50-µs")
			b.ReportMetric(float64(p50(settles).Nanoseconds())/1e3, "settle-p50-µs")
		}
	}
}

// admitBenchGateway is a node with one consumer whose TPM is never reached.
// Its limiter counts first ("counted") or reserves a bound from a grant
// ("bounded").
func admitBenchGateway(b *testing.B, mode string) *Gateway {
	l, err := quota.Open(quota.Options{}, map[string]quota.Limits{"team-a": {TPM: 1 << 40}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = l.Close() })
	var lim Limiter = l
	if mode == "counted" {
		lim = countFirst{l}
	}
	cfg := &config.Config{
		Backends:  []config.Backend{{Name: "b", Kind: "openai", URL: "http://127.0.0.1:1/v1"}},
		Routes:    map[string]config.Route{"gpt-4o": {Pool: [][]string{{"b"}}}},
		Consumers: []config.Consumer{{Name: "team-a", Keys: []string{"k"}, TPM: 1 << 40}},
	}
	cfg.ApplyDefaults()
	g, err := New(cfg, Options{Limiter: lim})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(g.Close)
	return g
}

func p50(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkAdmitCPU is BenchmarkAdmitIdle's admission and settlement back
// to back, for their CPU: with -cpu 1 (GOMAXPROCS=1) the counting
// goroutine's work is in ns/op too. Settling right after admitting takes
// the count over from a goroutine that has not started.
func BenchmarkAdmitCPU(b *testing.B) {
	for _, mode := range []string{"counted", "bounded"} {
		b.Run(mode, func(b *testing.B) {
			g := admitBenchGateway(b, mode)
			ctx := context.Background()
			u := &usage{Prompt: 23, Completion: 16, Total: 39}
			call := overheadCall(b, g)
			b.ReportAllocs()
			for b.Loop() {
				a, e := g.admit(ctx, call)
				if e != nil {
					b.Fatal(e)
				}
				g.settle(ctx, &exchange{call: call, adm: a, reached: true}, u)
			}
		})
	}
}
