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
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/llmgate/llmgate/index/graph"
	"github.com/llmgate/llmgate/internal/embed"
)

// Data sets of CacheIndex.
const (
	DataPrompts = "prompts" // the local embedder's vectors of generated prompts
	DataRandom  = "random"  // random unit vectors (see Latent)
)

// How CacheIndex builds an index.
const (
	// BuildAdd adds each vector, and nothing else.
	BuildAdd = "add"
	// BuildMiss searches for each vector (k=4, as a cache look-up does) just
	// before adding it, as a cache miss does: its look-up, then its store.
	// HNSW's insert then starts from that search's distances (see
	// graph.HNSW), so this is the graph a cache builds.
	BuildMiss = "miss"
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
	// Latent, when positive, draws the stored vectors near a random
	// Latent-dimensional subspace (a Gaussian mix of Latent random directions
	// plus noise of norm 0.3) instead of uniformly on the sphere. Real
	// sentence embeddings have such low intrinsic dimension, and a graph
	// index navigates them far better: at 100k entries HNSW's recall@1 is
	// 1.000 with Latent 24 from EfSearch 16 up, against 0.88 at EfSearch 64
	// on uniform data. Default 0: uniform, the worst case.
	Latent int
	// Data is what the vectors are: DataPrompts (default) embeds generated
	// prompts with the cache's own local embedder, queries being prompts
	// with one word dropped and their case and punctuation changed;
	// DataRandom uses random unit vectors (Latent, Noise) instead.
	Data string
	// Build is how the index is built: BuildAdd (default) or BuildMiss.
	Build string
	// Params configures both implementations; zero fields take
	// graph.DefaultParams.
	Params graph.Params
	// Seed makes the data and the queries reproducible.
	Seed uint64
	// Progress receives one line per phase. Nil: silent.
	Progress io.Writer
}

// DefaultCacheIndexOptions returns the defaults. A full default run builds a
// 1M-entry HNSW of uniform vectors, which takes over an hour on a 2-CPU
// machine (inserts already cost about 3 ms each at 100k) and needs about
// 4 GB of memory; pass smaller Sizes for a quick look.
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
	if o.Data == "" {
		o.Data = DataPrompts
	}
	if o.Data != DataPrompts && o.Data != DataRandom {
		return o, fmt.Errorf("unknown data %q (want %s or %s)", o.Data, DataPrompts, DataRandom)
	}
	if o.Data == DataPrompts {
		o.Dim = embed.Dim
	}
	if o.Build == "" {
		o.Build = BuildAdd
	}
	if o.Build != BuildAdd && o.Build != BuildMiss {
		return o, fmt.Errorf("unknown build %q (want %s or %s)", o.Build, BuildAdd, BuildMiss)
	}
	if o.Dim < 0 || o.Queries < 0 || o.MaxCoder < 0 || o.Noise < 0 || o.Latent < 0 {
		return o, fmt.Errorf("dim, queries, max coder, noise and latent must not be negative")
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
	Latent         int          `json:"latent"`
	Data           string       `json:"data"`
	Build          string       `json:"build"`
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
	// empty index (with BuildMiss, each after its Search); InsertMicros is
	// its mean per Add.
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
// cache on o.Data (embedded prompts by default, or random unit vectors):
// build time, lookup latency, top-1 recall against exact search for
// near-duplicate queries, and memory per entry. It runs in this process, one
// index at a time, and writes a text table to w.
//
// Uniform random vectors are the hardest case for a graph index (no
// structure to navigate by), so recall on them is a floor for real
// embeddings. Memory is the Go heap growth after a forced GC, so it only
// means something when nothing else in the process allocates meanwhile.
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
		Latent:    o.Latent,
		Data:      o.Data,
		Build:     o.Build,
		Params:    o.Params,
	}
	var emb *embed.Local
	if o.Data == DataPrompts {
		emb = embed.NewLocal()
	}
	sizes := slices.Clone(o.Sizes)
	slices.Sort(sizes)
	for _, n := range sizes {
		r := rand.New(rand.NewPCG(o.Seed, uint64(n)))
		fmt.Fprintf(progress, "cache index: %d entries: generating vectors and exact answers\n", n)
		var data []float32
		queries := make([][]float32, o.Queries)
		if emb != nil {
			data, queries = promptSlab(r, emb, n, o.Queries)
		} else {
			data = randomUnitSlab(r, n, o.Dim, o.Latent)
			for i := range queries {
				src := r.IntN(n)
				queries[i] = nearDuplicateOf(r, data[src*o.Dim:(src+1)*o.Dim], o.Noise)
			}
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
		v := data[i*o.Dim : (i+1)*o.Dim]
		if o.Build == BuildMiss {
			idx.Search(v, 4)
		}
		idx.Add(uint64(i), v)
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

// liveHeapBytes returns the heap in use after a full collection.
func liveHeapBytes() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func durMicros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// randomUnitSlab returns n random unit vectors of length dim, back to back:
// uniform on the sphere, or near a random latent-dimensional subspace when
// latent > 0 (see CacheIndexOptions.Latent).
func randomUnitSlab(r *rand.Rand, n, dim, latent int) []float32 {
	basis := make([]float32, latent*dim)
	for j := range basis {
		basis[j] = float32(r.NormFloat64())
	}
	data := make([]float32, n*dim)
	for i := range n {
		v := data[i*dim : (i+1)*dim]
		if latent == 0 {
			for j := range v {
				v[j] = float32(r.NormFloat64())
			}
			normaliseInPlace(v)
			continue
		}
		for b := range latent {
			z := float32(r.NormFloat64())
			for j, x := range basis[b*dim : (b+1)*dim] {
				v[j] += z * x
			}
		}
		copy(v, nearDuplicateOf(r, normaliseInPlace(v), 0.3))
	}
	return data
}

// promptSlab embeds n generated prompts and, for queries of them picked at
// random, a near duplicate: one word dropped, lower case, no question mark.
func promptSlab(r *rand.Rand, emb *embed.Local, n, queries int) ([]float32, [][]float32) {
	dim := emb.Dim()
	data := make([]float32, 0, n*dim)
	prompts := make([][]string, n)
	vocab := strings.Fields(promptVocabulary)
	for i := range n {
		words := generatedPrompt(r, vocab)
		prompts[i] = words
		data = append(data, emb.Embed(strings.Join(words, " ")+"?")...)
	}
	qs := make([][]float32, queries)
	for i := range qs {
		words := slices.Clone(prompts[r.IntN(n)])
		drop := r.IntN(len(words))
		words = append(words[:drop], words[drop+1:]...)
		qs[i] = emb.Embed(strings.ToLower(strings.Join(words, " ")))
	}
	return data, qs
}

// generatedPrompt is 8 to 24 words drawn with a Zipf-like skew from a list
// of common words, plus a number: distinct prompts with the word statistics
// of real text, so many share their frequent words.
func generatedPrompt(r *rand.Rand, vocab []string) []string {
	n := 8 + r.IntN(17)
	words := make([]string, 0, n+1)
	for range n {
		i := int(math.Floor(math.Pow(r.Float64(), 2.5) * float64(len(vocab))))
		words = append(words, vocab[i])
	}
	return append(words, strconv.Itoa(r.IntN(1000)))
}

// promptVocabulary is common English and technical words, most frequent first.
const promptVocabulary = `the to of and a in is it you that for on with how what can be this are do
my i your not from at have or by as an if was will we about which when there their use more one all
they so get would what's make like time just know take people into year good some could them see other
than then now look only come its over think also back after work first well way even new want because
any these give day most us data service cluster deploy key token model request error timeout retry
cache memory latency region quota limit user team account password email file database table query
index server client network proxy gateway container image build test release version update upgrade
install configure monitor alert log metric trace debug scale backup restore migrate secure encrypt
rotate policy role permission access group project budget cost invoice payment order customer product
price discount shipping delivery store search report dashboard chart export import schedule job queue
stream batch event message topic channel webhook api endpoint route header body status code response
python java go rust javascript typescript sql linux windows kubernetes docker azure openai cloud storage
bucket disk cpu gpu node pod namespace secret certificate domain dns load balancer firewall vpn
explain summarise translate write compare list describe fix improve optimise review check convert
why where who which should would might must best fastest cheapest simple short long large small
morning evening weekly monthly today tomorrow yesterday hour minute second week month quarter`

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
	switch {
	case r.Data == DataPrompts:
		fmt.Fprintf(w, "llmgate bench cache (index): %d-d local-embedder vectors of generated prompts, %d near-duplicate queries (a word dropped, lower case), %d CPU(s)\n",
			r.Dim, r.Queries, r.CPUs)
	default:
		data := "uniform on the sphere"
		if r.Latent > 0 {
			data = fmt.Sprintf("near a random %d-d subspace", r.Latent)
		}
		fmt.Fprintf(w, "llmgate bench cache (index): %d-d unit vectors %s, %d near-duplicate queries (noise %.2f), %d CPU(s)\n",
			r.Dim, data, r.Queries, r.Noise, r.CPUs)
	}
	build := "each vector added"
	if r.Build == BuildMiss {
		build = "each vector searched for, then added (as cache misses build it)"
	}
	fmt.Fprintf(w, "params (0 = default): M %d, EfConstruction %d, EfSearch %d; %s\n\n", p.M, p.EfConstruction, p.EfSearch, build)
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
