// Package store opens the node's Badger database in its data directory with
// settings sized for an embedded gateway, and runs value-log garbage
// collection in the background.
//
// One database per node holds everything persisted: cache entries, quota
// windows and period counters, run-time limit changes. Each owner writes
// under its own key prefix (Prefix*), so owners never read one another's keys.
// The store does not interpret values. It keeps one key of its own under
// PrefixStore, the mark a start after a crash checks (see mark.go).
package store
