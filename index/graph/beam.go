package graph

// beam is searchLayer's working set in one sorted array, instead of a
// min-heap of candidates beside a max-heap of results: the nodes found so
// far, nearest first, at most ef of them counted as results, each flagged
// once expanded. The next node to expand is the nearest unexpanded one, so
// the walk is the paper's (Algorithm 2): a candidate the heaps would hold
// beyond the farthest kept result could only end the walk when popped, and
// the beam drops it at once. Keeping 100 items sorted costs finding the
// place and a short copy per insertion; the two heaps cost about three sifts
// per node kept (push, replace, pop) and a final pop of every result.
//
// The distances are an array of their own (d), beside the slots and flags
// (m): the place of a new item is the count of distances no greater than
// its own, which AVX-512 counts 16 at a time (countLE). The flags live in
// the top two bits of the slot (HNSW's slots stay below 2^30), so the
// copies that make room move 8 bytes per item, not the 16 of a distance
// beside a padded struct of slot and flags, nor 12 with a separate array of
// them.
//
// A search that returns live nodes only (liveOnly) still walks through
// tombstones: they sit in the beam flagged dead, expanded but not counted
// among the ef results, and dropped once they lie beyond the farthest result.
type beam struct {
	d    []float32 // nearest first; ties in insertion order
	m    []uint32  // m[i] is d[i]'s slot, with the flags beamDone and beamDead
	ef   int       // results kept
	live int       // items not dead: the results
	next int       // every item before next is expanded
}

const (
	beamDone  = 1 << 31 // expanded
	beamDead  = 1 << 30 // a tombstone walked through by a liveOnly search: not a result
	beamSlots = 1 << 30 // slots are below it: the bits above are the flags
)

func (b *beam) reset(ef int) { b.d, b.m, b.ef, b.live, b.next = b.d[:0], b.m[:0], ef, 0, 0 }

// refuses reports whether a node at distance d would not enter the beam:
// ef results are held and the farthest of them, the beam's last item, is no
// farther than d.
func (b *beam) refuses(d float32) bool { return b.live >= b.ef && d >= b.d[len(b.d)-1] }

// add puts it in its place; the caller has checked refuses. A result beyond
// ef drops the farthest result, and a full beam drops the tombstones past
// its farthest result.
func (b *beam) add(it item, dead bool) {
	lo := b.place(it.d)
	b.d = append(b.d, 0)
	copy(b.d[lo+1:], b.d[lo:])
	b.d[lo] = it.d
	b.m = append(b.m, 0)
	copy(b.m[lo+1:], b.m[lo:])
	m := it.s
	if dead {
		m |= beamDead
	}
	b.m[lo] = m
	b.next = min(b.next, lo)
	if dead {
		return
	}
	b.live++
	if b.live < b.ef {
		return
	}
	n := len(b.m)
	if b.live > b.ef {
		for n--; b.m[n]&beamDead != 0; n-- { // the farthest result, and tombstones past it
		}
		b.live--
	}
	for n > 0 && b.m[n-1]&beamDead != 0 {
		n--
	}
	b.d, b.m = b.d[:n], b.m[:n]
}

// place returns the index of the first item farther than d (len(b.d) if
// none is): the count of distances no greater than d, the array being
// sorted.
func (b *beam) place(d float32) int {
	if useAVX512 {
		return countLE(b.d, d)
	}
	return placeGeneric(b.d, d)
}

// placeGeneric is place by binary search, without a branch on the
// comparisons (each is a SETcc and its result a mask): they are
// unpredictable, and a mispredicted branch at every step cost more than the
// rest of add.
func placeGeneric(a []float32, d float32) int {
	if len(a) == 0 {
		return 0
	}
	base, n := 0, len(a)
	for n > 1 {
		half := n >> 1
		le := 0
		if a[base+half] <= d {
			le = 1
		}
		base += half & -le
		n -= half
	}
	if a[base] <= d {
		base++
	}
	return base
}

// take returns the nearest unexpanded item, flagged expanded; false when
// every item is.
func (b *beam) take() (item, bool) {
	for b.next < len(b.m) && b.m[b.next]&beamDone != 0 {
		b.next++
	}
	if b.next >= len(b.m) {
		return item{}, false
	}
	b.m[b.next] |= beamDone
	b.next++
	return item{b.d[b.next-1], b.m[b.next-1] % beamSlots}, true
}

// peek returns the item take would return next, without taking it; false
// when there is none.
func (b *beam) peek() (item, bool) {
	for i := b.next; i < len(b.m); i++ {
		if b.m[i]&beamDone == 0 {
			return item{b.d[i], b.m[i] % beamSlots}, true
		}
	}
	return item{}, false
}

// results appends the results, nearest first, to out.
func (b *beam) results(out []item) []item {
	for i, x := range b.m {
		if x&beamDead == 0 {
			out = append(out, item{b.d[i], x % beamSlots})
		}
	}
	return out
}
