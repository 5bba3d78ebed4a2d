// Package index owns the semantic cache's state: the entries, the exact tier
// (canonical request hash → entry), the semantic tier (one nearest-neighbour
// graph per Space), TTL expiry, max_entries eviction, persistence under
// Badger's "c/" prefix, and the queries of the admin API (Get, List, Delete,
// Purge, Search, Stats).
//
// It knows nothing of HTTP, embeddings or gossip: the node computes the
// request's Space, its CanonicalHash and its embedding and calls LookupExact,
// LookupSemantic and Store; the cluster package will carry entries between
// nodes with Insert, Delete and Purge.
//
// # Actor model
//
// A Cache runs Options.Shards actors. Each shard is one goroutine that alone
// owns its entries map (id → record), its exact map (hash → id), its
// per-Space graphs (graph.Index is not safe for concurrent use) and its
// expiry heap. A Space maps to one shard by hash, so an entry's exact and
// semantic tiers live in the same actor and agree. Callers send closures on
// the shard's inbox and wait on a buffered(1) reply channel, giving up when
// their ctx ends or the cache closes: a slow or departed caller never blocks
// an actor. Calls that span shards (Get, Delete, Purge, List, unscoped
// Search, eviction) message every shard in parallel.
//
// Actors do no I/O. Disk writes happen in the calling goroutine (Store,
// Delete, Purge, eviction) or in the sweeper and loader goroutines, using
// what the actor returned (stale IDs), never by reading its maps. The guard
// (Options.Check) also runs in the caller's goroutine. Stats are atomics
// the actors update; reading them sends no message.
//
// # Invariants
//
//   - Nothing matches across Spaces: exact lookups check the entry's Space,
//     and each graph holds the vectors of one Space (and one vector length).
//   - An entry is in the entries map iff it is in the expiry heap, in its
//     graph (when it has a vector) and, unless a newer entry took its hash,
//     in the exact map. Removal (expiry, eviction, Delete, Purge,
//     replacement) takes it out of all of them, then off the disk.
//   - Store returns only after the entry is committed to Badger: an
//     acknowledged entry survives a process crash. Badger's own TTL (expiry
//     plus a minute) is a safety net behind the sweep.
//   - Expired entries are misses at once (every check reads Options.Now);
//     the sweeper removes them about once a second.
//   - With MaxEntries, the entry that expires soonest (then the lower ID) is
//     evicted first, before the Store that overflowed returns.
//   - Entries handed out are copies whose slices are shared and never
//     written; an entry's stored fields never change after it is added (only
//     its hit count, which lives beside it).
//   - Until the background load of persisted entries ends (Ready), lookups
//     miss; Store, Delete and Purge work, and what they remove is not
//     brought back by the load.
package index
