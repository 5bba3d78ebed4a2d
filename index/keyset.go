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

// keyBitsPerHash is the set's size per hash held when it is built: one bit
// of sixteen set, so that about one absent hash in sixteen still asks the
// actor. It is rebuilt at one in eight.
const keyBitsPerHash = 16

func newKeySet(hashes int) *keySet {
	n := max(minKeyBits, 1<<bits.Len(uint(hashes*keyBitsPerHash)))
	return &keySet{words: make([]atomic.Uint64, n/64), mask: uint64(n - 1)}
}

// bit is h's position. The maps key by h's first 64 bits; the set reads
// the next 64, so that a collision of map keys is no collision here.
func (k *keySet) bit(h [32]byte) uint64 { return binary.LittleEndian.Uint64(h[8:16]) & k.mask }

// add sets h's bit (actor only).
func (k *keySet) add(h [32]byte) {
	b := k.bit(h)
	k.words[b/64].Or(1 << (b % 64))
}

// mayHold reports whether h may be in the maps: false means it is not.
func (k *keySet) mayHold(h [32]byte) bool {
	b := k.bit(h)
	return k.words[b/64].Load()&(1<<(b%64)) != 0
}

// full reports whether a set holding hashes should be rebuilt larger.
func (k *keySet) full(hashes int) bool { return uint64(hashes)*keyBitsPerHash/2 > k.mask+1 }
