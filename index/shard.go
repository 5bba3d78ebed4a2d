package index

import (
	"cmp"
	"container/heap"
	"context"
	"encoding/binary"
	"slices"
	"sync/atomic"
	"time"

	"github.com/llmgate/llmgate/index/graph"
)

// shard owns the entries of the Spaces that hash to it. Only its run
// goroutine touches its fields; everyone else sends it closures.
type shard struct {
	c     *Cache
	idx   int // position in Cache.shards
	inbox chan op

	entries map[uint64]*record       // id → record
	exact   map[uint64]uint64        // hashKey(request hash) → id (hashes include the Space)
	norm    map[uint64]uint64        // hashKey(normalised-dialog hash) → id (include the Space too)
	spaces  map[Space]*spaceRef      // the Spaces of the records held, each kept once
	graphs  map[graphKey]graph.Index // one graph per Space and vector length
	expiry  expiryHeap               // every ordinary record, soonest ExpiresAt first
	iexpiry expiryHeap               // every record of an internal Space (see Space.Internal)

	// tombs holds a copy of every tombstone whose ID may land here: the
	// shard of the deleted entry's Space, or every shard when the Space is
	// unknown. The shard that decides whether an entry comes back thus
	// decides alone, without asking another actor. Of an ID's copies, the
	// one in its counting shard (id mod shards) is the one in the digest,
	// in Versions and on disk.
	tombs  map[uint64]tomb
	tombQ  tombHeap   // every copy, soonest until first; stale items are skipped
	purges []purgeRec // every shard holds every live purge record

	// digest is the XOR of liveMix over the entries held and of tombMix
	// over the tombstones counted here, per bucket.
	digest Digest

	// keys summarises the hashes of exact and norm for callers (see
	// keySet); keysGone counts the hashes removed from those maps since it
	// was built.
	keys     atomic.Pointer[keySet]
	keysGone int
}

// op is a message to a shard's actor: f runs on it, then done (when set,
// and buffered so that the actor never waits) is signalled. Carrying done
// beside f, rather than in a closure wrapping f, saves an allocation per
// call on the lookup path.
type op struct {
	f    func(*shard)
	done chan<- struct{}
}

// tomb is a tombstone: the ID was deleted at at and must not come back
// until until (Unix nanoseconds).
type tomb struct{ at, until int64 }

// purgeRec remembers a purge: entries of f created at or before f.before
// are refused until until.
type purgeRec struct {
	f     filter
	until int64
}

// killed is a tombstone a shard recorded for an entry it removed or
// refused, for the caller to finish: the counting shard's copy, the disk.
type killed struct {
	id        uint64
	at, until int64
	space     uint64 // spaceHash of the entry, when hasSpace
	hasSpace  bool
}

// record is one entry as the shard holds it, in one allocation of 192
// bytes: an Entry of its own (256) beside a record (48) took 112 more per
// entry. Its ID is id formatted (parseID admits nothing else), its Space is
// shared with the shard's other records of that Space, and its vector is in
// the graph only. Every field but hits and at is never changed after the
// record is made, so a caller may read them from its own goroutine (see
// candidate); hits and at belong to the actor.
type record struct {
	id      uint64
	sp      *spaceRef
	exact   [32]byte
	norm    [32]byte
	prompt  string
	resp    []byte
	created time.Time
	expires time.Time
	hits    uint64
	dim     int32 // the vector's length, naming its graph; 0 = exact tier only
	at      int32 // index in the expiry heap
}

// spaceRef is a Space held once per shard for all its records, with the
// number of records that refer to it.
type spaceRef struct {
	sp   Space
	refs int
}

// size is the entry's bytes, vector included, for Stats.
func (r *record) size() int64 { return int64(len(r.resp) + len(r.prompt) + 4*int(r.dim)) }

// entry is the record as an Entry, without its vector, with hits as its Hits.
func (r *record) entry(hits uint64) *Entry {
	return &Entry{
		ID: formatID(r.id), Space: r.sp.sp, Exact: r.exact, Norm: r.norm, Prompt: r.prompt,
		Response: r.resp, CreatedAt: r.created, ExpiresAt: r.expires, Hits: hits,
	}
}

// hashKey is the map key of a request or dialog hash: its first 64 bits.
// Two hashes sharing them are not the same: a lookup compares the whole
// hash with the record's, so a collision is a miss, never another answer,
// and the later entry of a colliding pair is not indexed (see add).
func hashKey(h [32]byte) uint64 { return binary.LittleEndian.Uint64(h[:8]) }

// graphKey names a graph: vectors of different lengths (an embedder changed
// between restarts) never share one, so Search never sees mismatched sizes.
type graphKey struct {
	sp  Space
	dim int
}

// expiry orders eviction: soonest ExpiresAt, then lower id.
type expiry struct {
	at time.Time
	id uint64
}

func (x expiry) before(y expiry) bool {
	if c := x.at.Compare(y.at); c != 0 {
		return c < 0
	}
	return x.id < y.id
}

// candidate is a semantic match handed to the caller for the guard. r is
// the record, whose fields but hits and at are never changed: the caller
// reads its prompt and makes an Entry only of the candidate it returns, so
// vetoed ones cost no allocation.
type candidate struct {
	id   uint64
	r    *record
	hits uint64 // the record's hits when it was found
	d    float32
}

// filter selects entries for Purge and List; "" matches all.
type filter struct {
	partition, route string
	before           time.Time // Purge: entries created at or before this time
}

// An internal Space (Space.Internal) matches only a filter that names its
// partition or its route: listing or purging "everything" leaves it alone.
func (f filter) match(sp Space) bool {
	if sp.Internal() && f.partition != sp.Partition && f.route != sp.Route {
		return false
	}
	return (f.partition == "" || f.partition == sp.Partition) && (f.route == "" || f.route == sp.Route)
}

func newShard(c *Cache, idx int) *shard {
	s := &shard{
		c:       c,
		idx:     idx,
		inbox:   make(chan op, 64),
		entries: map[uint64]*record{},
		exact:   map[uint64]uint64{},
		norm:    map[uint64]uint64{},
		spaces:  map[Space]*spaceRef{},
		graphs:  map[graphKey]graph.Index{},
		tombs:   map[uint64]tomb{},
	}
	s.keys.Store(newKeySet(0))
	return s
}

// mayHold reports whether the exact or the norm map may hold exact or norm
// (zero: not asked); false means neither does. Safe from any goroutine.
func (s *shard) mayHold(exact, norm [32]byte) bool {
	k := s.keys.Load()
	return exact != ([32]byte{}) && k.mayHold(exact) || norm != ([32]byte{}) && k.mayHold(norm)
}

// indexKey records h, which the exact or the norm map now holds, in the
// key set, built afresh (larger) when it is too full.
func (s *shard) indexKey(h [32]byte) {
	k := s.keys.Load()
	if k.full(len(s.exact) + len(s.norm)) {
		s.rebuildKeys()
		k = s.keys.Load()
	}
	k.add(h)
}

// unindexKeys counts n hashes removed from the exact and the norm maps;
// once such hashes outnumber those held, the key set is built afresh
// without them.
func (s *shard) unindexKeys(n int) {
	if s.keysGone += n; s.keysGone > len(s.exact)+len(s.norm)+minKeyBits/keyBitsPerHash {
		s.rebuildKeys()
	}
}

// rebuildKeys publishes a key set of every hash the maps hold, sized for
// them.
func (s *shard) rebuildKeys() {
	k := newKeySet(len(s.exact) + len(s.norm))
	for _, id := range s.exact {
		if r := s.entries[id]; r != nil { // always: the maps name records held
			k.add(r.exact)
		}
	}
	for _, id := range s.norm {
		if r := s.entries[id]; r != nil {
			k.add(r.norm)
		}
	}
	s.keys.Store(k)
	s.keysGone = 0
}

func (s *shard) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-s.inbox:
			m.f(s)
			if m.done != nil {
				m.done <- struct{}{}
			}
		}
	}
}

func (s *shard) now() time.Time { return s.c.opts.Now() }

func live(r *record, now time.Time) bool { return r.expires.After(now) }

// view is the copy of r handed out.
func view(r *record) *Entry { return r.entry(r.hits) }

// lookupExact finds h; the Space is checked too, so that a caller mixing
// up hashes still never crosses Spaces.
func (s *shard) lookupExact(sp Space, h [32]byte) *Entry {
	id, ok := s.exact[hashKey(h)]
	if !ok {
		return nil
	}
	r := s.entries[id]
	if r == nil || r.exact != h || r.sp.sp != sp || !live(r, s.now()) {
		return nil
	}
	r.hits++
	return view(r)
}

// lookupNorm finds h in the normalised tier, checking the Space.
func (s *shard) lookupNorm(sp Space, h [32]byte) *Entry {
	id, ok := s.norm[hashKey(h)]
	if !ok {
		return nil
	}
	r := s.entries[id]
	if r == nil || r.norm != h || r.sp.sp != sp || !live(r, s.now()) {
		return nil
	}
	r.hits++
	return view(r)
}

// nearest returns the live entries among the Candidates nearest to vec in
// sp's graph that lie within threshold, nearest first.
func (s *shard) nearest(sp Space, vec []float32, threshold float32) []candidate {
	g := s.graphs[graphKey{sp, len(vec)}]
	if g == nil {
		return nil
	}
	now := s.now()
	ms := g.Search(vec, s.c.opts.Candidates)
	var out []candidate
	for _, m := range ms {
		r := s.entries[m.ID]
		if !(m.Distance <= threshold) || r == nil || !live(r, now) { // NaN is no match
			continue
		}
		if out == nil {
			out = make([]candidate, 0, len(ms)) // one allocation; none on a miss
		}
		out = append(out, candidate{id: m.ID, r: r, hits: r.hits, d: m.Distance})
	}
	return out
}

func (s *shard) hit(id uint64) {
	if r, ok := s.entries[id]; ok {
		r.hits++
	}
}

// Why add refuses an entry.
const (
	admitted = iota
	present  // replica or loaded entry whose ID is held: idempotent
	dead     // tombstoned, or covered by a purge record
)

// refuse tells whether add would refuse e: a tombstoned ID, or an entry
// created before a purge that covers it, which is then tombstoned here (the
// returned killed is for the caller to finish); replicated and loaded
// entries also an ID already held.
func (s *shard) refuse(id uint64, e *Entry, replica bool) (int, *killed) {
	if _, ok := s.entries[id]; ok && replica {
		return present, nil
	}
	if _, ok := s.tombs[id]; ok {
		return dead, nil
	}
	// A local store created before a purge that covers it (queued behind a
	// commit while the purge ran) is refused too: peers refuse its copy and
	// the next load drops it, so admitting it would answer from an entry
	// the cluster has purged and lose it at the next restart.
	for _, p := range s.purges {
		if p.f.match(e.Space) && !e.CreatedAt.After(p.f.before) {
			k := s.kill(id, e, p.f.before.UnixNano())
			return dead, k
		}
	}
	return admitted, nil
}

// add inserts e (owned by the shard from now on) under id and returns the
// IDs whose disk keys are now stale (entries it replaced, or e's own when e
// lost or was refused), a tombstone to finish when a purge record refused
// e, and whether e is in. Store (neither replica nor loaded) always wins
// unless its ID is tombstoned or a purge covers it; replicated and loaded entries are idempotent
// on id and, against an entry with the same Exact hash, the later
// (CreatedAt, id) wins.
func (s *shard) add(id uint64, e *Entry, replica, loaded bool) (stale []string, k *killed, ok bool) {
	if why, dk := s.refuse(id, e, replica || loaded); why == present {
		return nil, nil, false
	} else if why == dead {
		return []string{e.ID}, dk, false
	}
	if _, ok := s.entries[id]; ok {
		s.remove(id) // same key, rewritten by the caller: not stale
	}
	// A hash whose key is held by an entry with another hash (a 64-bit
	// collision) is not indexed: its look-ups miss.
	indexExact := e.Exact != ([32]byte{})
	if indexExact {
		if old, ok := s.exact[hashKey(e.Exact)]; ok {
			o := s.entries[old]
			if o.exact != e.Exact {
				indexExact = false
			} else {
				if (replica || loaded) && cmp.Or(e.CreatedAt.Compare(o.created), cmp.Compare(id, old)) < 0 {
					return []string{e.ID}, nil, false
				}
				s.remove(old)
				stale = append(stale, formatID(old))
			}
		}
	}
	if indexExact {
		s.exact[hashKey(e.Exact)] = id
	}
	indexNorm := false
	if e.Norm != ([32]byte{}) {
		// The newest entry answers the normalised tier; an older one keeps
		// its exact key.
		if old, ok := s.norm[hashKey(e.Norm)]; !ok || s.entries[old].norm == e.Norm && !s.entries[old].created.After(e.CreatedAt) {
			s.norm[hashKey(e.Norm)] = id
			indexNorm = !ok // else the same hash, set already
		}
	}
	ref := s.spaces[e.Space]
	if ref == nil {
		ref = &spaceRef{sp: e.Space}
		s.spaces[e.Space] = ref
	}
	ref.refs++
	// The graph keeps the only copy of the vector in memory: a second one
	// per entry would double the cache's largest cost. Disk keeps it for
	// restarts and peers.
	r := &record{
		id: id, sp: ref, exact: e.Exact, norm: e.Norm, prompt: e.Prompt, resp: e.Response,
		created: e.CreatedAt, expires: e.ExpiresAt, hits: e.Hits, dim: int32(len(e.Vector)),
	}
	s.entries[id] = r
	// The key set learns the hashes once the record is in: a rebuild reads
	// the records the maps name.
	if indexExact {
		s.indexKey(e.Exact)
	}
	if indexNorm {
		s.indexKey(e.Norm)
	}
	if r.dim > 0 {
		k := graphKey{e.Space, int(r.dim)}
		g := s.graphs[k]
		if g == nil {
			g = s.c.opts.NewGraph()
			s.graphs[k] = g
		}
		g.Add(id, e.Vector)
	}
	heap.Push(s.heapOf(r), r)
	s.digest[byte(id)] ^= liveMix(id, e.CreatedAt.UnixNano())
	s.c.count(e.Space, 1, r.size())
	return stale, nil, true
}

// remove takes id out of the maps, its graph and the heap; it returns the
// removed entry or nil.
func (s *shard) remove(id uint64) *Entry {
	r, ok := s.entries[id]
	if !ok {
		return nil
	}
	delete(s.entries, id)
	gone := 0
	if cur, ok := s.exact[hashKey(r.exact)]; ok && cur == id {
		delete(s.exact, hashKey(r.exact))
		gone++
	}
	if cur, ok := s.norm[hashKey(r.norm)]; ok && cur == id {
		delete(s.norm, hashKey(r.norm))
		gone++
	}
	s.unindexKeys(gone)
	if r.dim > 0 {
		k := graphKey{r.sp.sp, int(r.dim)}
		if g := s.graphs[k]; g != nil {
			g.Delete(id)
			if g.Len() == 0 {
				delete(s.graphs, k)
			}
		}
	}
	heap.Remove(s.heapOf(r), int(r.at))
	s.digest[byte(id)] ^= liveMix(id, r.created.UnixNano())
	s.c.count(r.sp.sp, -1, -r.size())
	if r.sp.refs--; r.sp.refs == 0 {
		delete(s.spaces, r.sp.sp)
	}
	return view(r)
}

// heapOf is the expiry heap r belongs to.
func (s *shard) heapOf(r *record) *expiryHeap {
	if r.sp.sp.Internal() {
		return &s.iexpiry
	}
	return &s.expiry
}

// soonest is the shard's next entry to evict: an ordinary one, never an
// internal one (those leave by their own expiry only).
func (s *shard) soonest() (expiry, bool) {
	if len(s.expiry) == 0 {
		return expiry{}, false
	}
	r := s.expiry[0]
	return expiry{r.expires, r.id}, true
}

// swept is what a sweep removed from a shard, for the disk.
type swept struct {
	entries []string // IDs of expired entries
	tombs   []string // IDs of the tombstones this shard counted
	purges  [][]byte // keys of purge records (reported by shard 0 only)
}

// expire removes the entries expired at now, and the tombstones and purge
// records past their until.
func (s *shard) expire(now time.Time) swept {
	var out swept
	for len(s.expiry) > 0 && !live(s.expiry[0], now) {
		out.entries = append(out.entries, s.remove(s.expiry[0].id).ID)
	}
	for len(s.iexpiry) > 0 && !live(s.iexpiry[0], now) {
		out.entries = append(out.entries, s.remove(s.iexpiry[0].id).ID)
	}
	ns := now.UnixNano()
	for len(s.tombQ) > 0 && s.tombQ[0].until <= ns {
		q := heap.Pop(&s.tombQ).(tombAt)
		if t, ok := s.tombs[q.id]; !ok || t.until != q.until {
			continue // a copy recorded again after an earlier one was swept
		}
		delete(s.tombs, q.id)
		if s.counts(q.id) {
			s.digest[byte(q.id)] ^= tombMix(q.id)
			out.tombs = append(out.tombs, formatID(q.id))
		}
	}
	s.purges = slices.DeleteFunc(s.purges, func(p purgeRec) bool {
		if p.until > ns {
			return false
		}
		if s.idx == 0 {
			out.purges = append(out.purges, purgeKey(p))
		}
		return true
	})
	return out
}

func (s *shard) get(id uint64) *Entry {
	r, ok := s.entries[id]
	if !ok || !live(r, s.now()) {
		return nil
	}
	return view(r)
}

// counts reports whether this shard is id's counting shard.
func (s *shard) counts(id uint64) bool { return id%uint64(len(s.c.shards)) == uint64(s.idx) }

// bury records a copy of id's tombstone unless one is held or it is past
// (now and until in Unix nanoseconds); it reports whether it recorded one.
// The first copy wins: a repeated delete does not extend a tombstone.
func (s *shard) bury(id uint64, t tomb, now int64) bool {
	if t.until <= now {
		return false
	}
	if _, ok := s.tombs[id]; ok {
		return false
	}
	s.tombs[id] = t
	heap.Push(&s.tombQ, tombAt{t.until, id})
	if s.counts(id) {
		s.digest[byte(id)] ^= tombMix(id)
	}
	return true
}

// kill tombstones the entry e (already removed, or refused) as of at. The
// tombstone lasts as long as the entry could live anywhere, and at least
// TTL after at, the span a node that never held e gives it.
func (s *shard) kill(id uint64, e *Entry, at int64) *killed {
	k := &killed{
		id:       id,
		at:       at,
		until:    max(at+int64(s.c.ttl()), e.ExpiresAt.UnixNano()),
		space:    spaceHash(e.Space),
		hasSpace: true,
	}
	s.bury(id, tomb{k.at, k.until}, s.now().UnixNano())
	return k
}

// deleteID removes id's entry, if held, and tombstones it as of at. It
// reports whether it held a tombstone for id already.
func (s *shard) deleteID(id uint64, at int64) (k *killed, had bool) {
	_, had = s.tombs[id]
	if _, ok := s.entries[id]; !ok {
		return nil, had
	}
	return s.kill(id, s.remove(id), at), had
}

// tombstone records k's copy here and removes an entry with its ID that
// raced in; it returns that entry's ID ("" if none) and whether the copy
// is new.
func (s *shard) tombstone(k killed) (gone string, fresh bool) {
	if e := s.remove(k.id); e != nil {
		gone = e.ID
	}
	return gone, s.bury(k.id, tomb{k.at, k.until}, s.now().UnixNano())
}

// purge records p (unless past) and removes the matching entries, all of
// them or those created at or before the purge, tombstoning each.
func (s *shard) purge(p purgeRec, all bool) []killed {
	if p.until > s.now().UnixNano() {
		s.addPurge(p)
	}
	at := p.f.before.UnixNano()
	var out []killed
	for id, r := range s.entries {
		if p.f.match(r.sp.sp) && (all || !r.created.After(p.f.before)) {
			out = append(out, *s.kill(id, s.remove(id), at))
		}
	}
	return out
}

// addPurge keeps p, unless a record of the same partition and route at or
// after it is held; a later one replaces an earlier one, so repeated purges
// do not pile up.
func (s *shard) addPurge(p purgeRec) {
	for i, q := range s.purges {
		if q.f.partition == p.f.partition && q.f.route == p.f.route {
			if p.f.before.After(q.f.before) {
				s.purges[i] = p
			}
			return
		}
	}
	s.purges = append(s.purges, p)
}

// versions lists the live entries and the counted, unexpired tombstones in
// the buckets of want.
func (s *shard) versions(want *[256]bool) []Version {
	now := s.now()
	var out []Version
	for id, r := range s.entries {
		if want[byte(id)] && live(r, now) {
			out = append(out, Version{ID: formatID(id), CreatedAt: r.created.UnixNano()})
		}
	}
	ns := now.UnixNano()
	for id, t := range s.tombs {
		if want[byte(id)] && s.counts(id) && t.until > ns {
			out = append(out, Version{ID: formatID(id), CreatedAt: t.at, Deleted: true})
		}
	}
	return out
}

// export returns copies of the live entries among ids, with their vectors
// from the graph when vectors is set.
func (s *shard) export(ids []uint64, vectors bool) []*Entry {
	now := s.now()
	var out []*Entry
	for _, id := range ids {
		r, ok := s.entries[id]
		if !ok || !live(r, now) {
			continue
		}
		e := view(r)
		if vectors && r.dim > 0 {
			if g := s.graphs[graphKey{r.sp.sp, int(r.dim)}]; g != nil {
				e.Vector, _ = g.Vector(id)
			}
		}
		out = append(out, e)
	}
	return out
}

// list returns the first limit live entries matching f with id > after (when
// hasAfter), in id order, and whether more follow.
func (s *shard) list(f filter, after uint64, hasAfter bool, limit int) ([]*Entry, bool) {
	now := s.now()
	var rs []*record
	for id, r := range s.entries {
		if (!hasAfter || id > after) && f.match(r.sp.sp) && live(r, now) {
			rs = append(rs, r)
		}
	}
	slices.SortFunc(rs, func(a, b *record) int { return cmp.Compare(a.id, b.id) })
	more := len(rs) > limit
	rs = rs[:min(limit, len(rs))]
	out := make([]*Entry, len(rs))
	for i, r := range rs {
		out[i] = view(r)
	}
	return out, more
}

// search returns the k nearest live entries to vec in sp (every Shape of
// sp's partition and route when sp.Shape is "").
func (s *shard) search(sp Space, vec []float32, k int) []SearchMatch {
	now := s.now()
	var out []SearchMatch
	for key, g := range s.graphs {
		if key.dim != len(vec) || key.sp.Partition != sp.Partition || key.sp.Route != sp.Route ||
			(sp.Shape != "" && key.sp.Shape != sp.Shape) {
			continue
		}
		for _, m := range g.Search(vec, k) {
			if r := s.entries[m.ID]; r != nil && live(r, now) {
				out = append(out, SearchMatch{ID: formatID(r.id), Distance: m.Distance, Prompt: r.prompt})
			}
		}
	}
	slices.SortFunc(out, func(a, b SearchMatch) int {
		return cmp.Or(cmp.Compare(a.Distance, b.Distance), cmp.Compare(a.ID, b.ID))
	})
	return out[:min(k, len(out))]
}

// expiryHeap is a min-heap of records by expiry; records know their index.
type expiryHeap []*record

func (h expiryHeap) Len() int { return len(h) }
func (h expiryHeap) Less(i, j int) bool {
	return expiry{h[i].expires, h[i].id}.before(expiry{h[j].expires, h[j].id})
}
func (h expiryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].at, h[j].at = int32(i), int32(j)
}
func (h *expiryHeap) Push(x any) {
	r := x.(*record)
	r.at = int32(len(*h))
	*h = append(*h, r)
}
func (h *expiryHeap) Pop() any {
	old := *h
	r := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return r
}

// tombAt is an item of the tombstone heap.
type tombAt struct {
	until int64
	id    uint64
}

// tombHeap is a min-heap of tombstone copies by until. Items are never
// removed but by popping; a popped item whose copy has since changed is
// skipped.
type tombHeap []tombAt

func (h tombHeap) Len() int { return len(h) }
func (h tombHeap) Less(i, j int) bool {
	return cmp.Or(cmp.Compare(h[i].until, h[j].until), cmp.Compare(h[i].id, h[j].id)) < 0
}
func (h tombHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *tombHeap) Push(x any)   { *h = append(*h, x.(tombAt)) }
func (h *tombHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
