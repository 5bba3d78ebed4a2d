// Package quota owns token accounting per consumer: sliding 60-second TPM
// windows and fixed UTC calendar-period quotas, held in sharded actors and
// snapshotted to Badger. It knows nothing of HTTP, tokenizers or networking:
// the node reserves an estimate before forwarding a call (Reserve) and
// settles it from the reply's usage (Settle); the admin API reads
// Status/List and calls SetLimits; the cluster transport carries what
// Outgoing returns to the other nodes (EncodeUsages, EncodeLimitRecords),
// hands what they sent to MergeUsage and ApplyLimits, and names the live
// nodes with SetPeers.
//
// # What it owns
//
//   - One counter per (consumer, counter key). The key "" is the consumer
//     itself; any other key ("team-a/route:gpt-4o", "team-a/user:bob") is a
//     separate counter to which the consumer's limits apply independently, as
//     APIM's counter-key does.
//   - In each counter, usage per origin node per one-second bucket (the last
//     64 buckets) and per origin per calendar period, each as two grow-only
//     totals (added, removed). This node's own usage is origin
//     Options.NodeName; remote origins arrive through MergeUsage.
//   - Money budgets: a consumer's budget is the period quota of a counter
//     named BudgetName(consumer) whose unit is the micro-dollar; the node
//     reserves and settles costs there. Status shows it inside its
//     consumer's (quota_usd); List and SetLimits never treat it as a consumer.
//   - The effective limits of every configured consumer: configuration,
//     overridden by run-time changes (with versions) persisted under
//     store.PrefixLimits.
//   - Its keys in the node database: store.PrefixQuota (counters) and
//     store.PrefixLimits (run-time limit changes). Nothing else.
//
// # Invariants
//
//   - A reservation is settled exactly once: Settle removes it from its
//     shard's table of outstanding reservations, so a second Settle (or a copy
//     of the Reservation) is a no-op. A Shrink (see grants below) changes what
//     a reservation taken from a grant holds, not how often it is settled. A
//     reservation never settled keeps its estimate charged; it is forgotten
//     after an hour.
//   - A counter whose consumer has no limit at all (no TPM, no quota, no
//     period; an unconfigured consumer) cannot refuse anything, so Reserve
//     answers without its shard: the reservation is unmetered, charges
//     nothing until it is settled, and settling it (once: the first Settle
//     of any copy wins) records the actual tokens in the bucket of the
//     Reserve, where a metered settlement would have left them. Giving the
//     consumer a limit (SetLimits, ApplyLimits, SetConfig) sends the next
//     Reserve to the shard.
//   - TPM never over-admits on one node: admission at bucket b counts every
//     bucket from b-60 to b inclusive (61 one-second buckets cover any
//     60-second interval that ends in bucket b), so the reservations admitted
//     in any true 60-second interval, counted at their reservation time, never
//     sum to more than the TPM limit. Settling with more than the estimate may
//     exceed it; that is reported (Remaining clamps at 0) and delays later
//     admissions.
//   - Across nodes, each node also keeps what its peers have not seen yet
//     within its share of the budget they have not claimed together (see
//     share.go), so the cluster stays within each limit while the gossip lag
//     stays within Options.PeerLag. A node alone never applies that rule.
//     The one exception is the tail of a period quota (a remainder too small
//     for any node's share to hold a request, which would otherwise stay
//     refused as ReasonShare until the period ends): one node, chosen by
//     demand, takes it on the quota alone and the others refuse for the
//     period (ReasonQuota), so the cluster may exceed a quota by less than
//     that remainder, about one request's estimate.
//   - A request larger than the TPM limit or the whole period quota is refused
//     at once (ReasonTooLarge) and never charged.
//   - Merging takes the larger of each grow-only total per (origin, bucket)
//     and per (origin, period): replayed, duplicated or reordered records
//     never double-count, and a refund that arrives before its reservation is
//     not lost. This node's own origin is never merged from remote. A record
//     for a bucket older than the 64 held buckets, or more than 2 s in the
//     future, is ignored.
//   - Run-time limit changes are last-writer-wins per field, by (Unix ns of
//     the change, origin node), so every node ends with the same limits.
//   - Quota periods are UTC calendar periods; weeks start on Monday.
//
// # Concurrency model
//
// Counters are sharded by a hash of (consumer, key) over Options.Shards actor
// goroutines. A shard's goroutine is the only one that touches its counters,
// its copy of the limits and peers, and its outstanding reservations; callers
// send it a message and wait on a buffered(1) reply channel, so a caller that
// gives up (context done) never blocks the actor. A Reserve whose caller gave
// up after the message was sent is released (settled to 0) by a helper
// goroutine. SettleAsync neither waits nor wakes the shard's goroutine: it
// appends the settlement to the shard's mailbox (a mutex-guarded slice), which
// the goroutine applies before any message it serves, so everything sent to
// the shard later sees it; a timer armed when the mailbox turns non-empty
// sends a message after 20 milliseconds in case nothing else comes (no
// timer runs while the mailbox is empty). A queued settlement is held in
// memory exactly as a change Settle made would be, so it is written by the
// next snapshot (Close's included) and lost by a crash before it as
// Settle's is.
//
// A Reserve sent to a shard costs two goroutine hand-offs, each of which may
// wait for a core. So a shard alone (no peers) that admits a reservation of
// a limited counter also sets aside the counter's headroom, up to about
// twice what its previous grant served, as a grant for the rest of that
// second: charged to the window and period at once, and published for
// Reserve (and Headroom) to take from with a compare-and-swap, without the
// shard. The shard retires a counter's grant (taking back what is left, in
// the bucket and period it was charged to) before it reads the counter for
// anything; a read that admits nothing (Outgoing, a snapshot) sets one
// aside again at once if the retired one served anything. A settlement
// above its estimate (a Settle's too: it goes
// through the mailbox) closes the grant until the shard has applied it, and
// keeps the shard from publishing one while it waits in the mailbox, so no
// admission differs from the shard's own (see grant.go); one below its
// estimate gives what it frees to the grant. A
// reservation taken from a grant is settled through the mailbox, as an
// unmetered one is. Such a reservation, made by ReserveSpare with an upper
// bound of a caller's estimate, can be brought down to the estimate before
// it is settled (Shrink): what it frees goes back to the grant, or through
// the mailbox to the window and period, and one atomic word holds what it
// still holds, so that a Shrink racing a Settle takes each token once. The
// window holds the bound only from the reservation to the Shrink (the
// caller counts the estimate in microseconds); a Reserve in between is
// decided against the bound.
//
// A persister goroutine asks every shard, once per Options.SnapshotInterval,
// for encoded copies of its changed counters and writes them in one Badger
// WriteBatch; Close writes a final snapshot. A kill -9 thus loses at most one
// interval (default 1 s) of counts. SetLimits and ApplyLimits are serialised
// by a mutex that also guards the versioned records; they write Badger
// synchronously and then update every shard's copy.
package quota
