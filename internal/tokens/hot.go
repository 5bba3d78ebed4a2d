package tokens

import "math/bits"

// hotTable is the set of the encoding's most frequent short tokens, for the
// question countPiece asks of every piece: is it a token? A rank table
// lookup reads a slot and then the token's bytes, two places in about 10 MB;
// at a few hundred requests per second other work evicts both from the
// core's caches between requests, and counting a prompt then waits on two
// cache misses per piece. Here a token is its own key (its bytes and length
// in 16 bytes), so a lookup reads one slot of a 1 MB table, usually one
// cache line, and that smaller table stays cached longer. Most pieces of
// ordinary text are there (70 to 90 % of English prose and code); the others
// go on to the rank table. Built once from the ranks, then only read.
type hotTable struct {
	shift    uint // 64 - log2(len(slots))
	maxProbe int  // the longest probe any member needs: lookups stop there
	slots    []hotKey
}

// hotKey is a token of at most hotMaxLen bytes: bytes 0-7 in lo, bytes 8-14
// and the length (top byte) in hi, so no member is the zero key.
type hotKey struct{ lo, hi uint64 }

const (
	hotMaxLen = 15
	// hotRanks: the tokens of lower rank are candidates. Byte-pair ranks
	// are the order of the merges, which is the order of frequency in the
	// tokenizer's training text.
	hotRanks = 1 << 15
	hotBits  = 16 // 2^16 slots of 16 bytes: 1 MB, at most half full
)

// hotKeyOf returns the key of p, 1 to hotMaxLen bytes, with whole-word
// loads (overlapping ones for lengths that are not a power of two, whose
// common bytes agree).
func hotKeyOf(p string) hotKey {
	n := len(p)
	var k hotKey
	switch {
	case n >= 8:
		k.lo = load64(p)
		k.hi = load64(p[n-8:]) >> (8 * (16 - n)) // bytes 8..n-1
	case n >= 4:
		k.lo = uint64(load32(p)) | uint64(load32(p[n-4:]))<<(8*(n-4))
	default:
		for i := range n {
			k.lo |= uint64(p[i]) << (8 * i)
		}
	}
	k.hi |= uint64(n) << 56
	return k
}

func load64(p string) uint64 {
	_ = p[7]
	return uint64(p[0]) | uint64(p[1])<<8 | uint64(p[2])<<16 | uint64(p[3])<<24 |
		uint64(p[4])<<32 | uint64(p[5])<<40 | uint64(p[6])<<48 | uint64(p[7])<<56
}

func load32(p string) uint32 {
	_ = p[3]
	return uint32(p[0]) | uint32(p[1])<<8 | uint32(p[2])<<16 | uint32(p[3])<<24
}

func (t *hotTable) index(k hotKey) uint64 {
	h := k.lo*0x9e3779b97f4a7c15 + bits.RotateLeft64(k.hi, 29)*0xc2b2ae3d27d4eb4f
	h ^= h >> 31
	return (h * 0xff51afd7ed558ccd) >> t.shift
}

// newHotTable returns the hot set of toks (toks[i] is the token of rank i).
func newHotTable(toks []string) hotTable {
	t := hotTable{shift: 64 - hotBits, slots: make([]hotKey, 1<<hotBits)}
	mask := uint64(len(t.slots) - 1)
	for _, tok := range toks[:min(len(toks), hotRanks)] {
		if tok == "" || len(tok) > hotMaxLen {
			continue
		}
		k := hotKeyOf(tok)
		i, probe := t.index(k), 1
		for t.slots[i] != (hotKey{}) {
			i, probe = (i+1)&mask, probe+1
		}
		t.slots[i] = k
		t.maxProbe = max(t.maxProbe, probe)
	}
	return t
}

// has reports whether p is one of the hot tokens.
func (t *hotTable) has(p string) bool {
	if len(p) > hotMaxLen || len(p) == 0 {
		return false
	}
	k := hotKeyOf(p)
	mask := uint64(len(t.slots) - 1)
	i := t.index(k)
	for range t.maxProbe {
		s := t.slots[i]
		if s == k {
			return true
		}
		if s == (hotKey{}) {
			return false
		}
		i = (i + 1) & mask
	}
	return false
}
