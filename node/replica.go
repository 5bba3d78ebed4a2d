package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/llmgate/llmgate/cluster"
	"github.com/llmgate/llmgate/index"
	"github.com/llmgate/llmgate/quota"
	history "github.com/llmgate/llmgate/usage"
)

// Payload tags of QuotaExchange: quota owns the encodings, the tag says which.
const (
	tagUsage   = 'u'
	tagLimits  = 'l'
	tagHistory = 'h'
)

// QuotaExchange is a quota Limiter as the cluster carries it: usage packets
// best effort, run-time limit changes reliably. The usage history (History,
// optional) rides along: its rows are grow-only totals merged like quota
// usage, in packets of their own.
type QuotaExchange struct {
	Limiter *quota.Limiter
	History *history.History
}

var _ cluster.QuotaState = QuotaExchange{}

// Outgoing implements cluster.QuotaState.
func (q QuotaExchange) Outgoing(ctx context.Context, full bool, maxPacket int) (packets, reliable [][]byte, err error) {
	us, recs, err := q.Limiter.Outgoing(ctx, full)
	if err != nil {
		return nil, nil, err
	}
	for _, p := range quota.EncodeUsages(us, maxPacket-1) {
		packets = append(packets, append([]byte{tagUsage}, p...))
	}
	if len(recs) > 0 {
		reliable = append(reliable, append([]byte{tagLimits}, quota.EncodeLimitRecords(recs)...))
	}
	if q.History != nil {
		// A history that cannot answer must not hold back the quota's news.
		if rows, err := q.History.Outgoing(ctx, full); err == nil {
			for _, p := range history.EncodeRows(rows, maxPacket-1) {
				packets = append(packets, append([]byte{tagHistory}, p...))
			}
		}
	}
	return packets, reliable, nil
}

// Merge implements cluster.QuotaState.
func (q QuotaExchange) Merge(ctx context.Context, payload []byte) error {
	if len(payload) == 0 {
		return errors.New("empty quota payload")
	}
	switch payload[0] {
	case tagUsage:
		us, err := quota.DecodeUsages(payload[1:])
		if err != nil {
			return err
		}
		return q.Limiter.MergeUsage(ctx, us)
	case tagLimits:
		recs, err := quota.DecodeLimitRecords(payload[1:])
		if err != nil {
			return err
		}
		return q.Limiter.ApplyLimits(ctx, recs)
	case tagHistory:
		if q.History == nil {
			return nil
		}
		rows, err := history.DecodeRows(payload[1:])
		if err != nil {
			return err
		}
		return q.History.Merge(ctx, rows)
	}
	return fmt.Errorf("unknown quota payload tag %q", payload[0])
}

// SetPeers implements cluster.QuotaState.
func (q QuotaExchange) SetPeers(names []string) { q.Limiter.SetPeers(names) }

// CacheExchange is the semantic cache as the cluster carries it: changes
// encoded by index, a payload applied as one batch (its entries persisted
// together, the cache's shards adding theirs in parallel), tombstones
// applied in parallel (they make the order irrelevant).
type CacheExchange struct {
	Cache *index.Cache
}

// deleteWorkers is how many tombstones Delete applies at once.
const deleteWorkers = 4

var _ cluster.CacheState = CacheExchange{}

// Apply implements cluster.CacheState.
func (x CacheExchange) Apply(ctx context.Context, payload []byte) error {
	var changes []index.Change
	for len(payload) > 0 {
		ch, n, err := index.DecodeChange(payload)
		if err != nil {
			return fmt.Errorf("decoding change %d: %w", len(changes), err)
		}
		changes = append(changes, ch)
		payload = payload[n:]
	}
	return x.Cache.ApplyBatch(ctx, changes)
}

// apply applies changes one by one, deleteWorkers at a time.
func (x CacheExchange) apply(ctx context.Context, changes []index.Change) error {
	next := make(chan index.Change)
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for range min(deleteWorkers, len(changes)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ch := range next {
				if err := x.Cache.Apply(ctx, ch); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	for _, ch := range changes {
		next <- ch
	}
	close(next)
	wg.Wait()
	return errors.Join(errs...)
}

// Digest implements cluster.CacheState.
func (x CacheExchange) Digest(ctx context.Context) (cluster.Digest, error) {
	d, err := x.Cache.Digest(ctx)
	return cluster.Digest(d), err
}

// Versions implements cluster.CacheState.
func (x CacheExchange) Versions(ctx context.Context, buckets []uint8) ([]cluster.Version, error) {
	vs, err := x.Cache.Versions(ctx, buckets)
	if err != nil {
		return nil, err
	}
	out := make([]cluster.Version, len(vs))
	for i, v := range vs {
		out[i] = cluster.Version{ID: v.ID, CreatedAt: v.CreatedAt, Deleted: v.Deleted}
	}
	return out, nil
}

// Export implements cluster.CacheState.
func (x CacheExchange) Export(ctx context.Context, ids []string) ([]byte, error) {
	es, err := x.Cache.Export(ctx, ids)
	if err != nil {
		return nil, err
	}
	var b []byte
	for _, e := range es {
		b = index.AppendChange(b, index.Change{Kind: index.ChangeStored, Entry: e, At: e.CreatedAt})
	}
	return b, nil
}

// Delete implements cluster.CacheState. Each tombstone keeps the time of
// its delete on its origin: a fresh time would make it outlive the others'
// copies, and nodes would hand it back and forth for ever.
func (x CacheExchange) Delete(ctx context.Context, tombstones []cluster.Version) error {
	changes := make([]index.Change, len(tombstones))
	for i, v := range tombstones {
		changes[i] = index.Change{Kind: index.ChangeDeleted, ID: v.ID, At: time.Unix(0, v.CreatedAt)}
	}
	return x.apply(ctx, changes)
}

// ReplicateTo returns an index.Options.OnChange hook that encodes each local
// change and hands it to send (cluster.Cluster.Replicate, which never blocks).
func ReplicateTo(send func([]byte)) func(index.Change) {
	return func(ch index.Change) { send(index.AppendChange(nil, ch)) }
}

// tagKeys marks run-time key payloads on the quota channel; identity owns
// their encoding.
const tagKeys = 'k'

// KeyState is the run-time keys as the cluster carries them: implemented by
// *identity.Keys. Merge must be idempotent and order-free.
type KeyState interface {
	// Outgoing returns the local changes since the previous call, or every
	// record when full is set.
	Outgoing(ctx context.Context, full bool) ([][]byte, error)
	Merge(ctx context.Context, payload []byte) error
}

// SharedState is what the cluster's quota channel carries: quota usage and
// limits, and run-time keys beside them. Keys ride the reliable messages of
// every flush (a create or revoke reaches the live peers within about 50 ms)
// and the whole set rides push/pull, so a node that joins or returns catches
// up on what it missed.
type SharedState struct {
	Quota QuotaExchange
	Keys  KeyState // nil = no run-time keys
	// Owners are the Responses API's response owners (affinity.Store), on
	// the same reliable messages and push/pull as the keys; nil = none.
	Owners KeyState
}

// tagOwners marks response-owner payloads; affinity owns their encoding.
const tagOwners = 'o'

var _ cluster.QuotaState = SharedState{}

// Outgoing implements cluster.QuotaState.
func (s SharedState) Outgoing(ctx context.Context, full bool, maxPacket int) (packets, reliable [][]byte, err error) {
	packets, reliable, err = s.Quota.Outgoing(ctx, full, maxPacket)
	if err != nil {
		return packets, reliable, err
	}
	if s.Owners != nil {
		if owners, oerr := s.Owners.Outgoing(ctx, full); oerr == nil {
			for _, o := range owners {
				reliable = append(reliable, append([]byte{tagOwners}, o...))
			}
		}
	}
	if s.Keys == nil {
		return packets, reliable, nil
	}
	keys, kerr := s.Keys.Outgoing(ctx, full)
	if kerr != nil {
		// Quota news is drained already: send it; the keys go next time.
		return packets, reliable, nil
	}
	for _, k := range keys {
		reliable = append(reliable, append([]byte{tagKeys}, k...))
	}
	return packets, reliable, nil
}

// Merge implements cluster.QuotaState.
func (s SharedState) Merge(ctx context.Context, payload []byte) error {
	if len(payload) > 0 && payload[0] == tagOwners {
		if s.Owners == nil {
			return nil
		}
		return s.Owners.Merge(ctx, payload[1:])
	}
	if len(payload) > 0 && payload[0] == tagKeys {
		if s.Keys == nil {
			return nil
		}
		return s.Keys.Merge(ctx, payload[1:])
	}
	return s.Quota.Merge(ctx, payload)
}

// SetPeers implements cluster.QuotaState. The owners hear it too: with no
// live peer they encode no news and keep only the last seconds' of it
// (peerAware).
func (s SharedState) SetPeers(names []string) {
	s.Quota.SetPeers(names)
	if p, ok := s.Owners.(peerAware); ok {
		p.SetPeers(names)
	}
}

// peerAware is a KeyState told which peers are live (*affinity.Store).
type peerAware interface{ SetPeers(names []string) }
