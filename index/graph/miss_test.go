package graph

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/cputime"
	"github.com/llmgate/llmgate/internal/embed"
)

// templatedPrompt is the i-th prompt of `llmgate bench overhead`'s cache-miss
// target (its cacheHitPrompt): 512 templates that differ only by a region
// number, so the graph is made of dense clusters of near duplicates, as a
// cache of templated prompts is.
func templatedPrompt(i int) string {
	verbs := []string{"configure", "monitor", "rotate", "scale", "debug", "secure", "migrate", "back up"}
	things := []string{"retry policy", "connection pool", "access keys", "deployment quota", "log pipeline", "alert rules", "network rules", "token budget"}
	owners := []string{"billing service", "search cluster", "data warehouse", "mobile backend", "payments gateway", "analytics jobs", "identity provider", "chat assistant"}
	return fmt.Sprintf("How should our team %s the %s of the %s in region %d when traffic doubles during the quarterly launch?",
		verbs[i%len(verbs)], things[(i/len(verbs))%len(things)], owners[(i/(len(verbs)*len(things)))%len(owners)], i)
}

// templatedVectors returns the local embedder's vectors of templatedPrompt
// 0..n-1, computed once per test binary (about a minute at 60,000 on a busy
// machine; benchmarks only).
var templatedVectors = sync.OnceValue(func() [][]float32 {
	emb := embed.NewLocal()
	out := make([][]float32, missGraphSize+missFresh)
	for i := range out {
		out[i] = emb.Embed(templatedPrompt(i))
	}
	return out
})

const (
	missGraphSize = 50_000 // entries before the timed loop
	missFresh     = 10_000 // prompts the timed loops search and add
)

// missGraph is a graph of the first missGraphSize templated vectors, built
// as the cache builds it on misses (each Add preceded by a Search of the
// same vector), once per test binary and parameters. The benchmarks below
// add to it: run them with a fixed -benchtime (e.g. 2000x) so that every
// build measured sees the same sequence of graphs.
var missGraphs = map[Params]*HNSW{}

func missGraph(p Params) *HNSW {
	if x, ok := missGraphs[p]; ok {
		return x
	}
	x := NewHNSW(p)
	for i, v := range templatedVectors()[:missGraphSize] {
		x.Search(v, 1)
		x.Add(uint64(i), v)
	}
	missGraphs[p] = x
	return x
}

// BenchmarkMissPath is the cache-miss path's graph work on the overhead
// benchmark's prompts: a Search of a new prompt's vector, then its Add
// (seeded by that Search), into a graph of 50,000, with each assembly int8
// kernel this CPU runs. With lag=63 each Add is of the vector searched 63
// searches earlier, as under 64 concurrent misses (the benchmark's closed
// loop), where the look-up of a miss is followed by those of the others
// before its answer is stored. ns/op is one miss, cpu-ns/op its CPU time
// (the process's: steadier than ns/op on a busy machine). -benchtime must
// be fixed (see missGraph).
func BenchmarkMissPath(b *testing.B) {
	fresh := templatedVectors()[missGraphSize:]
	x := missGraph(Params{})
	next := x.Len()                       // the next vector to search
	for _, k := range int8Kernels()[1:] { // the portable kernel is 3x slower
		for _, lag := range []int{0, 63} {
			b.Run(fmt.Sprintf("kernel=%s/lag=%d", k.name, lag), func(b *testing.B) {
				defer useInt8Kernel(b, k)()
				added := next // the next vector to add
				start := cputime.Process()
				for b.Loop() {
					x.Search(fresh[(next-missGraphSize)%len(fresh)], 1)
					next++
					if next-added > lag {
						x.Add(uint64(added), fresh[(added-missGraphSize)%len(fresh)])
						added++
					}
				}
				reportCPU(b, start)
				for ; added < next; added++ { // the rest, untimed
					x.Add(uint64(added), fresh[(added-missGraphSize)%len(fresh)])
				}
			})
		}
	}
}

// BenchmarkMissSearch is the Search alone of BenchmarkMissPath: look-ups of
// new prompts (near duplicates of stored ones, never stored themselves).
func BenchmarkMissSearch(b *testing.B) {
	fresh := templatedVectors()[missGraphSize:]
	x := missGraph(Params{})
	for _, k := range int8Kernels()[1:] { // the portable kernel is 3x slower
		b.Run("kernel="+k.name, func(b *testing.B) {
			defer useInt8Kernel(b, k)()
			start := cputime.Process()
			for i := 0; b.Loop(); i++ {
				x.Search(fresh[len(fresh)-1-i%(len(fresh)/2)], 1)
			}
			reportCPU(b, start)
		})
	}
}

// reportCPU reports the process's CPU time per iteration since start, where
// it is measured.
func reportCPU(b *testing.B, start time.Duration) {
	if used := cputime.Process() - start; used > 0 && b.N > 0 {
		b.ReportMetric(float64(used.Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}
