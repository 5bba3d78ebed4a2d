// Package cluster will own membership (memberlist over the gossip address, seeds
// with retry), the exchange of quota usage deltas and the replication of cache
// entries between nodes, with idempotent merges and catch-up after downtime.
//
// It must not reach into quota or index state: it receives deltas and entries as
// messages and hands remote ones back the same way. (Filled by the cluster work;
// empty until then.)
package cluster
