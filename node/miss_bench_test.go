//go:build linux

package node

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llmgate/llmgate/index"
	"github.com/llmgate/llmgate/index/graph"
	"github.com/llmgate/llmgate/index/guard"
	"github.com/llmgate/llmgate/internal/cputime"
	"github.com/llmgate/llmgate/internal/openai"
	"github.com/llmgate/llmgate/internal/store"
)

// missPrompt is the i-th prompt of `llmgate bench overhead --features
// cache-miss`: near-duplicates that differ by their words and a number.
func missPrompt(i int) string {
	verbs := []string{"configure", "monitor", "rotate", "scale", "debug", "secure", "migrate", "back up"}
	things := []string{"retry policy", "connection pool", "access keys", "deployment quota", "log pipeline", "alert rules", "network rules", "token budget"}
	owners := []string{"billing service", "search cluster", "data warehouse", "mobile backend", "payments gateway", "analytics jobs", "identity provider", "chat assistant"}
	return fmt.Sprintf("How should our team %s the %s of the %s in region %d when traffic doubles during the quarterly launch?",
		verbs[i%len(verbs)], things[(i/len(verbs))%len(things)], owners[(i/(len(verbs)*len(things)))%len(owners)], i)
}

// missGateway is a node as `llmgate bench overhead` runs it for the tpm
// feature (cache off) or the cache-miss one (cache on, on disk, HNSW,
// guard, local embedder), with an in-process upstream.
func missGateway(tb testing.TB, cacheOn bool) *Gateway {
	tb.Helper()
	l, cfg := oneRouteNode(tb)
	cfg.Cache.Enabled = cacheOn
	cfg.ApplyDefaults()
	opts := Options{Limiter: l, Transport: answerTransport{}}
	if cacheOn {
		db, err := store.Open(tb.TempDir(), store.Options{})
		if err != nil {
			tb.Fatal(err)
		}
		c, err := index.Open(context.Background(), index.Options{
			DB: db.DB, NewGraph: func() graph.Index { return graph.NewHNSW(graph.Params{}) },
			Check: guard.Check, Judgeable: guard.Judgeable,
		})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { _ = c.Close(); _ = db.Close() })
		for !c.Ready() {
			time.Sleep(time.Millisecond)
		}
		opts.Cache = c
	}
	g, err := New(cfg, opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(g.Close)
	return g
}

// serveMiss serves the i-th cache-miss request through g.
func serveMiss(tb testing.TB, g *Gateway, i int) Outcome {
	body := []byte(`{"model":"gpt-4o","messages":[{"role":"user","content":` + strconv.Quote(missPrompt(i)) + `}],"max_tokens":16}`)
	chat, e := openai.ParseChat(body)
	if e != nil {
		tb.Fatal(e)
	}
	call := &Call{Op: openai.OpChat, Route: "gpt-4o", Model: "gpt-4o", Body: body, Chat: chat,
		Consumer: g.byName["team-a"], Header: http.Header{}}
	return g.Serve(context.Background(), httptest.NewRecorder(), call)
}

// missModes are the cache-miss benchmarks' two nodes: the cache off (the
// tpm feature) and on, every request a miss.
var missModes = []struct {
	name    string
	cacheOn bool
}{{"cache-off", false}, {"cache-miss", true}}

// missFill is how many requests fill a miss benchmark's cache first, so
// that the graph has the bench's size.
const missFill = 2000

// filledMissGateway is missGateway after missFill requests 0..missFill-1.
func filledMissGateway(b *testing.B, cacheOn bool) *Gateway {
	g := missGateway(b, cacheOn)
	for i := range missFill {
		serveMiss(b, g, i)
	}
	return g
}

// BenchmarkServeCacheMiss is one request of `llmgate bench overhead
// --features cache-miss` in process (look up, embed, forward, store),
// against the same node with its cache off (the tpm feature): the
// difference is what a miss costs, allocations included. The cache is
// filled first, so that the graph has the bench's size.
func BenchmarkServeCacheMiss(b *testing.B) {
	for _, bc := range missModes {
		b.Run(bc.name, func(b *testing.B) {
			g := filledMissGateway(b, bc.cacheOn)
			i := missFill
			b.ReportAllocs()
			b.ResetTimer()
			before := cputime.Process()
			for b.Loop() {
				i++
				if out := serveMiss(b, g, i); out.Status != http.StatusOK || bc.cacheOn && out.Cache != cacheMiss {
					b.Fatalf("outcome %+v", out)
				}
			}
			b.ReportMetric(float64((cputime.Process()-before).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}

// BenchmarkServeCacheMissParallel is BenchmarkServeCacheMiss with 32
// requests per CPU in flight, as the bench's 64 closed-loop workers keep
// them on two CPUs: concurrent misses share commits and the committer's
// messages, which one request at a time never does.
func BenchmarkServeCacheMissParallel(b *testing.B) {
	for _, bc := range missModes {
		b.Run(bc.name, func(b *testing.B) {
			g := filledMissGateway(b, bc.cacheOn)
			var next atomic.Int64
			next.Store(missFill)
			b.ReportAllocs()
			b.SetParallelism(32)
			b.ResetTimer()
			before := cputime.Process()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if out := serveMiss(b, g, int(next.Add(1))); out.Status != http.StatusOK || bc.cacheOn && out.Cache != cacheMiss {
						b.Errorf("outcome %+v", out)
						return
					}
				}
			})
			b.ReportMetric(float64((cputime.Process()-before).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}
