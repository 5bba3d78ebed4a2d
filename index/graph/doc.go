// Package graph holds the nearest-neighbour indexes behind the semantic cache:
// HNSW (the default; a correct implementation of Malkov & Yashunin's
// algorithm), an adapter over github.com/coder/hnsw (selectable, and the
// reference in `bench cache`), and Flat, the exact brute-force search that
// recall is measured against.
//
// Vectors are unit length and compared by cosine distance (1 - dot product).
// HNSW walks its graph on int8 copies of the vectors (exact integer dot
// products, a quarter of the memory traffic; quant.go) and re-ranks the beam
// it ends with by the float32 vectors, so what it returns is exact;
// Params.Float32Walk walks the float32 vectors instead, without the copies.
// An Add of a vector that was just searched for (a cache miss stores the
// prompt it looked up) starts its neighbour search from the distances that
// search computed instead of computing them again, with a narrower beam
// where those distances show an easy neighbourhood (seeds.go).
// No implementation is safe for concurrent use: each is owned by one actor
// (a shard of the cache in package index) that serialises every call.
// Implementations copy the vectors they are given; callers may reuse them.
//
// Deletes in the graph indexes are tombstones: a deleted entry is never
// returned but stays in the graph as a waypoint until tombstones pass a
// quarter of the entries, when the graph is rebuilt from the live entries
// (in place for HNSW). Removing nodes from a navigable graph one at a time is
// what corrupts coder/hnsw v0.6.1 under churn; a rebuild cannot leave
// dangling links.
package graph
