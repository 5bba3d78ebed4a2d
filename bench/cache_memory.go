package bench

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"time"

	"github.com/llmgate/llmgate/index"
	"github.com/llmgate/llmgate/index/graph"
	"github.com/llmgate/llmgate/internal/embed"
)

// CacheMemoryReport is what a whole cache (index.Cache: entries, exact
// tier, HNSW graph) holds per entry, against the target of the vector,
// the stored response and 1 KB.
type CacheMemoryReport struct {
	Entries            int     `json:"entries"`
	BytesPerEntry      float64 `json:"bytes_per_entry"`
	VectorBytes        int     `json:"vector_bytes"`
	ResponseBytes      float64 `json:"response_bytes"` // mean, prompt included
	OverheadPerEntry   float64 `json:"overhead_per_entry"`
	ProjectedGiBFor1M  float64 `json:"projected_gib_for_1m"`
	StoreMicrosPerItem float64 `json:"store_us"`
}

// CacheMemory stores n entries (the local embedder's vectors of generated
// prompts, each with a 600-byte answer) in an in-memory index.Cache whose
// HNSW graphs take params, and measures the live heap they take.
func CacheMemory(ctx context.Context, n int, params graph.Params, w io.Writer) (*CacheMemoryReport, error) {
	r := rand.New(rand.NewPCG(5, uint64(n)))
	emb := embed.NewLocal()
	vocab := strings.Fields(promptVocabulary)
	answer := strings.Repeat("Sure. Here is how to do it, step by step, with care. ", 11) // ≈ 600 bytes
	before := liveHeapBytes()
	c, err := index.Open(ctx, index.Options{NewGraph: func() graph.Index { return graph.NewHNSW(params) }, TTL: 24 * time.Hour, MaxEntries: n + 1})
	if err != nil {
		return nil, fmt.Errorf("cache memory: %w", err)
	}
	defer c.Close()
	sp := index.Space{Partition: "bench", Route: "gpt-4o-mini", Shape: "s"}
	var payload int64
	start := time.Now()
	for i := range n {
		if i%4096 == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		prompt := strings.Join(generatedPrompt(r, vocab), " ")
		resp := fmt.Appendf(nil, `{"id":"c%d","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":%q},"finish_reason":"stop"}]}`, i, answer)
		payload += int64(len(resp) + len(prompt))
		e := &index.Entry{Space: sp, Exact: sha256.Sum256([]byte(prompt)), Prompt: prompt, Vector: emb.Embed(prompt), Response: resp}
		if err := c.Store(ctx, e); err != nil {
			return nil, fmt.Errorf("cache memory: store %d: %w", i, err)
		}
	}
	took := time.Since(start)
	grown := float64(int64(liveHeapBytes()) - int64(before))
	runtime.KeepAlive(c)
	rep := &CacheMemoryReport{
		Entries:            n,
		BytesPerEntry:      grown / float64(n),
		VectorBytes:        4 * embed.Dim,
		ResponseBytes:      float64(payload) / float64(n),
		StoreMicrosPerItem: durMicros(took) / float64(n),
	}
	rep.OverheadPerEntry = rep.BytesPerEntry - float64(rep.VectorBytes) - rep.ResponseBytes
	rep.ProjectedGiBFor1M = rep.BytesPerEntry * 1e6 / (1 << 30)
	fmt.Fprintf(w, "\ncache memory (index.Cache with HNSW walking %s vectors, %d entries of %d-d vectors and %.0f-byte answer+prompt)\n", walkName(params), n, embed.Dim, rep.ResponseBytes)
	fmt.Fprintf(w, "  %.0f bytes/entry = vector %d + answer and prompt %.0f + overhead %.0f (target ≤ 1024); 1M entries ≈ %.2f GiB; store %.0f µs/entry\n",
		rep.BytesPerEntry, rep.VectorBytes, rep.ResponseBytes, rep.OverheadPerEntry, rep.ProjectedGiBFor1M, rep.StoreMicrosPerItem)
	return rep, nil
}

// walkName says which vectors an HNSW with params walks.
func walkName(params graph.Params) string {
	if params.Float32Walk {
		return "float32"
	}
	return "int8"
}
