package quota

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/llmgate/llmgate/internal/store"
)

const (
	prefixQuota  = store.PrefixQuota  // counters: prefixQuota + consumer + "\x00" + key
	prefixLimits = store.PrefixLimits // run-time limit changes: prefixLimits + consumer
)

// limitsRecord is a consumer's run-time limit changes as stored (JSON); a
// nil field was never changed and follows the configuration. Versions (Unix
// ns of the change, and the node that made it) decide which change wins when
// nodes exchange them; records written before versions existed load as
// version 0, older than any change made since.
type limitsRecord struct {
	TPM         *int64 `json:"tpm,omitempty"`
	QuotaTokens *int64 `json:"quota_tokens,omitempty"`
	TPMAt       int64  `json:"tpm_at,omitempty"`
	TPMOrigin   string `json:"tpm_origin,omitempty"`
	QuotaAt     int64  `json:"quota_at,omitempty"`
	QuotaOrigin string `json:"quota_origin,omitempty"`
}

// loadLimits reads the persisted limit changes into l.records and applies
// them to limits. Records of consumers no longer configured, and records the
// configuration now makes invalid, are ignored.
func (l *Limiter) loadLimits(limits map[string]Limits) error {
	if l.db == nil {
		return nil
	}
	err := l.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefixLimits)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			name := strings.TrimPrefix(string(item.Key()), prefixLimits)
			var stored limitsRecord
			if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &stored) }); err != nil {
				return fmt.Errorf("limits of %q: %w", name, err)
			}
			lim, ok := limits[name]
			if !ok {
				l.log.Info("ignoring stored limits of a consumer no longer configured", "consumer", name)
				continue
			}
			rec := LimitRecord{
				Consumer: name,
				TPM:      stored.TPM, TPMAt: stored.TPMAt, TPMOrigin: stored.TPMOrigin,
				QuotaTokens: stored.QuotaTokens, QuotaAt: stored.QuotaAt, QuotaOrigin: stored.QuotaOrigin,
			}
			lim = rec.apply(lim)
			if err := lim.validate(); err != nil {
				l.log.Warn("ignoring stored limits", "consumer", name, "err", err)
				continue
			}
			limits[name] = lim
			l.records[name] = rec
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("quota: loading limits: %w", err)
	}
	return nil
}

// storeLimits writes the consumers' whole records and waits until they are
// written. A WriteBatch, not a transaction: a full exchange may carry more
// records than one transaction holds, and each record stands alone.
func (l *Limiter) storeLimits(recs []LimitRecord) error {
	if l.db == nil {
		return nil
	}
	wb := l.db.NewWriteBatch()
	defer wb.Cancel()
	for _, rec := range recs {
		v, err := json.Marshal(limitsRecord{
			TPM: rec.TPM, TPMAt: rec.TPMAt, TPMOrigin: rec.TPMOrigin,
			QuotaTokens: rec.QuotaTokens, QuotaAt: rec.QuotaAt, QuotaOrigin: rec.QuotaOrigin,
		})
		if err != nil {
			return fmt.Errorf("storing limits: %w", err)
		}
		if err := wb.Set([]byte(prefixLimits+rec.Consumer), v); err != nil {
			return fmt.Errorf("storing limits: %w", err)
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("storing limits: %w", err)
	}
	return nil
}

// loadCounters restores the persisted counters into their shards (before the
// actors start). Buckets that left the window and periods that ended are
// dropped; counters left with nothing are deleted at the first snapshot.
func (l *Limiter) loadCounters() error {
	if l.db == nil {
		return nil
	}
	now := l.now()
	err := l.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefixQuota)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			consumer, key, ok := parseCounterDBKey(item.Key())
			if !ok {
				return fmt.Errorf("counter key %q: malformed", item.Key())
			}
			var c *counter
			err := item.Value(func(v []byte) error {
				var err error
				c, err = decodeCounter(consumer, key, l.node, v)
				return err
			})
			if err != nil {
				return fmt.Errorf("counter %q: %w", item.Key(), err)
			}
			s := l.shardOf(consumer, key)
			// Period records count only if they are for the current period
			// of the consumer's (possibly changed) period.
			start, end := s.limits[consumer].Period.Bounds(now)
			if start.IsZero() {
				c.setPeriod(0, 0)
			} else {
				c.setPeriod(start.Unix(), end.Unix())
			}
			c.stored, c.dirty = true, false
			s.counters[counterKey{consumer, key}] = c
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("quota: loading counters: %w", err)
	}
	return nil
}

// ask sends m to s and waits, without regard to closing: only the persister
// uses it, and only while the actors run.
func (l *Limiter) ask(s *shard, m message) result {
	ch := make(chan result, 1)
	m.reply = ch
	s.inbox <- m
	return <-ch
}

// persist writes a snapshot every interval and a final one when persistStop
// is closed. Writes that failed are retried with the next snapshot (newer
// values of the same key replace them).
func (l *Limiter) persist() {
	defer close(l.persistDone)
	t := time.NewTicker(l.interval)
	defer t.Stop()
	var failed []kv
	for {
		select {
		case <-t.C:
			failed, _ = l.snapshot(failed)
		case <-l.persistStop:
			var err error
			if failed, err = l.snapshot(failed); len(failed) > 0 {
				l.closeErr = fmt.Errorf("quota: final snapshot: %d counters not written: %w", len(failed), err)
			}
			return
		}
	}
}

// snapshot collects every shard's changes and writes them with the earlier
// failed ones in one WriteBatch; it returns what could not be written, and why.
func (l *Limiter) snapshot(failed []kv) ([]kv, error) {
	encode := l.db != nil
	writes := failed
	for _, s := range l.shards {
		writes = append(writes, l.ask(s, message{kind: msgFlush, flag: encode}).snapshot...)
	}
	if !encode || len(writes) == 0 {
		return nil, nil
	}
	// Later writes of a key replace earlier ones.
	last := make(map[string]int, len(writes))
	for i, w := range writes {
		last[w.key] = i
	}
	deduped := writes[:0:0]
	for i, w := range writes {
		if last[w.key] == i {
			deduped = append(deduped, w)
		}
	}
	wb := l.db.NewWriteBatch()
	defer wb.Cancel()
	var err error
	for _, w := range deduped {
		if w.val == nil {
			err = wb.Delete([]byte(w.key))
		} else {
			err = wb.Set([]byte(w.key), w.val)
		}
		if err != nil {
			break
		}
	}
	if err == nil {
		err = wb.Flush()
	}
	if err != nil {
		l.log.Warn("quota snapshot failed; retrying with the next one", "counters", len(deduped), "err", err)
		return deduped, err
	}
	return nil, nil
}
