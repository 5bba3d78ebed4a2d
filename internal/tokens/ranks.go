package tokens

import (
	"errors"
	"hash/maphash"
	"math/bits"
	"strings"
)

// rankTable maps the bytes of a token to its rank (its id), the lookup that
// dominates counting. It is an open-addressing hash table with linear
// probing over one string holding every token, built once and then only
// read: about twice as fast as a Go map for short keys, and smaller.
type rankTable struct {
	seed  maphash.Seed
	mask  uint64
	slots []rankSlot
	bytes string // every token, end to end; slots point into it
	hot   hotTable
}

type rankSlot struct {
	tag  uint32 // high bits of the hash, never 0 in a used slot
	off  uint32
	rank uint32
	n    uint32
}

// newRankTable builds the table of toks, where toks[i] is the token of rank
// i and "" marks a rank with no token.
func newRankTable(toks []string) (*rankTable, error) {
	n, size := 0, 0
	for _, t := range toks {
		if t != "" {
			n++
			size += len(t)
		}
	}
	if n < 256 {
		return nil, errors.New("vocabulary has fewer than 256 tokens")
	}
	var b strings.Builder
	b.Grow(size)
	for _, t := range toks {
		b.WriteString(t)
	}
	slots := 1 << bits.Len(uint(2*n)) // load factor at most 1/2
	t := &rankTable{seed: maphash.MakeSeed(), mask: uint64(slots - 1), slots: make([]rankSlot, slots), bytes: b.String()}
	off := 0
	for rank, tok := range toks {
		if tok == "" {
			continue
		}
		h := maphash.String(t.seed, tok)
		i := h & t.mask
		for t.slots[i].tag != 0 {
			if t.key(i) == tok {
				return nil, errors.New("vocabulary has a duplicate token")
			}
			i = (i + 1) & t.mask
		}
		t.slots[i] = rankSlot{tag: tagOf(h), off: uint32(off), rank: uint32(rank), n: uint32(len(tok))}
		off += len(tok)
	}
	t.hot = newHotTable(toks)
	return t, nil
}

// isToken reports whether p is a token: rank(p) != noRank, found first
// among the hot tokens where it can be.
func (t *rankTable) isToken(p string) bool {
	return t.hot.has(p) || t.rank(p) != noRank
}

func tagOf(h uint64) uint32 { return uint32(h>>32) | 1 }

func (t *rankTable) key(i uint64) string {
	s := &t.slots[i]
	return t.bytes[s.off : s.off+s.n]
}

// rank returns the rank of p, or noRank if p is not a token.
func (t *rankTable) rank(p string) uint32 {
	h := maphash.String(t.seed, p)
	tag := tagOf(h)
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		s := &t.slots[i]
		if s.tag == 0 {
			return noRank
		}
		if s.tag == tag && int(s.n) == len(p) && t.bytes[s.off:s.off+s.n] == p {
			return s.rank
		}
	}
}
