// Package node owns one gateway node's request pipeline: for each model call it
// runs the stages authenticate → admit → look up → forward → settle → store, and
// it owns the backends those calls go to (priority groups, spreading, failover,
// circuit breakers).
//
// What it owns:
//   - the consumer table (key → consumer), immutable once built;
//   - the routes and their backends; each backend's health is a lock-free
//     breaker (atomics) written only by the attempts made against it;
//   - the data-plane metrics.
//
// The admit/settle stages call a Limiter and the look-up/store stages a Cache;
// both are small interfaces defined here and implemented by the quota and index
// packages, which own their state in actors. With none configured a node proxies
// without limits or cache. QuotaExchange and CacheExchange (replica.go) adapt
// the same two to the cluster transport, which knows them only as opaque
// payloads: quota and index own their wire encodings, cluster moves the bytes. node speaks HTTP to backends but knows nothing of the
// front end's routing: package api parses client requests into Calls.
//
// The pipeline is the same for every operation: what differs — how a
// request is estimated and keyed, how an answer or a stream yields usage and
// a storable answer, how a stored answer is replayed — is one wire adapter
// per operation (wire.go: chat and embeddings; wire_responses.go: the
// Responses API). Responses API ids are remembered through Owners
// (responses.go, implemented by package affinity): a follow-up on an id goes
// to the backend holding it, and only for the consumer that created it.
//
// Bounded admission (admit.go, reserveBound): a call with a whole answer,
// from a consumer far from its limits, reserves an upper bound of its
// estimate from byte lengths alone instead of counting first, and its
// prompt is counted on a goroutine of its own, which then shrinks the
// reservation to the estimate (quota.Limiter.Shrink). Admissions, the
// x-ratelimit headers of every answer and the settled charge are then
// those of counting first, but for the microseconds between admission and
// the count: a request of the same consumer admitted in between is decided
// against the bound, not the estimate, in the window (the bound is taken
// only while the window, with it, stays under half of the limit).
//
// Invariants: a client request is retried on another backend only before any
// byte of the answer reached the client; the client's key is never sent
// upstream; every upstream call carries a deadline.
package node
