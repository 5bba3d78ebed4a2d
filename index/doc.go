// Package index owns the semantic cache's state: the entries, the exact tier
// (canonical request hash → entry), the normalised tier (NormHash of the
// normalised dialog text → the newest entry with it), the semantic tier (one nearest-neighbour
// graph per Space), TTL expiry, max_entries eviction, persistence under
// Badger's "c/" prefix (tombstones under "t/"), the queries of the admin API
// (Get, List, Delete, Purge, Search, Stats) and the hooks of replication.
//
// It knows nothing of HTTP, embeddings or gossip: the node computes the
// request's Space, its CanonicalHash and its embedding and calls LookupExact,
// LookupSemantic and Store.
//
// # Replication
//
// Options.OnChange reports each local Store, Delete and Purge as a Change;
// AppendChange and DecodeChange put Changes on the wire; a peer applies them
// with Apply, or many at once with ApplyBatch, which persists a batch's
// entries together and hands them to their shards in parallel. A stored
// entry travels with its embedding, so no node embeds it again. Deletes and purges leave tombstones (an ID deleted, persisted with
// its expiry) and purge records (a partition and route purged before a time,
// kept for TTL), so that an entry on its way from a third node, or loaded
// from disk, or a local Store still queued behind a commit when the purge
// ran, never comes back. A purge tombstones every entry it removes,
// which lets anti-entropy carry it to a node that missed it.
//
// Anti-entropy: nodes compare Digests (256 buckets by ID, each the XOR of a
// mix of every live entry's ID and CreatedAt and every tombstone's ID, kept
// up to date by the shards), list the Versions of the buckets that differ,
// fetch what they lack with Export and Apply it. Unchanged buckets cost
// nothing, so a node back from a short absence fetches only what it missed.
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
// an actor. One thing callers read without a message: each shard's key set,
// a Bloom filter (two bits per hash) of the exact and normalised hashes it
// holds that only its actor writes (atomically, before the message that added them is answered), so
// that a keyed look-up of hashes it does not hold misses without a round
// trip. Calls that span shards (Get, Delete, Purge, List, unscoped
// Search, eviction) message every shard in parallel.
//
// Actors do no I/O. Disk writes happen in the calling goroutine
// (Delete, Purge, Apply, eviction) or in the sweeper and loader goroutines,
// using what the actor returned (stale IDs, tombstones), never by reading
// its maps; Export reads the disk in the caller's goroutine too. A Store
// queues its entry for one committer goroutine, which commits the entries
// of concurrent Stores in one transaction, adds them to their shards (one
// message per shard for the batch), evicts, reports them to OnChange and
// then tells each Store (StoreAsync: calls its done; Store waits for it). The
// guard (Options.Check) also runs in the caller's goroutine. Stats are atomics
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
//   - Store returns only after the entry is committed to Badger (in a
//     transaction shared with the Stores made meanwhile, which no timer
//     waits to fill: the committer only lets the goroutines already ready
//     run first): an acknowledged entry survives a process crash. Entries from peers
//     (Apply, ApplyBatch) are committed before they are added, so no lookup
//     returns an entry that a crash would lose. Badger's own TTL (expiry
//     plus a minute) is a safety net behind the sweep.
//   - Expired entries are misses at once (every check reads Options.Now);
//     the sweeper removes them about once a second.
//   - With MaxEntries, the entry that expires soonest (then the lower ID) is
//     evicted first, before the Store that overflowed returns. SetLimits
//     changes TTL and MaxEntries of a running cache (a configuration
//     reload): a smaller MaxEntries evicts before it returns; a new TTL
//     applies to entries stored from then on.
//   - Records of an internal Space (Space.Internal: the node's verdicts)
//     replicate, persist and expire like entries, but sit in their own
//     expiry heap and counters: MaxEntries neither counts nor evicts them,
//     Stats reports them apart, and List and Purge reach them only when
//     they name their partition or route.
//   - Entries handed out are copies whose slices are shared and never
//     written; an entry's stored fields never change after it is added (only
//     its hit count, which lives beside it).
//   - Until the background load of persisted entries ends (Ready), lookups
//     miss and Digest and Versions fail; Store, Delete, Purge and Apply
//     work, and what they remove is not brought back by the load.
//     Tombstones and purge records are loaded by Open itself.
//   - A tombstoned ID holds no entry. Each shard keeps a copy of the
//     tombstones of IDs that may land in it (by the deleted entry's Space,
//     or all of them when the Space is unknown), so it refuses a returning
//     entry on its own; the copy in the ID's counting shard (ID mod shards)
//     is the one counted in the Digest, listed by Versions and persisted.
//   - Changes made by Apply are never reported to OnChange: replication does
//     not loop.
package index
