package affinity

import (
	"hash/maphash"
	"math/bits"
	"time"
)

// idFilter answers "certainly not persisted" for most new response ids, so
// that a creation's first-owner check does not read Badger (a look-up
// through its memtables and levels, the largest part of a batch's write).
// It is a Bloom filter of every id persisted (and not yet expired): a miss
// is certain, a hit only possible, and then Badger is read as before.
//
// It holds ids in generations, each the ids added within an eighth of the
// TTL (or until it is full), dropped as a whole once every id in it
// expired, so its size follows the live ids (10 bits each, a generation
// sized by the last one's) rather than every id ever seen. It is complete
// only once the Store has added the ids the database held when it opened
// (ready); until then, and when it would hold more than maxFilterIDs,
// every check reads Badger.
//
// Not safe for concurrent use: the Store guards it with its written mutex.
type idFilter struct {
	seed  maphash.Seed
	span  int64 // how long a generation takes ids (ms)
	gens  []*filterGen
	ready bool // every id persisted before the store opened was added
	off   bool // too many ids: checks read the database
	ids   int  // in gens
	room  int  // ids gens were sized for (their memory: filterBitsPer each)
}

// filterGen is one generation: blocks of 512 bits, each id setting
// filterProbes bits of one block (one cache line per look-up).
type filterGen struct {
	blocks [][8]uint64
	ids    int
	cap    int   // ids it takes before the next generation starts
	start  int64 // unix ms of its first id
	until  int64 // the latest expiry of its ids (unix ms)
}

const (
	filterProbes  = 6
	filterBitsPer = 10       // bits per id: a full generation makes under 1% of new ids reads
	minFilterGen  = 1 << 14  // ids of the first generation
	maxFilterIDs  = 64 << 20 // room for ids: 80 MB; beyond, no filter
	filterSpans   = 8        // generations per TTL
	minFilterSpan = int64(time.Minute / time.Millisecond)
)

func newIDFilter(ttl time.Duration) *idFilter {
	return &idFilter{seed: maphash.MakeSeed(), span: max(ttl.Milliseconds()/filterSpans, minFilterSpan)}
}

func newFilterGen(capacity int, now int64) *filterGen {
	n := (capacity*filterBitsPer + 511) / 512
	return &filterGen{blocks: make([][8]uint64, n), cap: capacity, start: now}
}

// hash is id's hash, from which each generation takes a block and bits.
func (f *idFilter) hash(id string) uint64 { return maphash.String(f.seed, id) }

// at returns h's block and a word whose top bits, 9 per probe, pick the
// bits h sets in it.
func (g *filterGen) at(h uint64) (*[8]uint64, uint64) {
	hi, _ := bits.Mul64(h, uint64(len(g.blocks)))
	return &g.blocks[hi], h * 0x9e3779b97f4a7c15
}

func (g *filterGen) add(h uint64) {
	b, m := g.at(h)
	for i := range filterProbes {
		bit := m >> (55 - 9*i) & 511
		b[bit>>6] |= 1 << (bit & 63)
	}
}

func (g *filterGen) has(h uint64) bool {
	b, m := g.at(h)
	for i := range filterProbes {
		bit := m >> (55 - 9*i) & 511
		if b[bit>>6]&(1<<(bit&63)) == 0 {
			return false
		}
	}
	return true
}

// add records that id is persisted until expires (unix ms).
func (f *idFilter) add(id string, expires, now int64) {
	if f.off {
		return
	}
	f.drop(now)
	g := f.newest()
	if g == nil || g.ids >= g.cap || now-g.start >= f.span {
		capacity := minFilterGen
		if g != nil {
			if g.ids >= g.cap {
				capacity = 2 * g.cap // filled within a span: the next one is larger
			} else {
				capacity = max(minFilterGen, g.ids+g.ids/4) // as many as the last span's, and some
			}
		}
		if f.room+capacity > maxFilterIDs {
			f.off, f.gens = true, nil
			return
		}
		g = newFilterGen(capacity, now)
		f.gens = append(f.gens, g)
		f.room += capacity
	}
	g.add(f.hash(id))
	g.ids++
	f.ids++
	g.until = max(g.until, expires)
}

// absent reports whether id is certainly not persisted (unexpired).
func (f *idFilter) absent(id string) bool {
	if !f.ready || f.off {
		return false
	}
	h := f.hash(id)
	for _, g := range f.gens {
		if g.has(h) {
			return false
		}
	}
	return true
}

func (f *idFilter) newest() *filterGen {
	if len(f.gens) == 0 {
		return nil
	}
	return f.gens[len(f.gens)-1]
}

// drop forgets the generations whose ids have all expired (Badger no
// longer returns them).
func (f *idFilter) drop(now int64) {
	newest := f.newest()
	keep := f.gens[:0]
	for _, g := range f.gens {
		if g.until > now || g == newest {
			keep = append(keep, g)
		} else {
			f.ids -= g.ids
			f.room -= g.cap
		}
	}
	clear(f.gens[len(keep):])
	f.gens = keep
}
