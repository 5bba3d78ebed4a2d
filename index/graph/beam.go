package graph

// beam is searchLayer's working set in one sorted array, instead of a
// min-heap of candidates beside a max-heap of results: the nodes found so
// far, nearest first, at most ef of them counted as results, each flagged
// once expanded. The next node to expand is the nearest unexpanded one, so
// the walk is the paper's (Algorithm 2): a candidate the heaps would hold
// beyond the farthest kept result could only end the walk when popped, and
// the beam drops it at once. Keeping 100 items sorted costs a binary search
// and a short copy per insertion; the two heaps cost about three sifts per
// node kept (push, replace, pop) and a final pop of every result.
//
// A search that returns live nodes only (liveOnly) still walks through
// tombstones: they sit in the beam flagged dead, expanded but not counted
// among the ef results, and dropped once they lie beyond the farthest result.
type beam struct {
	a    []beamItem // nearest first; ties in insertion order
	ef   int        // results kept
	live int        // items not dead: the results
	next int        // every item before next is expanded
}

type beamItem struct {
	item
	done bool // expanded
	dead bool // a tombstone walked through by a liveOnly search: not a result
}

func (b *beam) reset(ef int) { b.a, b.ef, b.live, b.next = b.a[:0], ef, 0, 0 }

// refuses reports whether a node at distance d would not enter the beam:
// ef results are held and the farthest of them, the beam's last item, is no
// farther than d.
func (b *beam) refuses(d float32) bool { return b.live >= b.ef && d >= b.a[len(b.a)-1].d }

// add puts it in its place; the caller has checked refuses. A result beyond
// ef drops the farthest result, and a full beam drops the tombstones past
// its farthest result.
func (b *beam) add(it item, dead bool) {
	lo := b.place(it.d)
	b.a = append(b.a, beamItem{})
	copy(b.a[lo+1:], b.a[lo:])
	b.a[lo] = beamItem{item: it, dead: dead}
	b.next = min(b.next, lo)
	if dead {
		return
	}
	b.live++
	if b.live < b.ef {
		return
	}
	n := len(b.a)
	if b.live > b.ef {
		for n--; b.a[n].dead; n-- { // the farthest result, and tombstones past it
		}
		b.live--
	}
	for n > 0 && b.a[n-1].dead {
		n--
	}
	b.a = b.a[:n]
}

// place returns the index of the first item farther than d (len(b.a) if
// none is). The binary search has no branch on the comparisons (the
// comparison is a SETcc and its result a mask): they are unpredictable,
// and a mispredicted branch at every step cost more than the rest of add.
func (b *beam) place(d float32) int {
	a := b.a
	if len(a) == 0 {
		return 0
	}
	base, n := 0, len(a)
	for n > 1 {
		half := n >> 1
		le := 0
		if a[base+half].d <= d {
			le = 1 // SETCC, where base += half would be a branch
		}
		base += half & -le
		n -= half
	}
	if a[base].d <= d {
		base++
	}
	return base
}

// take returns the nearest unexpanded item, flagged expanded; false when
// every item is.
func (b *beam) take() (item, bool) {
	for b.next < len(b.a) && b.a[b.next].done {
		b.next++
	}
	if b.next >= len(b.a) {
		return item{}, false
	}
	b.a[b.next].done = true
	b.next++
	return b.a[b.next-1].item, true
}

// peek returns the item take would return next, without taking it; false
// when there is none.
func (b *beam) peek() (item, bool) {
	for i := b.next; i < len(b.a); i++ {
		if !b.a[i].done {
			return b.a[i].item, true
		}
	}
	return item{}, false
}

// results appends the results, nearest first, to out.
func (b *beam) results(out []item) []item {
	for _, x := range b.a {
		if !x.dead {
			out = append(out, x.item)
		}
	}
	return out
}
