// Package index will own the semantic cache: the exact tier (canonical request
// hash) and the semantic tier (an HNSW graph over prompt embeddings), each owned
// by actors and persisted to Badger, and the guard that refuses near-misses.
//
// It must know nothing of HTTP or gossip: the node looks entries up and stores
// them through a small interface, and the cluster package carries entries
// between nodes. (Filled by the semantic-cache work; empty until then.)
package index
