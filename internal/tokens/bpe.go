package tokens

import (
	"fmt"
	"hash/maphash"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/tiktoken-go/tokenizer"
)

// encoder counts tokens of one encoding: it splits text into pieces with a
// hand-written equivalent of the encoding's split pattern, and counts each
// piece by looking it up in the rank table, in a small cache of pieces that
// are not tokens, or else by byte-pair merging with the ranks. Counting
// allocates nothing unless a piece is new to the cache or longer than
// maxScanPiece bytes.
type encoder struct {
	ranks   *rankTable
	classes *classTable
	o200k   bool // which split pattern: o200k_base's, else cl100k_base's
	cache   pieceCache
	scratch sync.Pool // *mergeScratch for pieces longer than maxScanPiece
	texts   textCache // counts of repeated message texts (CountChat)
}

// Tables shared by every Counter of the process: they are immutable and
// derived only from the tokenizer's vocabularies, which the tokenizer itself
// keeps for the life of the process once loaded. Building them costs about
// 100 ms and 10 MB per encoding, which a process (a node and its built-in
// mock, a test binary) pays once rather than per Counter.
var (
	sharedClasses = sync.OnceValue(newClassTable)
	sharedO200k   = sync.OnceValues(func() (*rankTable, error) { return loadRanks(tokenizer.O200kBase) })
	sharedCl100k  = sync.OnceValues(func() (*rankTable, error) { return loadRanks(tokenizer.Cl100kBase) })
)

// newEncoder returns an encoder of enc with caches of its own.
func newEncoder(enc tokenizer.Encoding) (*encoder, error) {
	load := sharedO200k
	if enc == tokenizer.Cl100kBase {
		load = sharedCl100k
	}
	ranks, err := load()
	if err != nil {
		return nil, err
	}
	e := &encoder{ranks: ranks, classes: sharedClasses(), o200k: enc == tokenizer.O200kBase}
	e.cache.seed, e.texts.seed = maphash.MakeSeed(), maphash.MakeSeed()
	e.scratch.New = func() any { return new(mergeScratch) }
	return e, nil
}

// loadRanks builds the rank table of enc from the tokenizer's vocabulary,
// read back token by token through Decode (the tokenizer exports no rank
// table).
func loadRanks(enc tokenizer.Encoding) (*rankTable, error) {
	codec, err := tokenizer.Get(enc)
	if err != nil {
		return nil, fmt.Errorf("loading encoding %s: %w", enc, err)
	}
	var toks []string
	// Token ids are dense from 0; special tokens, which the split text can
	// never produce, sit past the end with gaps and are not in the table.
	const maxGap = 1 << 12
	var id [1]uint
	for gap := 0; gap < maxGap; id[0]++ {
		tok, err := codec.Decode(id[:])
		if err != nil || tok == "" {
			gap++
			toks = append(toks, "")
			continue
		}
		gap = 0
		toks = append(toks, tok)
	}
	ranks, err := newRankTable(toks)
	if err != nil {
		return nil, fmt.Errorf("loading encoding %s: %w", enc, err)
	}
	return ranks, nil
}

// count returns the number of tokens of text.
func (e *encoder) count(text string) int {
	if !utf8.ValidString(text) {
		// The tokenizer splits runes, where each invalid byte is U+FFFD,
		// and merges the bytes of the pieces it cut from those runes.
		text = string([]rune(text))
	}
	n := 0
	for i := 0; i < len(text); {
		var end int
		var ok bool
		if e.o200k {
			end, ok = e.classes.splitO200k(text, i)
		} else {
			end, ok = e.classes.splitCl100k(text, i)
		}
		if ok {
			n += e.countPiece(text[i:end])
		}
		i = end
	}
	return n
}

// countPiece returns the number of tokens of one piece of split text.
func (e *encoder) countPiece(p string) int {
	if len(p) > maxExactPiece {
		return e.countLongPiece(p)
	}
	if e.ranks.isToken(p) {
		return 1
	}
	if n, ok := e.cache.get(p); ok {
		return n
	}
	var n int
	if len(p) <= maxScanPiece {
		n = e.mergeScan(p)
	} else {
		s := e.scratch.Get().(*mergeScratch)
		n = e.mergeHeap(p, s)
		if cap(s.nodes) <= maxPooledScratch {
			e.scratch.Put(s)
		}
	}
	e.cache.put(p, n)
	return n
}

const (
	noRank = math.MaxUint32
	// maxScanPiece is the longest piece merged by rescanning its parts
	// (quadratic, on the stack); longer ones use a heap.
	maxScanPiece = 96
	// maxPooledScratch bounds the merge scratch kept for reuse, in parts.
	maxPooledScratch = 4 * maxExactPiece
	// maxExactPiece is the longest piece merged whole. Only one enormous
	// word or whitespace run is longer; merging it whole would cost memory
	// and time in proportion to a whole request body.
	maxExactPiece = 16 << 10
)

// countLongPiece counts a piece longer than maxExactPiece in parts of that
// size, cut at rune boundaries; the sum may differ from the exact count by
// about a token per cut. A part equal to the one before (a long run of one
// character or pattern) is counted once.
func (e *encoder) countLongPiece(p string) int {
	n, prev, prevN := 0, "", 0
	for p != "" {
		cut := min(len(p), maxExactPiece)
		for cut < len(p) && !utf8.RuneStart(p[cut]) {
			cut--
		}
		if part := p[:cut]; part != prev {
			prev, prevN = part, e.countPiece(part)
		}
		n += prevN
		p = p[cut:]
	}
	return n
}

// mergeScan counts the parts byte-pair encoding merges p into: it merges the
// adjacent pair of lowest rank, leftmost first, until no pair is a token.
func (e *encoder) mergeScan(p string) int {
	type part struct {
		off  int32
		rank uint32 // of this part merged with the next
	}
	var buf [maxScanPiece + 1]part
	parts := buf[:len(p)+1]
	for i := range parts {
		parts[i] = part{int32(i), noRank}
	}
	pairRank := func(i, skip int) uint32 {
		if i+skip+2 < len(parts) {
			return e.ranks.rank(p[parts[i].off:parts[i+skip+2].off])
		}
		return noRank
	}
	for i := 0; i < len(parts)-2; i++ {
		parts[i].rank = pairRank(i, 0)
	}
	for len(parts) > 1 {
		minRank, minIdx := uint32(noRank), 0
		for i, pt := range parts[:len(parts)-1] {
			if pt.rank < minRank {
				minRank, minIdx = pt.rank, i
			}
		}
		if minRank == noRank {
			break
		}
		parts[minIdx].rank = pairRank(minIdx, 1)
		if minIdx > 0 {
			parts[minIdx-1].rank = pairRank(minIdx-1, 1)
		}
		parts = append(parts[:minIdx+1], parts[minIdx+2:]...)
	}
	return len(parts) - 1
}

// mergeScratch is the reusable memory of mergeHeap.
type mergeScratch struct {
	nodes []mergeNode
	heap  mergeHeap
}

// mergeNode is a part boundary in a doubly linked list; rank is that of the
// token this part and the next would merge into.
type mergeNode struct {
	prev, next int32
	rank       uint32
}

// mergeHeap gives the same count as mergeScan in O(n log n): candidate pairs
// wait in a heap ordered by rank then offset, and stale ones are skipped.
func (e *encoder) mergeHeap(p string, s *mergeScratch) int {
	n := int32(len(p))
	nodes := s.nodes[:0]
	for i := range n + 1 {
		nodes = append(nodes, mergeNode{prev: i - 1, next: i + 1, rank: noRank})
	}
	nodes[n].next = -1
	s.nodes = nodes
	rankOf := func(i int32) uint32 {
		j := nodes[i].next
		if j < 0 {
			return noRank
		}
		k := nodes[j].next
		if k < 0 {
			return noRank
		}
		return e.ranks.rank(p[i:k])
	}
	h := s.heap[:0]
	for i := int32(0); i+2 <= n; i++ {
		if r := rankOf(i); r != noRank {
			nodes[i].rank = r
			h = append(h, mergeCandidate{r, i})
		}
	}
	h.init()
	parts := n
	for len(h) > 0 {
		top := h.pop()
		i := top.offset
		if nodes[i].rank != top.rank {
			continue // stale: the pair changed since it was pushed
		}
		j := nodes[i].next
		k := nodes[j].next
		nodes[j].rank = noRank
		nodes[i].next = k
		if k >= 0 {
			nodes[k].prev = i
		}
		parts--
		for _, b := range [2]int32{i, nodes[i].prev} {
			if b < 0 {
				continue
			}
			nodes[b].rank = rankOf(b)
			if nodes[b].rank != noRank {
				h.push(mergeCandidate{nodes[b].rank, b})
			}
		}
	}
	s.heap = h
	return int(parts)
}

type mergeCandidate struct {
	rank   uint32
	offset int32
}

// mergeHeap is a binary min-heap of candidates by rank, then offset, so that
// among equal ranks the leftmost pair merges first.
type mergeHeap []mergeCandidate

func (h mergeHeap) less(a, b int) bool {
	if h[a].rank != h[b].rank {
		return h[a].rank < h[b].rank
	}
	return h[a].offset < h[b].offset
}

func (h mergeHeap) init() {
	for i := len(h)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

func (h *mergeHeap) push(c mergeCandidate) {
	*h = append(*h, c)
	h.up(len(*h) - 1)
}

func (h *mergeHeap) pop() mergeCandidate {
	old := *h
	top := old[0]
	last := len(old) - 1
	old[0] = old[last]
	*h = old[:last]
	h.down(0)
	return top
}

func (h mergeHeap) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if !h.less(i, parent) {
			return
		}
		h[i], h[parent] = h[parent], h[i]
		i = parent
	}
}

func (h mergeHeap) down(i int) {
	for {
		child := 2*i + 1
		if child >= len(h) {
			return
		}
		if right := child + 1; right < len(h) && h.less(right, child) {
			child = right
		}
		if !h.less(child, i) {
			return
		}
		h[i], h[child] = h[child], h[i]
		i = child
	}
}

// pieceCache remembers the counts of recent pieces that are not single
// tokens (words rare enough to need merging, but repeated across prompts).
// It is two-way set-associative: a piece may sit in either slot of its set,
// and a new piece takes an empty slot or else replaces one of the two. Readers
// and writers share it without locks through atomic pointers.
type pieceCache struct {
	seed  maphash.Seed
	slots [cacheSlots]atomic.Pointer[cacheEntry]
}

const (
	cacheSlots = 1 << 13
	// maxCachedPiece bounds the cache's memory (about 8192 × 64 bytes).
	maxCachedPiece = 64
)

type cacheEntry struct {
	piece string
	n     int
}

func (c *pieceCache) set(p string) (uint64, uint64) {
	h := maphash.String(c.seed, p)
	i := h % cacheSlots &^ 1
	return i, h
}

func (c *pieceCache) get(p string) (int, bool) {
	if len(p) > maxCachedPiece {
		return 0, false
	}
	i, _ := c.set(p)
	for j := i; j < i+2; j++ {
		if ent := c.slots[j].Load(); ent != nil && ent.piece == p {
			return ent.n, true
		}
	}
	return 0, false
}

func (c *pieceCache) put(p string, n int) {
	if len(p) > maxCachedPiece {
		return
	}
	i, h := c.set(p)
	switch {
	case c.slots[i].Load() == nil:
	case c.slots[i+1].Load() == nil:
		i++
	default:
		i += h >> 63
	}
	// Clone: p points into a request body the cache must not keep alive.
	c.slots[i].Store(&cacheEntry{piece: strings.Clone(p), n: n})
}
