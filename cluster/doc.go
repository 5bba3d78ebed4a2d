// Package cluster owns a node's place in the cluster: membership (memberlist
// over the gossip address, joining through seeds with retry and backoff,
// AES-GCM when a secret key is set, a graceful leave), the exchange of quota
// usage between nodes and the replication of cache changes, including the
// catch-up of a node that joins or returns after downtime.
//
// It knows nothing of quota or index types. Both reach it through the small
// interfaces QuotaState and CacheState, whose payloads are opaque bytes that
// the other side's implementation decodes; it only frames, batches, routes and
// paces them. What it sends:
//
//   - quota news every FlushInterval as best-effort packets (UDP, each small
//     enough for one datagram) straight to every live member, plus reliable
//     messages for rare changes such as run-time limits; the full state rides
//     memberlist's push/pull, which repairs whatever a lost packet missed
//     (a node without live peers only drains its news, every twentieth tick);
//   - cache changes batched over a few milliseconds and sent over memberlist's
//     reliable channel (TCP), never truncated;
//   - catch-up as a pull: digests first, then versions of the buckets that
//     differ, then the missing entries in windows of small batches, so that a
//     node that missed little moves little.
//
// Nothing here is on a request's path: a request only enqueues (never
// blocks), every send runs on a per-peer goroutine with memberlist's TCP
// deadline, and a full queue drops (counted) rather than waits, because the
// next anti-entropy round repairs it.
package cluster
