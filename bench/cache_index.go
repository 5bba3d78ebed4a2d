package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/llmgate/llmgate/index/graph"
)

// Index implementations measured by CacheIndex.
const (
	ImplHNSW  = "hnsw"       // graph.HNSW, the default
	ImplCoder = "coder-hnsw" // graph.Coder over github.com/coder/hnsw v0.6.1
)

// CacheIndexOptions configures the index part of `llmgate bench cache`.
// Zero fields take the defaults of DefaultCacheIndexOptions.
type CacheIndexOptions struct {
	// Sizes are the entry counts measured, each with a fresh index. Default
	// 10k, 100k, 1M.
	Sizes []int
	// Dim is the vector length. Default 384 (small sentence embedders).
	Dim int
	// Queries is the number of lookups timed per index and k. Default 1000.
	Queries int
	// Impls are the implementations measured (ImplHNSW, ImplCoder). Default both.
	Impls []string
	// MaxCoder is the largest size measured for ImplCoder; larger sizes are
	// reported as skipped (its build is slow and its recall already known to
	// be poor at 100k). Default 100k.
	MaxCoder int
	// Noise is the norm of the Gaussian noise added to a stored vector to
	// make a query (the sum is renormalised). 0.3 gives cosine ≈ 0.96 to the
	// source, a near duplicate; random pairs sit near cosine 0. Default 0.3.
	Noise float64
	// Params configures both implementations; zero fields take
	// graph.DefaultParams.
	Params graph.Params
	// Seed makes the data and the queries reproducible.
	Seed uint64
	// Progress receives one line per phase. Nil: silent.
	Progress io.Writer
}

// DefaultCacheIndexOptions returns the defaults. A full default run builds a
// 1M-entry HNSW, which takes tens of minutes on a small machine (about 1-2 ms
// per insert at that size in pure Go), and needs about 3.5 GB of memory.
func DefaultCacheIndexOptions() CacheIndexOptions {
	return CacheIndexOptions{
		Sizes:    []int{10_000, 100_000, 1_000_000},
		Dim:      384,
		Queries:  1000,
		Impls:    []string{ImplHNSW, ImplCoder},
		MaxCoder: 100_000,
		Noise:    0.3,
	}
}

func (o CacheIndexOptions) withDefaults() (CacheIndexOptions, error) {
	def := DefaultCacheIndexOptions()
	if len(o.Sizes) == 0 {
		o.Sizes = def.Sizes
	}
	if o.Dim == 0 {
		o.Dim = def.Dim
	}
	if o.Queries == 0 {
		o.Queries = def.Queries
	}
	if len(o.Impls) == 0 {
		o.Impls = def.Impls
	}
	if o.MaxCoder == 0 {
		o.MaxCoder = def.MaxCoder
	}
	if o.Noise == 0 {
		o.Noise = def.Noise
	}
	for _, n := range o.Sizes {
		if n <= 0 {
			return o, fmt.Errorf("size %d is not positive", n)
		}
	}
	if o.Dim < 0 || o.Queries < 0 || o.MaxCoder < 0 || o.Noise < 0 {
		return o, fmt.Errorf("dim, queries, max coder and noise must not be negative")
	}
	for _, im := range o.Impls {
		if im != ImplHNSW && im != ImplCoder {
			return o, fmt.Errorf("unknown index %q (want %s or %s)", im, ImplHNSW, ImplCoder)
		}
	}
	return o, nil
}

// CacheIndexReport is the result of CacheIndex. Latencies are in
// microseconds.
type CacheIndexReport struct {
	StartedAt      time.Time    `json:"started_at"`
	ElapsedSeconds float64      `json:"elapsed_s"`
	CPUs           int          `json:"cpus"`
	Dim            int          `json:"dim"`
	Queries        int          `json:"queries"`
	Noise          float64      `json:"noise"`
	Params         graph.Params `json:"params"`
	// Rows has one row per size and implementation, sizes ascending.
	Rows []CacheIndexRow `json:"rows"`
}

// CacheIndexRow is one implementation at one size.
type CacheIndexRow struct {
	Impl string `json:"impl"`
	Size int    `json:"size"`
	// Skipped says why the row was not measured; the figures are then zero.
	Skipped string `json:"skipped,omitempty"`
	// BuildSeconds is the wall time of Size single-threaded Adds into an
	// empty index; InsertMicros is its mean per Add.
	BuildSeconds float64 `json:"build_s"`
	InsertMicros float64 `json:"insert_us"`
	// Search latency of one single-threaded Search, k=1 and k=4.
	P50K1Micros float64 `json:"p50_k1_us"`
	P99K1Micros float64 `json:"p99_k1_us"`
	P50K4Micros float64 `json:"p50_k4_us"`
	P99K4Micros float64 `json:"p99_k4_us"`
	// RecallAt1 is the fraction of near-duplicate queries whose k=1 result is
	// the exact nearest neighbour (brute force over the whole set).
	RecallAt1 float64 `json:"recall_at_1"`
	// BytesPerEntry is the live heap growth (after GC) caused by building the
	// index, divided by Size: vectors, links, id maps and spare slice
	// capacity. VectorBytesPerEntry is the raw vector alone, Dim*4.
	BytesPerEntry       float64 `json:"bytes_per_entry"`
	VectorBytesPerEntry int     `json:"vector_bytes_per_entry"`
}

// CacheIndex measures the nearest-neighbour indexes behind the semantic
// cache on random unit vectors: build time, lookup latency, top-1 recall
// against exact search for near-duplicate queries, and memory per entry. It
// runs in this process, one index at a time, and writes a text table to w.
//
// Random vectors are the hardest case for a graph index (no structure to
// navigate by), so recall here is a floor for real embeddings. Memory is the
// Go heap growth after a forced GC, so it only means something when nothing
// else in the process allocates meanwhile.
func CacheIndex(ctx context.Context, o CacheIndexOptions, w io.Writer) (*CacheIndexReport, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("cache index: %w", err)
	}
	progress := o.Progress
	if progress == nil {
		progress = io.Discard
	}
	rep := &CacheIndexReport{
		StartedAt: time.Now(),
		CPUs:      runtime.GOMAXPROCS(0),
		Dim:       o.Dim,
		Queries:   o.Queries,
		Noise:     o.Noise,
		Params:    o.Params,
	}
	sizes := slices.Clone(o.Sizes)
	slices.Sort(sizes)
	for _, n := range sizes {
		r := rand.New(rand.NewPCG(o.Seed, uint64(n)))
		fmt.Fprintf(progress, "cache index: %d entries: generating vectors and exact answers\n", n)
		data := randomUnitSlab(r, n, o.Dim)
		queries := make([][]float32, o.Queries)
		for i := range queries {
			src := r.IntN(n)
			queries[i] = nearDuplicateOf(r, data[src*o.Dim:(src+1)*o.Dim], o.Noise)
		}
		truth, err := exactNearestIDs(ctx, data, o.Dim, queries)
		if err != nil {
			return nil, fmt.Errorf("cache index: %w", err)
		}
		for _, im := range o.Impls {
			row := CacheIndexRow{Impl: im, Size: n, VectorBytesPerEntry: 4 * o.Dim}
			if im == ImplCoder && n > o.MaxCoder {
				row.Skipped = fmt.Sprintf("skipped: above MaxCoder %d", o.MaxCoder)
				fmt.Fprintf(progress, "cache index: %s at %d entries %s\n", im, n, row.Skipped)
				rep.Rows = append(rep.Rows, row)
				continue
			}
			fmt.Fprintf(progress, "cache index: %s at %d entries: building\n", im, n)
			if err := measureCacheIndex(ctx, &row, o, data, queries, truth); err != nil {
				return nil, fmt.Errorf("cache index: %s at %d entries: %w", im, n, err)
			}
			fmt.Fprintf(progress, "cache index: %s at %d entries: build %.1fs, recall@1 %.3f, p50 %.1fµs\n",
				im, n, row.BuildSeconds, row.RecallAt1, row.P50K1Micros)
			rep.Rows = append(rep.Rows, row)
		}
	}
	rep.ElapsedSeconds = time.Since(rep.StartedAt).Seconds()
	if w != nil {
		if err := rep.WriteTable(w); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

func newCacheIndex(impl string, p graph.Params) graph.Index {
	if impl == ImplCoder {
		return graph.NewCoder(p)
	}
	return graph.NewHNSW(p)
}

// measureCacheIndex builds one index over data and fills row.
func measureCacheIndex(ctx context.Context, row *CacheIndexRow, o CacheIndexOptions, data []float32, queries [][]float32, truth []uint64) error {
	n := len(data) / o.Dim
	heapBefore := liveHeapBytes()
	idx := newCacheIndex(row.Impl, o.Params)
	start := time.Now()
	for i := range n {
		if i%4096 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		idx.Add(uint64(i), data[i*o.Dim:(i+1)*o.Dim])
	}
	build := time.Since(start)
	row.BuildSeconds = build.Seconds()
	row.InsertMicros = durMicros(build) / float64(n)
	row.BytesPerEntry = float64(int64(liveHeapBytes())-int64(heapBefore)) / float64(n)

	if ctx.Err() != nil {
		return ctx.Err()
	}
	// Warm up caches and branch predictors on a few queries first.
	for _, q := range queries[:min(len(queries), 100)] {
		idx.Search(q, 1)
	}
	hits := 0
	lat := make([]time.Duration, len(queries))
	for i, q := range queries {
		t := time.Now()
		m := idx.Search(q, 1)
		lat[i] = time.Since(t)
		if len(m) > 0 && m[0].ID == truth[i] {
			hits++
		}
	}
	if len(queries) > 0 {
		row.RecallAt1 = float64(hits) / float64(len(queries))
	}
	p := Summarize(lat)
	row.P50K1Micros, row.P99K1Micros = durMicros(p.P50), durMicros(p.P99)
	for i, q := range queries {
		t := time.Now()
		idx.Search(q, 4)
		lat[i] = time.Since(t)
	}
	p = Summarize(lat)
	row.P50K4Micros, row.P99K4Micros = durMicros(p.P50), durMicros(p.P99)
	runtime.KeepAlive(idx)
	return nil
}

// liveHeap returns the heap in use after a full collection.
func liveHeapBytes() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func durMicros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// randomUnitSlab returns n random unit vectors of length dim, back to back.
func randomUnitSlab(r *rand.Rand, n, dim int) []float32 {
	data := make([]float32, n*dim)
	for i := range n {
		v := data[i*dim : (i+1)*dim]
		for j := range v {
			v[j] = float32(r.NormFloat64())
		}
		normaliseInPlace(v)
	}
	return data
}

// nearDuplicateOf returns v plus Gaussian noise of expected norm noise,
// renormalised.
func nearDuplicateOf(r *rand.Rand, v []float32, noise float64) []float32 {
	q := slices.Clone(v)
	sd := noise / math.Sqrt(float64(len(q)))
	for i := range q {
		q[i] += float32(r.NormFloat64() * sd)
	}
	return normaliseInPlace(q)
}

func normaliseInPlace(v []float32) []float32 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	if s == 0 {
		return v
	}
	f := float32(1 / math.Sqrt(s))
	for i := range v {
		v[i] *= f
	}
	return v
}

// exactNearestIDs returns, for each query, the id (row) of the nearest vector
// of data by brute force. Queries are split across GOMAXPROCS workers; each
// worker scans the whole set for its queries, so no state is shared but the
// output slots, one per query.
func exactNearestIDs(ctx context.Context, data []float32, dim int, queries [][]float32) ([]uint64, error) {
	out := make([]uint64, len(queries))
	n := len(data) / dim
	workers := min(runtime.GOMAXPROCS(0), max(len(queries), 1))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for qi := w; qi < len(queries); qi += workers {
				if ctx.Err() != nil {
					return
				}
				q := queries[qi]
				best, bestD := 0, float32(math.Inf(1))
				for i := range n {
					if d := graph.Distance(q, data[i*dim:(i+1)*dim]); d < bestD {
						best, bestD = i, d
					}
				}
				out[qi] = uint64(best)
			}
		})
	}
	wg.Wait()
	return out, ctx.Err()
}

// WriteTable writes the report as an aligned text table.
func (r *CacheIndexReport) WriteTable(w io.Writer) error {
	p := r.Params
	fmt.Fprintf(w, "llmgate bench cache (index): %d-d random unit vectors, %d near-duplicate queries (noise %.2f), %d CPU(s)\n",
		r.Dim, r.Queries, r.Noise, r.CPUs)
	fmt.Fprintf(w, "params (0 = default): M %d, EfConstruction %d, EfSearch %d\n\n", p.M, p.EfConstruction, p.EfSearch)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "index\tentries\tbuild\tinsert\tp50 k=1\tp99 k=1\tp50 k=4\tp99 k=4\trecall@1\tbytes/entry\tvector\t\n")
	for _, row := range r.Rows {
		name := fmt.Sprintf("%-10s", row.Impl)
		if row.Skipped != "" {
			fmt.Fprintf(tw, "%s\t%d\t%s\t\t\t\t\t\t\t\t\t\n", name, row.Size, row.Skipped)
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%.1fs\t%s\t%s\t%s\t%s\t%s\t%.3f\t%.0f\t%d\t\n", name, row.Size,
			row.BuildSeconds, fmtMicrosecs(row.InsertMicros),
			fmtMicrosecs(row.P50K1Micros), fmtMicrosecs(row.P99K1Micros),
			fmtMicrosecs(row.P50K4Micros), fmtMicrosecs(row.P99K4Micros),
			row.RecallAt1, row.BytesPerEntry, row.VectorBytesPerEntry)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\nrecall@1: top result equals the exact nearest (brute force). bytes/entry: Go heap growth after GC / entries.\n")
	return err
}

func fmtMicrosecs(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) + "µs" }
