package graph

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/llmgate/llmgate/internal/embed"
)

// recallAt1 queries x and the exact ref with near duplicates of stored
// vectors and returns the fraction of queries whose top result agrees.
func recallAt1(x Index, ref *Flat, queries [][]float32) float64 {
	hit := 0
	for _, q := range queries {
		want := ref.Search(q, 1)
		got := x.Search(q, 1)
		if len(got) > 0 && len(want) > 0 && got[0].ID == want[0].ID {
			hit++
		}
	}
	return float64(hit) / float64(len(queries))
}

// recallEntries is how many entries the large recall tests build: 20,000,
// fewer with -short, and fewer still under the race detector, which slows
// this single-goroutine arithmetic about fifteenfold and adds nothing here.
func recallEntries() int {
	switch {
	case raceEnabled:
		return 1_000
	case testing.Short():
		return 3_000
	}
	return 20_000
}

// TestHNSWRecallEmbeddedPrompts: the cache's own workload with the default
// parameters. The vectors are the local embedder's of generated prompts; a
// query is a stored prompt with one word dropped and its case changed.
func TestHNSWRecallEmbeddedPrompts(t *testing.T) {
	for _, walk := range []bool{false, true} {
		t.Run(fmt.Sprintf("float32walk=%v", walk), func(t *testing.T) {
			testRecallEmbeddedPrompts(t, Params{Float32Walk: walk})
		})
	}
}

func testRecallEmbeddedPrompts(t *testing.T, p Params) {
	n := recallEntries()
	r := rand.New(rand.NewPCG(7, 7))
	emb := embed.NewLocal()
	vocab := strings.Fields(`how do i what is the can you my our team service cluster deploy key token
model request error timeout retry cache memory latency region quota limit user account password email
file database table query index server client network proxy gateway build test release version update
install configure monitor alert log metric debug scale backup restore migrate secure rotate policy role
access group project budget cost invoice payment order customer product price search report schedule`)
	x, ref := NewHNSW(p), NewFlat()
	prompts := make([][]string, n)
	for i := range prompts {
		words := make([]string, 0, 16)
		for range 8 + r.IntN(9) {
			words = append(words, vocab[r.IntN(len(vocab))])
		}
		prompts[i] = words
		v := emb.Embed(strings.Join(words, " ") + "?")
		x.Add(uint64(i), v)
		ref.Add(uint64(i), v)
	}
	queries := make([][]float32, 500)
	for i := range queries {
		words := slices.Clone(prompts[r.IntN(n)])
		drop := r.IntN(len(words))
		words = append(words[:drop], words[drop+1:]...)
		queries[i] = emb.Embed(strings.ToUpper(strings.Join(words, " ")))
	}
	if got := recallAt1(x, ref, queries); got < 0.99 {
		t.Fatalf("top-1 recall at %d entries = %.3f, want >= 0.99", n, got)
	}
}

// TestHNSWRecallRandom384: the cache's workload in its hardest form. Random
// 384-d unit vectors have no structure to navigate by, and a cache lookup is
// a near duplicate of one stored entry; top-1 must agree with exact search.
// No embedder produces such vectors; they need a wider beam than the
// default to keep recall at 0.99 (see Params.EfSearch).
func TestHNSWRecallRandom384(t *testing.T) {
	n := recallEntries()
	r := rand.New(rand.NewPCG(10, 10))
	x, ref := NewHNSW(Params{Seed: 3, EfSearch: 64}), NewFlat()
	vecs := make([][]float32, n)
	for i := range vecs {
		vecs[i] = randUnit(r, 384)
		x.Add(uint64(i), vecs[i])
		ref.Add(uint64(i), vecs[i])
	}
	queries := make([][]float32, 500)
	for i := range queries {
		queries[i] = nearDup(r, vecs[r.IntN(n)], 0.3)
	}
	if got := recallAt1(x, ref, queries); got < 0.99 {
		t.Fatalf("top-1 recall at %d entries = %.3f, want >= 0.99", n, got)
	}
}

// TestHNSWRecallClustered: tight clusters are where a graph without the
// selection heuristic loses its way (all links stay inside one cluster).
func TestHNSWRecallClustered(t *testing.T) {
	const dim, clusters = 64, 50
	per := 200
	if raceEnabled || testing.Short() {
		per = 30
	}
	r := rand.New(rand.NewPCG(11, 11))
	x, ref := NewHNSW(Params{Seed: 4}), NewFlat()
	centres := make([][]float32, clusters)
	for i := range centres {
		centres[i] = randUnit(r, dim)
	}
	var vecs [][]float32
	for i := range clusters * per {
		v := nearDup(r, centres[i%clusters], 0.3)
		vecs = append(vecs, v)
		x.Add(uint64(i), v)
		ref.Add(uint64(i), v)
	}
	queries := make([][]float32, 500)
	for i := range queries {
		queries[i] = nearDup(r, vecs[r.IntN(len(vecs))], 0.05)
	}
	if got := recallAt1(x, ref, queries); got < 0.99 {
		t.Fatalf("clustered top-1 recall = %.3f, want >= 0.99", got)
	}
}

// TestHNSWRecallAfterChurn: compaction rebuilds the graph in place; recall
// must survive many rebuilds and the tombstones between them.
func TestHNSWRecallAfterChurn(t *testing.T) {
	const dim = 128
	n := 4000
	switch {
	case raceEnabled:
		n = 500
	case testing.Short():
		n = 1000
	}
	r := rand.New(rand.NewPCG(12, 12))
	x, ref := NewHNSW(Params{Seed: 5}), NewFlat()
	live := map[uint64][]float32{}
	next := uint64(0)
	for range 3 * n {
		v := randUnit(r, dim)
		x.Add(next, v)
		ref.Add(next, v)
		live[next] = v
		next++
		if len(live) > n {
			// Evict roughly the oldest, as an LRU cache would.
			for id := next - uint64(len(live)); ; id++ {
				if _, ok := live[id]; ok {
					x.Delete(id)
					ref.Delete(id)
					delete(live, id)
					break
				}
			}
		}
	}
	checkInvariants(t, x)
	var queries [][]float32
	for id := next - uint64(n); id < next; id += 7 {
		queries = append(queries, nearDup(r, live[id], 0.5))
	}
	if got := recallAt1(x, ref, queries); got < 0.99 {
		t.Fatalf("top-1 recall after churn = %.3f, want >= 0.99", got)
	}
}

func TestHNSWCompactsAndStaysValid(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 13))
	x := NewHNSW(Params{M: 4, Seed: 6})
	for id := range uint64(400) {
		x.Add(id, randUnit(r, 16))
	}
	entryID := x.ids[x.entry]
	x.Delete(entryID) // the entry point: still walked as a tombstone
	checkInvariants(t, x)
	if x.tombs != 1 {
		t.Fatalf("tombstones = %d after one delete, want 1", x.tombs)
	}
	for id := range uint64(400) {
		if id != entryID && id%3 != 0 {
			x.Delete(id)
		}
		if x.tombs*4 > len(x.ids) {
			t.Fatalf("after deleting %d: %d tombstones in %d slots, above a quarter", id, x.tombs, len(x.ids))
		}
	}
	checkInvariants(t, x)
	if len(x.ids) >= 400 {
		t.Fatalf("%d slots after deleting two thirds: no compaction happened", len(x.ids))
	}
	for id := uint64(0); id < 400; id += 3 {
		if id == entryID {
			continue
		}
		v := x.vec(x.slot[id])
		if got := x.Search(v, 1); len(got) != 1 || got[0].ID != id {
			t.Fatalf("after compaction, Search for id %d = %v", id, got)
		}
	}
}

func TestHNSWIsDeterministic(t *testing.T) {
	build := func() *HNSW {
		r := rand.New(rand.NewPCG(14, 14))
		x := NewHNSW(Params{Seed: 7})
		for id := range uint64(600) {
			x.Add(id%400, randUnit(r, 24)) // includes re-adds and a compaction
			if id%5 == 0 {
				x.Delete(id / 2)
			}
		}
		return x
	}
	a, b := build(), build()
	if !slices.EqualFunc(a.links0.chunks, b.links0.chunks, slices.Equal) || !slices.Equal(a.up, b.up) || a.entry != b.entry {
		t.Fatal("two graphs built with the same seed and calls differ")
	}
}

// checkInvariants asserts the structural invariants stated on HNSW.
func checkInvariants(t *testing.T, x *HNSW) {
	t.Helper()
	n := len(x.ids)
	if x.vecs.rows != n || len(x.levels) != n || x.links0.rows != n || len(x.mark) != n {
		t.Fatalf("slabs disagree on the slot count %d", n)
	}
	if x.p.Float32Walk {
		if x.q8.rows != 0 || len(x.qs) != 0 {
			t.Fatalf("a float32 walk holds %d int8 rows and %d scales", x.q8.rows, len(x.qs))
		}
	} else {
		if x.q8.rows != n || len(x.qs) != n {
			t.Fatalf("int8 slabs (%d rows, %d scales) disagree on the slot count %d", x.q8.rows, len(x.qs), n)
		}
		// Every slot's int8 copy is its own vector's, also after
		// compaction moved it.
		q := make([]int8, x.dim)
		for s := range uint32(n) {
			sc := quantize(q, x.vec(s))
			if got := x.qvecOf(s); !slices.Equal(got.q, q) || got.scale != sc {
				t.Fatalf("slot %d: int8 copy is not its vector's", s)
			}
		}
	}
	live := 0
	for s := range uint32(n) {
		if x.isDead(s) {
			continue
		}
		live++
		if got, ok := x.slot[x.ids[s]]; !ok || got != s {
			t.Fatalf("live slot %d (id %d) is not the slot its id maps to (%d)", s, x.ids[s], got)
		}
	}
	if live != len(x.slot) || n-live != x.tombs {
		t.Fatalf("%d live slots, %d tombstones counted; map holds %d ids, tombs = %d", live, n-live, len(x.slot), x.tombs)
	}
	if n > 0 && int(x.levels[x.entry]) != x.top {
		t.Fatalf("entry %d has level %d, top is %d", x.entry, x.levels[x.entry], x.top)
	}
	for s := range uint32(n) {
		if int(x.levels[s]) > x.top {
			t.Fatalf("slot %d has level %d above the top %d", s, x.levels[s], x.top)
		}
		for l := 0; l <= int(x.levels[s]); l++ {
			b := x.links(s, l)
			if int(b[0]) > len(b)-1 {
				t.Fatalf("slot %d layer %d: %d links, capacity %d", s, l, b[0], len(b)-1)
			}
			seen := map[uint32]bool{}
			for _, o := range b[1 : 1+b[0]] {
				switch {
				case o == s:
					t.Fatalf("slot %d links to itself on layer %d", s, l)
				case int(o) >= n:
					t.Fatalf("slot %d links to slot %d of %d on layer %d", s, o, n, l)
				case int(x.levels[o]) < l:
					t.Fatalf("slot %d links on layer %d to slot %d of level %d", s, l, o, x.levels[o])
				case seen[o]:
					t.Fatalf("slot %d links twice to %d on layer %d", s, o, l)
				}
				seen[o] = true
			}
		}
	}
}

func TestHNSWInvariantsUnderChurn(t *testing.T) {
	for _, walk := range []bool{false, true} {
		t.Run(fmt.Sprintf("float32walk=%v", walk), func(t *testing.T) {
			testInvariantsUnderChurn(t, Params{M: 6, EfConstruction: 40, Seed: 8, Float32Walk: walk})
		})
	}
}

func testInvariantsUnderChurn(t *testing.T, p Params) {
	r := rand.New(rand.NewPCG(15, 15))
	x := NewHNSW(p)
	for op := range 5000 {
		id := uint64(r.IntN(800))
		if r.IntN(3) == 0 {
			x.Delete(id)
		} else {
			x.Add(id, randUnit(r, 12))
		}
		if op%500 == 0 {
			checkInvariants(t, x)
		}
	}
	checkInvariants(t, x)
}

// BenchmarkSearch measures one k=1 near-duplicate lookup at a few sizes.
func BenchmarkSearch(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		for _, im := range []struct {
			name string
			new  func() Index
		}{
			{"hnsw", func() Index { return NewHNSW(Params{Seed: 1}) }},
			{"coder", func() Index { return NewCoder(Params{Seed: 1}) }},
		} {
			b.Run(fmt.Sprintf("%s/n=%d", im.name, n), func(b *testing.B) {
				r := rand.New(rand.NewPCG(16, 16))
				x := im.new()
				vecs := make([][]float32, n)
				for i := range vecs {
					vecs[i] = randUnit(r, 384)
					x.Add(uint64(i), vecs[i])
				}
				queries := make([][]float32, 1000)
				for i := range queries {
					queries[i] = nearDup(r, vecs[r.IntN(n)], 0.3)
				}
				for i := 0; b.Loop(); i++ { // b.Loop times only the loop
					x.Search(queries[i%len(queries)], 1)
				}
			})
		}
	}
}

// BenchmarkInsert384 builds a graph of n random 384-d unit vectors with the
// default parameters (Dot dominates the build) and reports inserts per second.
func BenchmarkInsert384(b *testing.B) {
	const n = 20_000
	r := rand.New(rand.NewPCG(17, 17))
	vecs := make([][]float32, n)
	for i := range vecs {
		vecs[i] = randUnit(r, 384)
	}
	for _, k := range dotKernels() {
		b.Run("kernel="+k.name, func(b *testing.B) {
			defer useKernel(b, k)()
			for b.Loop() {
				x := NewHNSW(Params{Seed: 1})
				for i, v := range vecs {
					x.Add(uint64(i), v)
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "inserts/s")
		})
	}
}

// TestHNSWSearchDistancesAreExact: the int8 walk's distances are
// approximate, but Search re-ranks its beam: every match carries the exact
// float32 distance, nearest first, as the float32 walk's do.
func TestHNSWSearchDistancesAreExact(t *testing.T) {
	r := rand.New(rand.NewPCG(18, 18))
	for _, walk := range []bool{false, true} {
		x := NewHNSW(Params{Seed: 9, Float32Walk: walk})
		vecs := map[uint64][]float32{}
		for id := range uint64(2000) {
			vecs[id] = randUnit(r, 48)
			x.Add(id, vecs[id])
		}
		for range 200 {
			q := nearDup(r, vecs[uint64(r.IntN(2000))], 0.2)
			ms := x.Search(q, 8)
			if len(ms) != 8 {
				t.Fatalf("float32walk=%v: %d matches, want 8", walk, len(ms))
			}
			for i, m := range ms {
				if want := Distance(q, vecs[m.ID]); m.Distance != want {
					t.Fatalf("float32walk=%v: match %d (id %d) has distance %v, exact %v", walk, i, m.ID, m.Distance, want)
				}
				if i > 0 && m.Distance < ms[i-1].Distance {
					t.Fatalf("float32walk=%v: matches out of order: %v", walk, ms)
				}
			}
		}
	}
}

// TestBeamKeepsTheEfNearest: after any sequence of offers, the beam's
// results are the ef nearest live items offered, nearest first; a tombstone
// it holds lies within them; take hands out each item held once, the
// nearest unexpanded first.
func TestBeamKeepsTheEfNearest(t *testing.T) {
	for _, k := range placeKernels() {
		t.Run(k, func(t *testing.T) {
			defer usePlaceKernel(k)()
			testBeamKeepsTheEfNearest(t)
		})
	}
}

func testBeamKeepsTheEfNearest(t *testing.T) {
	r := rand.New(rand.NewPCG(40, 40))
	var b beam
	for round := range 200 {
		ef := 1 + r.IntN(40)
		b.reset(ef)
		var live []item
		taken := map[uint32]bool{}
		for i := range 300 {
			it := item{float32(r.IntN(1 << 20)), uint32(i)}
			dead := r.IntN(4) == 0
			if !dead {
				live = append(live, it)
			}
			if !b.refuses(it.d) {
				b.add(it, dead)
			}
			if r.IntN(10) == 0 {
				if c, ok := b.take(); ok {
					if taken[c.s] {
						t.Fatalf("round %d: item %d taken twice", round, c.s)
					}
					taken[c.s] = true
					for i, x := range b.m {
						if x&beamDone == 0 && b.d[i] < c.d {
							t.Fatalf("round %d: took %v before the nearer %v", round, c, item{b.d[i], x % beamSlots})
						}
					}
				}
			}
		}
		slices.SortFunc(live, cmpItem)
		want := live[:min(ef, len(live))]
		got := b.results(nil)
		if !slices.EqualFunc(got, want, func(a, b item) bool { return a.d == b.d }) {
			t.Fatalf("round %d (ef %d): results %v, want %v", round, ef, got, want)
		}
		for i, x := range b.m {
			if x&beamDead != 0 && len(got) == ef && b.d[i] >= got[len(got)-1].d {
				t.Fatalf("round %d: tombstone %v kept past the farthest result %v", round, item{b.d[i], x % beamSlots}, got[len(got)-1])
			}
		}
	}
}

// placeKernels lists the ways beam.place can run on this CPU.
func placeKernels() []string {
	if haveAVX512 {
		return []string{"go", "avx512"}
	}
	return []string{"go"}
}

// haveAVX512 records whether this CPU can run countLE, before any test
// switches useAVX512.
var haveAVX512 = useAVX512

// usePlaceKernel makes beam.place run k until the returned function
// restores the CPU's choice.
func usePlaceKernel(k string) (restore func()) {
	useAVX512 = k == "avx512"
	return func() { useAVX512 = haveAVX512 }
}

// TestBeamPlaceIsTheFirstFarther: place finds the first item farther than
// d, ties (frequent among int8 distances) going after their equals, at
// every length around the kernel's 16-wide steps, reading nothing past the
// beam (the slots past it hold distances that would count).
func TestBeamPlaceIsTheFirstFarther(t *testing.T) {
	for _, k := range placeKernels() {
		t.Run(k, func(t *testing.T) {
			defer usePlaceKernel(k)()
			r := rand.New(rand.NewPCG(41, 41))
			var b beam
			for round := range 3000 {
				n := round % 131
				buf := make([]float32, n+20)
				for i := range buf {
					buf[i] = -1 // past the beam: no greater than any d
				}
				b.d = buf[:n]
				for i := range b.d {
					b.d[i] = float32(r.IntN(9))
				}
				slices.Sort(b.d)
				d := float32(r.IntN(11) - 1)
				want := n
				for i, x := range b.d {
					if x > d {
						want = i
						break
					}
				}
				if got := b.place(d); got != want {
					t.Fatalf("place(%v) in %d items = %d, want %d", d, n, got, want)
				}
			}
		})
	}
}

// BenchmarkBeam replays the distances a layer-0 search of the overhead
// benchmark's prompts computed, in their order, into a beam of
// EfConstruction, expanding the nearest item after every 24 (the mean count
// of unvisited neighbours): the beam's bookkeeping alone, without the graph.
func BenchmarkBeam(b *testing.B) {
	vecs := promptVectors(5_000, 26)
	x := NewHNSW(Params{})
	for i, v := range vecs[:4_000] {
		x.Add(uint64(i), v)
	}
	var runs [][]item
	for _, v := range vecs[4_000:] {
		x.Search(v, 1)
		runs = append(runs, slices.Clone(x.visited))
	}
	var bm beam
	for i := 0; b.Loop(); i++ {
		bm.reset(100)
		for j, it := range runs[i%len(runs)] {
			if !bm.refuses(it.d) {
				bm.add(it, false)
			}
			if j%24 == 0 {
				bm.take()
			}
		}
	}
}

// TestSortNearlySortedIsSortFunc: the re-rank's insertion sort orders as
// slices.SortFunc with cmpItem, ties in distance by slot, from any order.
func TestSortNearlySortedIsSortFunc(t *testing.T) {
	r := rand.New(rand.NewPCG(42, 42))
	for round := range 500 {
		a := make([]item, r.IntN(70))
		for i := range a {
			a[i] = item{float32(r.IntN(12)) / 8, uint32(r.IntN(1000) + i*1000)}
		}
		if round%2 == 0 { // nearly sorted, as after a re-rank
			slices.SortFunc(a, cmpItem)
			for range 3 {
				if len(a) > 1 {
					i := r.IntN(len(a) - 1)
					a[i], a[i+1] = a[i+1], a[i]
				}
			}
		}
		want := slices.Clone(a)
		slices.SortFunc(want, cmpItem)
		sortNearlySorted(a)
		if !slices.Equal(a, want) {
			t.Fatalf("round %d: %v, want %v", round, a, want)
		}
	}
}
