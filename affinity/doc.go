// Package affinity owns what the gateway remembers about Responses API
// response ids: which consumer created each one and which backend holds it
// (SPEC §4). The node asks it whether a consumer may see an id and where a
// follow-up (GET, DELETE, cancel, input_items, previous_response_id) must
// go; the cluster carries its records so that any node can answer.
//
// What it owns: its records, persisted in the node's Badger database under
// store.PrefixAffinity with a TTL (Badger drops them when they expire; the
// value is a compact binary form without the id, which the key holds, and
// values persisted as JSON by earlier versions still read; the key is the
// id, and OpenAI's and Azure's ids begin with their creation time, so
// successive records go into Badger's memtable next to each other, about a
// third cheaper than ids in no order: BenchmarkWriteBatch), and
// the queue of local changes not yet handed to the cluster (while the
// cluster names no live peer, none is encoded and only the last seconds'
// are kept, for a peer that is joining: SetPeers). A deleted
// response leaves a tombstone for the same TTL, so a peer's late copy never
// brings it back.
//
// What it must not touch: HTTP, backends, the cluster transport (it encodes
// payloads; node's SharedState puts them on the cluster's reliable channel),
// other owners' keys in the database.
//
// Local creations are queued in memory (found by look-ups at once) and
// written by a writer goroutine, a batch per transaction (the creations of
// 10 ms), off the request path, with no allocation per record of its own
// (its arrays are reused from batch to batch); Close writes what is queued, a crash loses
// at most those 10 ms and the write under way. Push/pull carries the last day's
// changes and, page by page in id order, every unexpired record, so a node
// away for any time learns every id.
//
// A creation's first-owner check reads Badger only when an in-memory
// filter of the persisted ids (a Bloom filter, about 1.3 bytes per live id,
// in generations dropped once their ids expired) says the id may be there:
// a new id is certainly absent and costs no read. The filter answers once
// the ids the database held at Open are loaded (a key-only scan in the
// background); until then, and past 64M live ids, every check reads Badger.
//
// Concurrency: the creations not yet written and the changes not yet handed
// to the cluster pass between the request goroutines, the writer and
// Outgoing under a mutex (a creation costs a lock and an append, and the
// first of a batch starts the writer's timer: no goroutine's wake-up on the
// request's path); the catch-up cursor (and, without a database, the
// records) are owned by one goroutine and changed by messages to it;
// look-ups read Badger, which is safe for concurrent use. One mutex orders each check-then-write on Badger
// (a writer batch, Forget, Merge), so that a deletion is never overwritten
// by a creation checked before it; it also guards the filter.
package affinity
