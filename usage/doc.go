// Package usage owns the node's usage history: per UTC hour, consumer, route
// and end user, the requests, prompt, completion and cached tokens, cache
// hits, tokens the cache saved and their cost, kept in Badger for a
// retention and shared with the other nodes.
//
// Every number is a grow-only total of one origin: a node process (its name
// and start time, so a restart never has to recover the counts of its
// previous life). Nodes exchange their origins' rows and merge by taking the
// larger of each total, so a row received twice, late or out of order
// changes nothing, and a node that dies leaves its history on the others.
// A query sums the origins.
//
// Concurrency: one actor goroutine owns the rows changed since they were
// last written, the rows to tell peers, and the write-behind to Badger
// (every FlushInterval, so a kill -9 loses at most that much of this
// node's counts, of which peers may still hold a copy to hand back).
// Observe only enqueues; queries and full exchanges ask the actor to flush,
// then read Badger on the caller's goroutine.
//
// It knows nothing of HTTP or gossip: package api serves the queries and
// node carries the rows through the cluster as opaque payloads.
package usage
