package index

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/llmgate/llmgate/internal/store"
)

// entryFormat is the first byte of every persisted entry.
// Format 1 had no Norm; it is still read.
const entryFormat = 2

// diskGrace is added to an entry's remaining life for Badger's own TTL: a
// safety net behind the sweep, never ahead of it.
const diskGrace = time.Minute

// loadBatch is how many loaded entries go to an actor per message, so that
// lookups and stores interleave with a long load.
const loadBatch = 256

// tombFormat is the first byte of every persisted tombstone and purge
// record.
const tombFormat = 1

// writeBatch bounds the operations of one write transaction.
const writeBatch = 1000

// diskKey is c/<id>, where an entry lives.
func diskKey(id string) []byte { return []byte(store.PrefixCache + id) }

// tombKey is t/d/<id>, where a tombstone lives.
func tombKey(id string) []byte { return []byte(store.PrefixTombstone + "d/" + id) }

// purgeKey is t/p/<at><hash>, where a purge record lives: at (Unix
// nanoseconds) and a hash of its partition and route, each as 16 hex
// digits, so that replaying a purge rewrites the same key.
func purgeKey(p purgeRec) []byte {
	return []byte(store.PrefixTombstone + "p/" + formatID(uint64(p.f.before.UnixNano())) + formatID(fnv(p.f.partition, p.f.route)))
}

// encodeEntry is the value stored under c/<id>: a format byte, then Space,
// Exact, Norm, Prompt, Vector (float32 little endian), Response, CreatedAt and
// ExpiresAt (Unix nanoseconds) and Hits. Strings and byte slices are
// length-prefixed (uvarint).
func encodeEntry(e *Entry) []byte {
	return appendEntry(make([]byte, 0, entryLen(e)), e)
}

// entryLen is the length of e's encoding.
func entryLen(e *Entry) int {
	n := 1 + strLen(e.Space.Partition) + strLen(e.Space.Route) + strLen(e.Space.Shape) + 64 + strLen(e.Prompt)
	n += uvarintLen(uint64(len(e.Vector))) + 4*len(e.Vector) + uvarintLen(uint64(len(e.Response))) + len(e.Response)
	var buf [binary.MaxVarintLen64]byte
	n += binary.PutVarint(buf[:], e.CreatedAt.UnixNano()) + binary.PutVarint(buf[:], e.ExpiresAt.UnixNano())
	return n + uvarintLen(e.Hits)
}

func strLen(s string) int { return uvarintLen(uint64(len(s))) + len(s) }

func uvarintLen(v uint64) int {
	n := 1
	for ; v >= 0x80; v >>= 7 {
		n++
	}
	return n
}

// appendEntry appends encodeEntry's output to b.
func appendEntry(b []byte, e *Entry) []byte {
	b = append(b, entryFormat)
	b = appendString(b, e.Space.Partition)
	b = appendString(b, e.Space.Route)
	b = appendString(b, e.Space.Shape)
	b = append(b, e.Exact[:]...)
	b = append(b, e.Norm[:]...)
	b = appendString(b, e.Prompt)
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
	format := d.byte()
	if format != entryFormat && format != 1 {
		return nil, fmt.Errorf("%w: unknown format", errCorrupt)
	}
	e := &Entry{ID: id}
	e.Space.Partition = string(d.bytes())
	e.Space.Route = string(d.bytes())
	e.Space.Shape = string(d.bytes())
	copy(e.Exact[:], d.take(32))
	if format >= 2 {
		copy(e.Norm[:], d.take(32))
	}
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

// encodeTomb is the value stored under t/d/<id>: a format byte, at and
// until (Unix nanoseconds, varint), then 1 and the Space hash (8 bytes,
// little endian) when the Space is known, else 0.
func encodeTomb(k killed) []byte {
	b := make([]byte, 0, 1+2*binary.MaxVarintLen64+9)
	b = append(b, tombFormat)
	b = binary.AppendVarint(b, k.at)
	b = binary.AppendVarint(b, k.until)
	if !k.hasSpace {
		return append(b, 0)
	}
	b = append(b, 1)
	return binary.LittleEndian.AppendUint64(b, k.space)
}

func decodeTomb(id uint64, b []byte) (killed, error) {
	d := decoder{b: b}
	if d.byte() != tombFormat {
		return killed{}, fmt.Errorf("%w: unknown tombstone format", errCorrupt)
	}
	k := killed{id: id, at: d.varint(), until: d.varint()}
	switch d.byte() {
	case 0:
	case 1:
		k.space, k.hasSpace = binary.LittleEndian.Uint64(d.take(8)), true
	default:
		d.err = cmp.Or(d.err, fmt.Errorf("%w: bad tombstone space flag", errCorrupt))
	}
	return k, d.done()
}

// encodePurge is the value stored under t/p/…: a format byte, partition
// and route (length-prefixed), at and until (Unix nanoseconds, varint).
func encodePurge(p purgeRec) []byte {
	b := make([]byte, 0, 1+2*binary.MaxVarintLen64+len(p.f.partition)+len(p.f.route)+2*binary.MaxVarintLen64)
	b = append(b, tombFormat)
	b = appendString(b, p.f.partition)
	b = appendString(b, p.f.route)
	b = binary.AppendVarint(b, p.f.before.UnixNano())
	return binary.AppendVarint(b, p.until)
}

func decodePurge(b []byte) (purgeRec, error) {
	d := decoder{b: b}
	if d.byte() != tombFormat {
		return purgeRec{}, fmt.Errorf("%w: unknown purge format", errCorrupt)
	}
	var p purgeRec
	p.f.partition = string(d.bytes())
	p.f.route = string(d.bytes())
	p.f.before = time.Unix(0, d.varint())
	p.until = d.varint()
	return p, d.done()
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// done is the decoder's error, or one for trailing bytes.
func (d *decoder) done() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes", errCorrupt, len(d.b))
	}
	return d.err
}

// persist commits e to the database (nothing without one) and returns once
// it is committed, or the cache closes. Badger's TTL is a safety net behind
// the sweep.
//
// The entries of concurrent Stores are committed together (a group commit,
// see commitLoop): a cache whose every request misses stores as many
// entries as it answers requests, and a transaction per entry cost each its
// own round trip to Badger's writer. Nothing waits to fill a batch, so no
// entry waits longer than the commit in progress, and none is acknowledged
// before it is committed: a crash loses only entries whose Store had not
// returned.
func (c *Cache) persist(e *Entry) error {
	if c.opts.DB == nil {
		return nil
	}
	done := make(chan error, 1)
	c.enqueue(commitReq{de: diskEntry(e, c.opts.Now()), done: func(err error) { done <- err }})
	// As a transaction of its own would, the store waits for its commit
	// whatever its ctx says: an entry written after its Store gave up would
	// be on disk but not in memory, and come back at the next load.
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("index: persisting entry %s: %w", e.ID, err)
		}
		return nil
	case <-c.ctx.Done():
		return ErrClosed
	}
}

// commitReq is one entry for commitLoop: committed (when there is a DB),
// then, for a Store (e set), added to its shard; done is told the outcome,
// once, from the loop's goroutine or a shard's actor, and must not block.
type commitReq struct {
	de   *badger.Entry // nil without a DB
	e    *Entry        // a Store's entry, owned by the cache; nil for persist
	id   uint64        // e's parsed ID
	done func(error)
	err  error // the outcome so far
}

// commitQueue is what Stores hand commitLoop: a slice under a mutex, so
// that handing over never waits for the loop (a store is queued while the
// commit in progress runs), and a wake-up, sent only when the queue turns
// non-empty.
type commitQueue struct {
	mu   sync.Mutex
	reqs []commitReq
	wake chan struct{} // buffered(1)
}

// enqueue hands r to commitLoop; it never blocks. After Close, r fails
// with ErrClosed at once.
func (c *Cache) enqueue(r commitReq) {
	q := &c.queue
	q.mu.Lock()
	if c.ctx.Err() != nil {
		q.mu.Unlock()
		r.done(ErrClosed)
		return
	}
	q.reqs = append(q.reqs, r)
	first := len(q.reqs) == 1
	q.mu.Unlock()
	if first {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

// take removes and returns up to writeBatch queued requests into batch.
func (q *commitQueue) take(batch []commitReq) []commitReq {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := min(len(q.reqs), writeBatch)
	batch = append(batch[:0], q.reqs[:n]...)
	rest := copy(q.reqs, q.reqs[n:])
	clear(q.reqs[rest:])
	q.reqs = q.reqs[:rest]
	if rest > 0 {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
	return batch
}

// commitLoop commits the entries Stores and persist hand it, in as few
// transactions as Badger's size limits allow: whatever is queued when a
// commit ends goes in the next one, up to writeBatch entries. It then adds
// the Stores' entries to their shards, one message per shard for the
// batch, and tells each caller. It runs until Close, finishing the batch in
// progress; what is still queued then fails with ErrClosed.
func (c *Cache) commitLoop() {
	var batch []commitReq
	for {
		select {
		case <-c.ctx.Done():
			c.queue.mu.Lock()
			left := c.queue.reqs
			c.queue.reqs = nil
			c.queue.mu.Unlock()
			for _, r := range left {
				r.done(ErrClosed)
			}
			return
		case <-c.queue.wake:
			if c.ctx.Err() != nil {
				continue // closing: the drain above answers what is queued
			}
		}
		// Let the goroutines that are ready run first: under load some
		// of them are about to store, and join this commit instead of
		// paying for one of their own. With nothing else ready it returns
		// at once.
		runtime.Gosched()
		batch = c.queue.take(batch)
		if c.opts.DB != nil {
			c.commitBatch(batch)
		}
		c.addCommitted(batch)
		clear(batch) // hold no entry until the next batch
	}
}

// commitBatch commits batch in transactions of as many entries as fit and
// records each one's transaction's outcome. An entry that fits in no
// transaction fails alone.
func (c *Cache) commitBatch(batch []commitReq) {
	for len(batch) > 0 {
		txn := c.opts.DB.NewTransaction(true)
		n := 0
		var err error
		for ; n < len(batch); n++ {
			if err = txn.SetEntry(batch[n].de); err != nil {
				break // too big with the others: it starts the next one
			}
		}
		if n == 0 {
			txn.Discard()
			batch[0].err = err
			batch = batch[1:]
			continue
		}
		err = txn.Commit()
		for i := range batch[:n] {
			batch[i].err = err
		}
		batch = batch[n:]
	}
}

// diskEntry is e as Badger stores it, with a TTL of e's remaining life (as
// of now) plus diskGrace.
func diskEntry(e *Entry, now time.Time) *badger.Entry {
	return badger.NewEntry(diskKey(e.ID), encodeEntry(e)).WithTTL(e.ExpiresAt.Sub(now) + diskGrace)
}

// persistAll commits es to the database in one WriteBatch, which splits
// them into as few transactions as Badger's size limits allow and commits
// those in the background: one commit per entry would cost a round trip to
// Badger's writer each. It returns once every entry is committed.
func (c *Cache) persistAll(es []*Entry) error {
	if c.opts.DB == nil || len(es) == 0 {
		return nil
	}
	now := c.opts.Now()
	wb := c.opts.DB.NewWriteBatch()
	defer wb.Cancel() // after Flush, a no-op
	for _, e := range es {
		if err := wb.SetEntry(diskEntry(e, now)); err != nil {
			return fmt.Errorf("index: persisting %d entries: %w", len(es), err)
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("index: persisting %d entries: %w", len(es), err)
	}
	return nil
}

// deleteKeys removes the entries' keys from the database.
func (c *Cache) deleteKeys(ids []string) error {
	if c.opts.DB == nil || len(ids) == 0 {
		return nil
	}
	keys := make([][]byte, len(ids))
	for i, id := range ids {
		keys[i] = diskKey(id)
	}
	return c.write(nil, keys)
}

// diskSet is a key to set, with Badger's TTL as a safety net.
type diskSet struct {
	key, val []byte
	ttl      time.Duration
}

// write sets, then deletes, keys in transactions of bounded size. Sets go
// first so that a crash between them leaves a tombstone with its entry
// (which the load then drops), never an entry gone without its tombstone.
func (c *Cache) write(sets []diskSet, dels [][]byte) error {
	if c.opts.DB == nil {
		return nil
	}
	for len(sets)+len(dels) > 0 {
		ns := min(len(sets), writeBatch)
		nd := min(len(dels), writeBatch-ns)
		err := c.opts.DB.Update(func(txn *badger.Txn) error {
			for _, s := range sets[:ns] {
				if err := txn.SetEntry(badger.NewEntry(s.key, s.val).WithTTL(s.ttl)); err != nil {
					return err
				}
			}
			for _, k := range dels[:nd] {
				if err := txn.Delete(k); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("index: writing %d keys, deleting %d: %w", ns, nd, err)
		}
		sets, dels = sets[ns:], dels[nd:]
	}
	return nil
}

// writeTombs persists the tombstones that are not past and deletes their
// entries' keys, and those of ids.
func (c *Cache) writeTombs(ks []killed, ids []string) error {
	if c.opts.DB == nil {
		return nil
	}
	now := c.opts.Now().UnixNano()
	sets := make([]diskSet, 0, len(ks))
	dels := make([][]byte, 0, len(ks)+len(ids))
	for _, k := range ks {
		id := formatID(k.id)
		if k.until > now {
			ttl := time.Duration(k.until-now) + diskGrace
			sets = append(sets, diskSet{tombKey(id), encodeTomb(k), ttl})
		}
		dels = append(dels, diskKey(id))
	}
	for _, id := range ids {
		dels = append(dels, diskKey(id))
	}
	return c.write(sets, dels)
}

// writePurge persists a purge record.
func (c *Cache) writePurge(p purgeRec) error {
	ttl := time.Duration(p.until-c.opts.Now().UnixNano()) + diskGrace
	return c.write([]diskSet{{purgeKey(p), encodePurge(p), ttl}}, nil)
}

// loadTombstones reads the tombstones and purge records not yet past into
// the shards, before their actors start. Unreadable values are logged and
// skipped, as entries are; a failing database is an error.
func (c *Cache) loadTombstones() error {
	now := c.opts.Now().UnixNano()
	prefix := []byte(store.PrefixTombstone)
	tombs, purges := 0, 0
	err := c.opts.DB.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 256, Prefix: prefix})
		defer it.Close()
		for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
			item := it.Item()
			key := string(item.Key()[len(prefix):])
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			switch {
			case strings.HasPrefix(key, "d/"):
				id, ok := parseID(key[2:])
				k, err := decodeTomb(id, v)
				if !ok || err != nil {
					c.log.Warn("cache tombstone unreadable, skipped", "key", string(item.Key()), "err", err)
					continue
				}
				if k.until > now {
					c.place(k, now)
					tombs++
				}
			case strings.HasPrefix(key, "p/"):
				p, err := decodePurge(v)
				if err != nil {
					c.log.Warn("cache purge record unreadable, skipped", "key", string(item.Key()), "err", err)
					continue
				}
				if p.until > now {
					for _, s := range c.shards {
						s.addPurge(p)
					}
					purges++
				}
			default:
				c.log.Warn("unknown cache tombstone key skipped", "key", string(item.Key()))
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("index: loading tombstones: %w", err)
	}
	if tombs+purges > 0 {
		c.log.Info("cache tombstones loaded", "tombstones", tombs, "purges", purges)
	}
	return nil
}

// place records k's copies directly (the actors are not running): in the
// shard of its Space, or in every shard when the Space is unknown, and in
// its counting shard.
func (c *Cache) place(k killed, now int64) {
	n := uint64(len(c.shards))
	t := tomb{k.at, k.until}
	if !k.hasSpace {
		for _, s := range c.shards {
			s.bury(k.id, t, now)
		}
		return
	}
	c.shards[k.space%n].bury(k.id, t, now)
	c.shards[k.id%n].bury(k.id, t, now)
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
	loaded, skipped := 0, 0
	flush := func(i int) error {
		batch := batches[i]
		batches[i] = nil
		if len(batch) == 0 {
			return nil
		}
		var stale []string
		var ks []killed
		err := c.call(c.ctx, c.shards[i], func(s *shard) {
			for _, e := range batch {
				id, _ := parseID(e.ID)
				st, k, _ := s.add(id, e, false, true)
				stale = append(stale, st...)
				if k != nil {
					ks = append(ks, *k)
				}
			}
		})
		if err != nil {
			return err
		}
		loaded += len(batch)
		if err := c.deleteKeys(stale); err != nil {
			return err
		}
		return c.settle(c.ctx, ks)
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
			i := c.shardOf(e.Space).idx
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
	if err := c.evict(c.ctx); err != nil {
		c.log.Warn("evicting after load failed", "err", err)
	}
	c.log.Info("cache loaded", "entries", loaded, "skipped", skipped, "took", time.Since(start).Round(time.Millisecond))
}
