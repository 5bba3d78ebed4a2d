package index

import (
	"encoding/binary"
	"math/bits"
	"sync/atomic"
)

// keySet is a shard's summary of the request and dialog hashes its exact
// and normalised maps hold, that callers read without a message to the
// actor: a hash whose bit is clear is in neither map, so LookupKeyed
// answers a miss without the round trip (a cache whose requests all miss
// made one per request for nothing). A set bit says nothing: the actor
// decides, as before.
//
// Only the shard's actor writes it: it sets a hash's bit before the hash
// enters a map, and builds a fresh set (published whole, with every hash
// the maps hold) when the set grows too full, or when the hashes removed
// since the last build outnumber those held, so that stale bits never pile
// up. A caller that loaded the set before an add may miss that add, as it
// would have if its message had reached the actor first.
type keySet struct {
	words []atomic.Uint64
	mask  uint64 // bits - 1
}

// minKeyBits is the smallest set, in bits (512 bytes).
const minKeyBits = 1 << 12

// keyBitsPerHash is the set's size per hash held when it is built, and
// each hash sets two bits (a Bloom filter of two probes): an absent hash
// asks the actor about one time in 270 when the set is built and one in 70
// before it is rebuilt, at twice the size. With one bit of sixteen, each
// absent hash asked one time in 16 to 8, and a miss, with two hashes, made
// the round trip for nothing about one time in six (measured: 9-22 %),
// behind the shard's graph work.
const keyBitsPerHash = 32

func newKeySet(hashes int) *keySet {
	n := max(minKeyBits, 1<<bits.Len(uint(hashes*keyBitsPerHash)))
	return &keySet{words: make([]atomic.Uint64, n/64), mask: uint64(n - 1)}
}

// probes are h's two positions. The maps key by h's first 64 bits; the set
// reads the next 128, so that a collision of map keys is no collision here.
func (k *keySet) probes(h [32]byte) (uint64, uint64) {
	return binary.LittleEndian.Uint64(h[8:16]) & k.mask, binary.LittleEndian.Uint64(h[16:24]) & k.mask
}

// add sets h's bits (actor only).
func (k *keySet) add(h [32]byte) {
	a, b := k.probes(h)
	k.words[a/64].Or(1 << (a % 64))
	k.words[b/64].Or(1 << (b % 64))
}

// mayHold reports whether h may be in the maps: false means it is not.
func (k *keySet) mayHold(h [32]byte) bool {
	a, b := k.probes(h)
	return k.words[a/64].Load()&(1<<(a%64)) != 0 && k.words[b/64].Load()&(1<<(b%64)) != 0
}

// full reports whether a set holding hashes should be rebuilt larger.
func (k *keySet) full(hashes int) bool { return uint64(hashes)*keyBitsPerHash/2 > k.mask+1 }
