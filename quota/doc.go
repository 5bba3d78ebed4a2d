// Package quota will own token accounting per consumer: tiktoken prompt
// estimates, sliding 60-second TPM windows and calendar-period quotas, held in
// sharded actors and snapshotted to Badger. A reservation is made before a call
// is forwarded and settled exactly once from the reply's usage.
//
// It must know nothing of HTTP or gossip: the node calls it in its admit and
// settle stages, and the cluster package exchanges its usage deltas. (Filled by
// the token-accounting work; empty until then.)
package quota
