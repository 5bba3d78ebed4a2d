package quota

import (
	"encoding/json"
	"errors"
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
// nil field was never changed and follows the configuration.
type limitsRecord struct {
	TPM         *int64 `json:"tpm,omitempty"`
	QuotaTokens *int64 `json:"quota_tokens,omitempty"`
}

// loadLimits applies the persisted limit changes to limits. Records of
// consumers no longer configured are ignored.
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
			var rec limitsRecord
			if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &rec) }); err != nil {
				return fmt.Errorf("limits of %q: %w", name, err)
			}
			lim, ok := limits[name]
			if !ok {
				l.log.Info("ignoring stored limits of a consumer no longer configured", "consumer", name)
				continue
			}
			if rec.TPM != nil {
				lim.TPM = *rec.TPM
			}
			if rec.QuotaTokens != nil {
				lim.QuotaTokens = *rec.QuotaTokens
			}
			if err := lim.validate(); err != nil {
				l.log.Warn("ignoring stored limits", "consumer", name, "err", err)
				continue
			}
			limits[name] = lim
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("quota: loading limits: %w", err)
	}
	return nil
}

// storeLimits merges the changed fields into the consumer's stored record,
// synchronously.
func (l *Limiter) storeLimits(consumer string, tpm, quotaTokens *int64) error {
	if l.db == nil {
		return nil
	}
	key := []byte(prefixLimits + consumer)
	err := l.db.Update(func(txn *badger.Txn) error {
		var rec limitsRecord
		item, err := txn.Get(key)
		switch {
		case errors.Is(err, badger.ErrKeyNotFound):
		case err != nil:
			return err
		default:
			if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &rec) }); err != nil {
				return fmt.Errorf("stored record: %w", err)
			}
		}
		if tpm != nil {
			rec.TPM = tpm
		}
		if quotaTokens != nil {
			rec.QuotaTokens = quotaTokens
		}
		v, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		return txn.Set(key, v)
	})
	if err != nil {
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
			lim := s.limits[consumer]
			// The stored period start is kept only if it is still the
			// current period of the consumer's (possibly changed) period.
			stored := c.periodStart
			c.periodStart, c.periodEnd = 0, 0
			if lim.Period != NoPeriod {
				start, end := lim.Period.Bounds(now)
				if start.Unix() == stored {
					c.periodStart, c.periodEnd = stored, end.Unix()
				} else {
					c.resetPeriod(start.Unix(), end.Unix())
				}
			} else {
				c.resetPeriod(0, 0)
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
		writes = append(writes, l.ask(s, message{kind: msgFlush, encode: encode}).snapshot...)
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
