package index

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/llmgate/llmgate/internal/store"
)

// entryFormat is the first byte of every persisted entry.
const entryFormat = 1

// diskGrace is added to an entry's remaining life for Badger's own TTL: a
// safety net behind the sweep, never ahead of it.
const diskGrace = time.Minute

// loadBatch is how many loaded entries go to an actor per message, so that
// lookups and stores interleave with a long load.
const loadBatch = 256

func diskKey(id string) []byte { return []byte(store.PrefixCache + id) }

// encodeEntry is the value stored under c/<id>: a format byte, then Space,
// Exact, Prompt, Vector (float32 little endian), Response, CreatedAt and
// ExpiresAt (Unix nanoseconds) and Hits. Strings and byte slices are
// length-prefixed (uvarint).
func encodeEntry(e *Entry) []byte {
	b := make([]byte, 0, 64+len(e.Space.Partition)+len(e.Space.Route)+len(e.Space.Shape)+32+int(e.size()))
	b = append(b, entryFormat)
	for _, s := range []string{e.Space.Partition, e.Space.Route, e.Space.Shape} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = append(b, e.Exact[:]...)
	b = binary.AppendUvarint(b, uint64(len(e.Prompt)))
	b = append(b, e.Prompt...)
	b = binary.AppendUvarint(b, uint64(len(e.Vector)))
	for _, f := range e.Vector {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(f))
	}
	b = binary.AppendUvarint(b, uint64(len(e.Response)))
	b = append(b, e.Response...)
	b = binary.AppendVarint(b, e.CreatedAt.UnixNano())
	b = binary.AppendVarint(b, e.ExpiresAt.UnixNano())
	b = binary.AppendUvarint(b, e.Hits)
	return b
}

var errCorrupt = errors.New("corrupt cache entry")

// decodeEntry parses encodeEntry's output into a new Entry that shares no
// memory with b.
func decodeEntry(id string, b []byte) (*Entry, error) {
	d := decoder{b: b}
	if d.byte() != entryFormat {
		return nil, fmt.Errorf("%w: unknown format", errCorrupt)
	}
	e := &Entry{ID: id}
	e.Space.Partition = string(d.bytes())
	e.Space.Route = string(d.bytes())
	e.Space.Shape = string(d.bytes())
	copy(e.Exact[:], d.take(32))
	e.Prompt = string(d.bytes())
	if n := d.uvarint(); n > 0 && d.err == nil {
		if n > uint64(len(d.b))/4 {
			return nil, fmt.Errorf("%w: vector length %d", errCorrupt, n)
		}
		e.Vector = make([]float32, n)
		for i := range e.Vector {
			e.Vector[i] = math.Float32frombits(binary.LittleEndian.Uint32(d.take(4)))
		}
	}
	if r := d.bytes(); len(r) > 0 {
		e.Response = append([]byte(nil), r...)
	}
	e.CreatedAt = time.Unix(0, d.varint())
	e.ExpiresAt = time.Unix(0, d.varint())
	e.Hits = d.uvarint()
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", errCorrupt, len(d.b))
	}
	return e, nil
}

// decoder reads b front to back; the first short read sets err, after which
// every read returns zero values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated", errCorrupt)
	}
	d.b = nil
}

func (d *decoder) take(n int) []byte {
	if d.err != nil || n < 0 || n > len(d.b) {
		d.fail()
		return make([]byte, max(n, 0))
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte { return d.take(1)[0] }

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	return d.take(int(n))
}

// persist commits e to the database (nothing without one). Badger's TTL is
// a safety net behind the sweep.
func (c *Cache) persist(e *Entry) error {
	if c.opts.DB == nil {
		return nil
	}
	ttl := e.ExpiresAt.Sub(c.opts.Now()) + diskGrace
	err := c.opts.DB.Update(func(txn *badger.Txn) error {
		return txn.SetEntry(badger.NewEntry(diskKey(e.ID), encodeEntry(e)).WithTTL(ttl))
	})
	if err != nil {
		return fmt.Errorf("index: persisting entry %s: %w", e.ID, err)
	}
	return nil
}

// deleteKeys removes the entries' keys from the database, in transactions
// of bounded size.
func (c *Cache) deleteKeys(ids []string) error {
	if c.opts.DB == nil {
		return nil
	}
	for len(ids) > 0 {
		n := min(len(ids), 1000)
		err := c.opts.DB.Update(func(txn *badger.Txn) error {
			for _, id := range ids[:n] {
				if err := txn.Delete(diskKey(id)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("index: deleting %d entries: %w", n, err)
		}
		ids = ids[n:]
	}
	return nil
}

// load brings the persisted entries into the shards, skipping expired ones,
// then marks the cache Ready. A failing database is logged, not fatal: the
// cache then starts with what it has.
func (c *Cache) load() {
	defer func() {
		// Badger's iterator panics if the DB is closed under it (the caller
		// closed the DB before the Cache): log it rather than crash the node.
		if r := recover(); r != nil {
			c.log.Error("loading the cache aborted", "panic", r)
		}
	}()
	if c.opts.beforeLoad != nil {
		c.opts.beforeLoad()
	}
	start := time.Now()
	batches := make([][]*Entry, len(c.shards))
	shardIdx := map[*shard]int{}
	for i, s := range c.shards {
		shardIdx[s] = i
	}
	loaded, skipped := 0, 0
	flush := func(i int) error {
		batch := batches[i]
		batches[i] = nil
		if len(batch) == 0 {
			return nil
		}
		var stale []string
		err := c.call(c.ctx, c.shards[i], func(s *shard) {
			for _, e := range batch {
				id, _ := parseID(e.ID)
				stale = append(stale, s.add(id, e, false, true)...)
			}
		})
		if err != nil {
			return err
		}
		loaded += len(batch)
		return c.deleteKeys(stale)
	}
	prefix := []byte(store.PrefixCache)
	err := c.opts.DB.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 64, Prefix: prefix})
		defer it.Close()
		for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
			if err := c.ctx.Err(); err != nil {
				return err
			}
			item := it.Item()
			id := string(item.Key()[len(prefix):])
			if _, ok := parseID(id); !ok {
				c.log.Warn("cache entry with a bad key skipped", "key", string(item.Key()))
				skipped++
				continue
			}
			var e *Entry
			err := item.Value(func(v []byte) error {
				var err error
				e, err = decodeEntry(id, v)
				return err
			})
			if err != nil {
				c.log.Warn("cache entry unreadable, skipped", "id", id, "err", err)
				skipped++
				continue
			}
			if !e.ExpiresAt.After(c.opts.Now()) {
				continue
			}
			i := shardIdx[c.shardOf(e.Space)]
			batches[i] = append(batches[i], e)
			if len(batches[i]) >= loadBatch {
				if err := flush(i); err != nil {
					return err
				}
			}
		}
		for i := range batches {
			if err := flush(i); err != nil {
				return err
			}
		}
		return nil
	})
	if c.ctx.Err() != nil {
		return
	}
	if err != nil {
		c.log.Error("loading the cache failed; serving what was loaded", "err", err, "loaded", loaded)
	}
	c.ready.Store(true)
	if err := c.each(c.ctx, func(_ int, s *shard) { s.loaded() }); err != nil {
		return
	}
	if err := c.evict(c.ctx); err != nil {
		c.log.Warn("evicting after load failed", "err", err)
	}
	c.log.Info("cache loaded", "entries", loaded, "skipped", skipped, "took", time.Since(start).Round(time.Millisecond))
}
