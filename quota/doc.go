// Package quota owns token accounting per consumer: sliding 60-second TPM
// windows and fixed UTC calendar-period quotas, held in sharded actors and
// snapshotted to Badger. It knows nothing of HTTP, tokenizers or gossip: the
// node reserves an estimate before forwarding a call (Reserve) and settles it
// from the reply's usage (Settle); a future cluster package feeds remote nodes'
// usage in through Merge; the admin API reads Status/List and calls SetLimits.
//
// # What it owns
//
//   - One counter per (consumer, counter key). The key "" is the consumer
//     itself; any other key ("team-a/route:gpt-4o", "team-a/user:bob") is a
//     separate counter to which the consumer's limits apply independently, as
//     APIM's counter-key does.
//   - In each counter, usage per origin node per one-second bucket (the last
//     64 buckets) and per origin per calendar period. This node's own usage is
//     origin Options.NodeName; remote origins arrive through Merge.
//   - The effective limits of every configured consumer: configuration,
//     overridden by run-time changes persisted under store.PrefixLimits.
//   - Its keys in the node database: store.PrefixQuota (counters) and
//     store.PrefixLimits (run-time limit changes). Nothing else.
//
// # Invariants
//
//   - A reservation is settled exactly once: Settle removes it from its
//     shard's table of outstanding reservations, so a second Settle (or a copy
//     of the Reservation) is a no-op. A reservation never settled keeps its
//     estimate charged; it is forgotten after an hour.
//   - TPM never over-admits: admission at bucket b counts every bucket from
//     b-60 to b inclusive (61 one-second buckets cover any 60 s interval that
//     ends in bucket b), so the reservations admitted in any true 60-second
//     interval, counted at their reservation time, never sum to more than the
//     TPM limit. Settling with more than the estimate may exceed it; that is
//     reported (Remaining clamps at 0) and delays later admissions.
//   - A request larger than the TPM limit or the whole period quota is refused
//     at once (ReasonTooLarge) and never charged.
//   - Merge is a max per (origin, bucket): replayed, duplicated or reordered
//     merges never double-count. A merge for a bucket older than the 64 held
//     buckets, or more than a few seconds in the future, is ignored.
//   - Quota periods are UTC calendar periods; weeks start on Monday.
//
// # Concurrency model
//
// Counters are sharded by a hash of (consumer, key) over Options.Shards actor
// goroutines. A shard's goroutine is the only one that touches its counters,
// its copy of the limits and its outstanding reservations; callers send it a
// message and wait on a buffered(1) reply channel, so a caller that gives up
// (context done) never blocks the actor. A Reserve whose caller gave up after
// the message was sent is released (settled to 0) by a helper goroutine.
//
// A persister goroutine asks every shard, once per Options.SnapshotInterval,
// for encoded copies of its changed counters and writes them in one Badger
// WriteBatch; Close writes a final snapshot. A kill -9 thus loses at most one
// interval (default 1 s) of counts. SetLimits is serialised by a mutex, writes
// its Badger record synchronously and then updates every shard's copy.
package quota
