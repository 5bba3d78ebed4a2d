package index

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/llmgate/llmgate/index/graph"
)

// ErrClosed is returned by calls made after (or racing with) Close.
var ErrClosed = errors.New("index: cache closed")

// ErrNotReady is returned by Digest and Versions until the persisted
// entries are loaded: a partial digest would make peers ship what is on
// disk already.
var ErrNotReady = errors.New("index: cache still loading")

// Options configure a Cache. Zero fields get the defaults named on them.
type Options struct {
	// DB persists entries under store.PrefixCache and tombstones and purge
	// records under store.PrefixTombstone. nil keeps the cache in memory
	// only. The caller owns it and must Close the Cache before the DB.
	DB *badger.DB
	// Now is the clock for creation and expiry (default time.Now). Sweeps run
	// on a real ticker, but every expiry decision reads Now.
	Now func() time.Time
	// Logger receives load and disk errors (default: discard).
	Logger *slog.Logger
	// NewGraph makes the nearest-neighbour index of one Space (default
	// graph.NewFlat). Each graph is owned by one shard actor: it is never
	// called concurrently.
	NewGraph func() graph.Index
	// Shards is the number of actors (default 4). A Space maps to one shard
	// by hash, so all of one Space's entries live in one actor.
	Shards int
	// TTL is the lifetime of a stored entry whose ExpiresAt is zero
	// (default 1h).
	TTL time.Duration
	// MaxEntries bounds the entries across all shards; 0 = unbounded. Beyond
	// it, Store evicts the entry that expires soonest (ties: the lower ID),
	// from the graph, the maps and the disk, before it returns. Records of
	// internal Spaces are neither counted nor evicted (see Space.Internal).
	MaxEntries int
	// Check guards semantic hits: called with the query's prompt and a
	// candidate's, from the caller's goroutine of LookupSemantic (never from
	// an actor), it may veto a near-miss. nil accepts every candidate.
	Check func(query, candidate string) (ok bool, reason string)
	// Judgeable tells, for a candidate Check refused, whether the refusal
	// is one a judge may settle (guard.Judgeable): NearestJudgeable then
	// offers it. nil: no refusal is.
	Judgeable func(query, candidate string) bool
	// Candidates is how many nearest neighbours a semantic lookup examines
	// (default 4).
	Candidates int
	// SweepInterval is how often expired entries, tombstones and purge
	// records are removed (default 1s).
	SweepInterval time.Duration
	// OnChange, when set, is told of every local change to replicate: a
	// Store (after it is persisted; the Entry carries its Vector), a Delete
	// that removed or tombstoned something, a Purge. It runs in the
	// caller's goroutine (the committer's for a Store), so it must not
	// block: hand the change to a queue.
	// Changes made by Apply are not reported (they came from a peer), nor
	// are evictions by MaxEntries and TTL expiry, which every node does on
	// its own.
	OnChange func(Change)

	// beforeLoad, when set (tests only), runs in the loader goroutine before
	// it reads the database.
	beforeLoad func()
}

// Space names where entries may match each other: nothing ever matches
// across Spaces, by the exact tier or the semantic tier.
type Space struct {
	Partition string // admin-visible partition name: vary_by values joined by "/"
	Route     string
	Shape     string // opaque hash of the answer-shaping request parameters
}

// Internal reports whether sp is an internal Space: its Route begins with
// "·" (U+00B7), which no configured route name may (config refuses it). The
// node keeps its own records there (verified-matching verdicts) so that
// persistence, replication and catch-up carry them like entries, but they
// are not cache entries for an operator: Stats counts them apart
// (InternalEntries, InternalBytes), List and Purge reach them only when
// they name the Space's partition or route, and max_entries neither counts
// nor evicts them (they leave by their own ExpiresAt). Evicting them
// soonest-expiring-first with answers would silently reset what they
// record; their number is bounded by whoever writes them.
func (sp Space) Internal() bool { return strings.HasPrefix(sp.Route, "·") }

// Entry is one cached answer.
//
// Entries handed out by the Cache are copies: the caller may change the
// struct's fields, but its slices (Vector, Response) are shared with the
// cache and must be treated as read-only.
type Entry struct {
	// ID is 16 lowercase hex digits of a uint64 (also the graph id). Store
	// assigns a random one when empty.
	ID     string
	Space  Space
	Exact  [32]byte  // CanonicalHash of the request; zero = no exact tier
	Norm   [32]byte  // NormHash of the normalised dialog; zero = no normalised tier
	Prompt string    // retained dialog text, for the guard and the admin API
	Vector []float32 // unit-length embedding; nil = exact tier only. Entries handed out (lookups, Get, List) carry none: in memory the graph holds the only copy, on disk the entry keeps it
	// Response is the answer as a JSON chat.completion body.
	Response  []byte
	CreatedAt time.Time
	ExpiresAt time.Time
	Hits      uint64
}

func (e *Entry) size() int64 {
	return int64(len(e.Response) + len(e.Prompt) + 4*len(e.Vector))
}

// clone copies e and its slices.
func (e *Entry) clone() *Entry {
	cp := *e
	cp.Vector = slices.Clone(e.Vector)
	cp.Response = slices.Clone(e.Response)
	return &cp
}

// SearchMatch is one result of Search.
type SearchMatch struct {
	ID       string  `json:"id"`
	Distance float32 `json:"distance"`
	Prompt   string  `json:"prompt"`
}

// Stats are the cache's counters since Open. Entries and Bytes are current
// values of the ordinary entries, InternalEntries and InternalBytes those of
// internal Spaces (Space.Internal); the others only grow.
type Stats struct {
	Entries      int64 `json:"entries"`
	Hits         int64 `json:"hits"`
	Misses       int64 `json:"misses"`
	ExactHits    int64 `json:"exact_hits"`
	SemanticHits int64 `json:"semantic_hits"`
	// NormalizedHits are hits of the normalised tier (texts equal after
	// normalisation), counted in Hits too.
	NormalizedHits int64 `json:"normalized_hits"`
	Bytes          int64 `json:"bytes"` // prompt + response + 4 × vector length, summed
	// InternalEntries and InternalBytes are the records the node keeps in
	// internal Spaces (verified-matching verdicts), not in Entries or Bytes.
	InternalEntries int64 `json:"internal_entries"`
	InternalBytes   int64 `json:"internal_bytes"`
}

// Cache is the semantic cache's state. Its methods are safe for concurrent
// use; they talk to the shard actors by message and may block until the
// actor answers or ctx ends.
type Cache struct {
	opts   Options
	log    *slog.Logger
	shards []*shard

	ctx     context.Context // ends at Close
	cancel  context.CancelFunc
	wg      sync.WaitGroup // actors, sweeper, loader
	closing sync.Once

	ready atomic.Bool

	// Counters: written by actors (entries, bytes) and callers (the rest),
	// read by Stats. They are not state an actor decides on.
	entries, bytes                   atomic.Int64
	hits, misses, exactHits, semHits atomic.Int64
	normHits                         atomic.Int64
	ientries, ibytes                 atomic.Int64 // internal Spaces

	// evictMu serialises eviction passes so that two Stores never both evict
	// for the same excess entry. It guards no data.
	evictMu sync.Mutex

	// ttlNanos and maxEntries are Options.TTL and Options.MaxEntries as
	// SetLimits last changed them.
	ttlNanos, maxEntries atomic.Int64

	// queue carries Stores' entries to commitLoop.
	queue commitQueue
}

// Open starts the shard actors and the sweeper. With a DB it loads the
// persisted entries in the background: until Ready, lookups miss (and never
// fail) while Store, Delete and Purge work and persist as usual.
func Open(ctx context.Context, opts Options) (*Cache, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.NewGraph == nil {
		opts.NewGraph = func() graph.Index { return graph.NewFlat() }
	}
	if opts.Shards <= 0 {
		opts.Shards = 4
	}
	if opts.TTL <= 0 {
		opts.TTL = time.Hour
	}
	if opts.MaxEntries < 0 {
		return nil, fmt.Errorf("index: max entries %d is negative", opts.MaxEntries)
	}
	if opts.Candidates <= 0 {
		opts.Candidates = 4
	}
	if opts.SweepInterval <= 0 {
		opts.SweepInterval = time.Second
	}
	c := &Cache{opts: opts, log: opts.Logger}
	c.ttlNanos.Store(int64(opts.TTL))
	c.maxEntries.Store(int64(opts.MaxEntries))
	for i := range opts.Shards {
		c.shards = append(c.shards, newShard(c, i))
	}
	// Tombstones load before anything can be stored or applied, so that no
	// deleted entry slips back in meanwhile; they are few and small.
	if opts.DB != nil {
		if err := c.loadTombstones(); err != nil {
			return nil, err
		}
	}
	// The cache outlives the ctx of the call that opened it only through
	// Close; ctx's values (not its cancellation) carry over.
	c.ctx, c.cancel = context.WithCancel(context.WithoutCancel(ctx))
	for _, s := range c.shards {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			s.run(c.ctx)
		}()
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.sweepLoop()
	}()
	c.queue.wake = make(chan struct{}, 1)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.commitLoop()
	}()
	if opts.DB == nil {
		c.ready.Store(true)
		return c, nil
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.load()
	}()
	return c, nil
}

// ttl is the lifetime of new entries, and how long tombstones and purge
// records made now are kept.
func (c *Cache) ttl() time.Duration { return time.Duration(c.ttlNanos.Load()) }

// SetLimits changes the TTL and MaxEntries of a running cache (a
// configuration reload; zero TTL means the default). The TTL applies to
// entries stored from now on: those held keep the expiry they were stored
// with. A MaxEntries below the entries held evicts the soonest-expiring ones
// before it returns (if ctx ends first, the next Store finishes the job).
func (c *Cache) SetLimits(ctx context.Context, ttl time.Duration, maxEntries int) error {
	if maxEntries < 0 {
		return fmt.Errorf("index: max entries %d is negative", maxEntries)
	}
	if ttl <= 0 {
		ttl = time.Hour
	}
	c.ttlNanos.Store(int64(ttl))
	c.maxEntries.Store(int64(maxEntries))
	return c.evict(ctx)
}

// Ready reports whether the persisted entries have been loaded. Until then
// lookups miss.
func (c *Cache) Ready() bool { return c.ready.Load() }

// Close stops the actors, the sweeper and a load in progress, and waits for
// them. It does not close the DB. Calls after Close fail with ErrClosed or
// miss.
func (c *Cache) Close() error {
	c.closing.Do(func() {
		c.cancel()
		c.wg.Wait()
	})
	return nil
}

// shardOf maps a Space to its shard. Spaces that share a shard still never
// share a graph or an exact hit.
func (c *Cache) shardOf(sp Space) *shard { return c.shards[spaceHash(sp)%uint64(len(c.shards))] }

// spaceHash is FNV-1a over the Space's fields. It is persisted with
// tombstones, so it must not change.
func spaceHash(sp Space) uint64 { return fnv(sp.Partition, sp.Route, sp.Shape) }

// fnv is FNV-1a over fields, each followed by a separator byte.
func fnv(fields ...string) uint64 {
	const prime = 1099511628211
	h := uint64(14695981039346656037)
	for _, f := range fields {
		for i := range len(f) {
			h = (h ^ uint64(f[i])) * prime
		}
		h = (h ^ 0xff) * prime
	}
	return h
}

// call runs f on s's actor and waits for it. On error f may still run later
// (or not at all): the caller must not read what f writes.
func (c *Cache) call(ctx context.Context, s *shard, f func(*shard)) error {
	done := make(chan struct{}, 1) // buffered(1): the actor never waits for us
	// The inbox has room nearly always: a plain send then skips a
	// three-way select (BenchmarkLookupKeyedMiss under cachegrind with
	// GOMAXPROCS=1: 8,100 -> 7,300 instructions per call).
	select {
	case s.inbox <- op{f, done}:
	default:
		select {
		case s.inbox <- op{f, done}:
		case <-ctx.Done():
			return ctx.Err()
		case <-c.ctx.Done():
			return ErrClosed
		}
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.ctx.Done():
		return ErrClosed
	}
}

// each runs f on every shard's actor in parallel and waits for all; f gets
// the shard's index so that it can write to its own result slot.
func (c *Cache) each(ctx context.Context, f func(i int, s *shard)) error {
	done := make(chan struct{}, len(c.shards))
	sent := 0
	var err error
	for i, s := range c.shards {
		select {
		case s.inbox <- op{func(s *shard) { f(i, s) }, done}:
			sent++
			continue
		case <-ctx.Done():
			err = ctx.Err()
		case <-c.ctx.Done():
			err = ErrClosed
		}
		break
	}
	for range sent {
		select {
		case <-done:
		case <-ctx.Done():
			return ctx.Err()
		case <-c.ctx.Done():
			return ErrClosed
		}
	}
	return err
}

// chunked runs f on the actors of the shards that have work: work[i] goes
// to shard i in messages of at most size items, each shard's in order and
// the shards in parallel, so that one shard's long share does not hold up
// the others and lookups interleave between messages. It returns f's
// results per shard, in message order, and the first error; after an error
// the results are partial.
func chunked[T, R any](ctx context.Context, c *Cache, work [][]T, size int, f func(s *shard, part []T) R) ([][]R, error) {
	out := make([][]R, len(work))
	errs := make([]error, len(work))
	var wg sync.WaitGroup
	for i, items := range work {
		if len(items) == 0 {
			continue
		}
		wg.Go(func() {
			for part := range slices.Chunk(items, size) {
				var r R
				if err := c.call(ctx, c.shards[i], func(s *shard) { r = f(s, part) }); err != nil {
					errs[i] = err
					return
				}
				out[i] = append(out[i], r)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// newID returns a random entry id.
func newID() uint64 { return rand.Uint64() }

// formatID is id as 16 lowercase hex digits.
func formatID(id uint64) string {
	const digits = "0123456789abcdef"
	var b [16]byte
	for i := 15; i >= 0; i-- {
		b[i] = digits[id&0xf]
		id >>= 4
	}
	return string(b[:])
}

// parseID accepts exactly 16 lowercase hex digits.
func parseID(s string) (uint64, bool) {
	if len(s) != 16 {
		return 0, false
	}
	for i := range len(s) {
		if ch := s[i]; (ch < '0' || ch > '9') && (ch < 'a' || ch > 'f') {
			return 0, false
		}
	}
	id, err := strconv.ParseUint(s, 16, 64)
	return id, err == nil
}

// LookupExact returns the live entry stored under the request hash h in
// Space sp, counting a hit. A miss is not counted: the caller goes on to
// LookupSemantic (or Miss), which counts it. While loading, it misses.
func (c *Cache) LookupExact(ctx context.Context, sp Space, h [32]byte) (*Entry, bool) {
	if !c.Ready() || h == ([32]byte{}) || !c.shardOf(sp).mayHold(h, [32]byte{}) {
		return nil, false
	}
	var e *Entry
	if c.call(ctx, c.shardOf(sp), func(s *shard) { e = s.lookupExact(sp, h) }) != nil || e == nil {
		return nil, false
	}
	c.hits.Add(1)
	c.exactHits.Add(1)
	return e, true
}

// LookupNormalized returns the live entry whose normalised-dialog hash
// (NormHash) is h in Space sp, counting a hit; like LookupExact, a miss is
// not counted. While loading, it misses.
func (c *Cache) LookupNormalized(ctx context.Context, sp Space, h [32]byte) (*Entry, bool) {
	if !c.Ready() || h == ([32]byte{}) || !c.shardOf(sp).mayHold([32]byte{}, h) {
		return nil, false
	}
	var e *Entry
	if c.call(ctx, c.shardOf(sp), func(s *shard) { e = s.lookupNorm(sp, h) }) != nil || e == nil {
		return nil, false
	}
	c.hits.Add(1)
	c.normHits.Add(1)
	return e, true
}

// LookupKeyed is LookupExact, then, unless it found an entry that accept
// takes, LookupNormalized (when norm is not zero), in one message to the
// shard's actor unless the exact tier finds an entry accept refuses. Each
// entry found counts a hit of its tier, as the two calls do; accept runs in
// the caller's goroutine. normalized tells which tier answered. Hashes the
// shard's key set shows it does not hold cost no message at all.
func (c *Cache) LookupKeyed(ctx context.Context, sp Space, exact, norm [32]byte, accept func(*Entry) bool) (e *Entry, normalized, ok bool) {
	if !c.Ready() || exact == ([32]byte{}) && norm == ([32]byte{}) {
		return nil, false, false
	}
	sh := c.shardOf(sp)
	if !sh.mayHold(exact, norm) {
		return nil, false, false // neither map holds them: no message needed
	}
	var ex, nm *Entry
	err := c.call(ctx, sh, func(s *shard) {
		if exact != ([32]byte{}) {
			ex = s.lookupExact(sp, exact)
		}
		if ex == nil && norm != ([32]byte{}) {
			nm = s.lookupNorm(sp, norm)
		}
	})
	if err != nil {
		return nil, false, false
	}
	if ex != nil {
		c.hits.Add(1)
		c.exactHits.Add(1)
		if accept(ex) {
			return ex, false, true
		}
		// Rare (a tool call's answer to a streaming client): the normalised
		// tier is asked on its own.
		nm, _ = c.LookupNormalized(ctx, sp, norm)
	} else if nm != nil {
		c.hits.Add(1)
		c.normHits.Add(1)
	}
	if nm != nil && accept(nm) {
		return nm, true, true
	}
	return nil, false, false
}

// LookupSemantic examines the Candidates nearest entries to vec in sp's
// graph and returns the nearest one within threshold (cosine distance) that
// Check accepts, counting a hit; otherwise it counts a miss. Check runs in
// the caller's goroutine. While loading, it misses.
func (c *Cache) LookupSemantic(ctx context.Context, sp Space, vec []float32, prompt string, threshold float32) (*Entry, float32, bool) {
	e, d, ok := c.NearestGuarded(ctx, sp, vec, prompt, threshold)
	if !ok {
		c.misses.Add(1)
		return nil, 0, false
	}
	c.SemanticHit(ctx, sp, e)
	e.Hits++
	return e, d, true
}

// NearestGuarded is LookupSemantic without counting: it returns the nearest
// entry within threshold that Check accepts, and the caller decides (a
// judge may refuse it) and counts with SemanticHit or Miss.
func (c *Cache) NearestGuarded(ctx context.Context, sp Space, vec []float32, prompt string, threshold float32) (*Entry, float32, bool) {
	e, d, _, ok := c.nearest(ctx, sp, vec, prompt, threshold, false)
	return e, d, ok
}

// NearestJudgeable is NearestGuarded for a cache with a judge: when no
// candidate within threshold passes Check, it returns the nearest one whose
// refusal Options.Judgeable leaves to a judge, with judge true. Such an
// entry must not be served unless a judge confirms it.
func (c *Cache) NearestJudgeable(ctx context.Context, sp Space, vec []float32, prompt string, threshold float32) (e *Entry, d float32, judge, ok bool) {
	return c.nearest(ctx, sp, vec, prompt, threshold, c.opts.Judgeable != nil)
}

func (c *Cache) nearest(ctx context.Context, sp Space, vec []float32, prompt string, threshold float32, judgeable bool) (*Entry, float32, bool, bool) {
	if !c.Ready() || len(vec) == 0 {
		return nil, 0, false, false
	}
	s := c.shardOf(sp)
	var cands []candidate
	if c.call(ctx, s, func(s *shard) { cands = s.nearest(sp, vec, threshold) }) != nil {
		return nil, 0, false, false
	}
	soft := -1 // the nearest candidate refused in a way a judge may settle
	for i, cd := range cands {
		if c.opts.Check != nil {
			if ok, reason := c.opts.Check(prompt, cd.r.prompt); !ok {
				c.log.Debug("cache guard vetoed a semantic match", "id", formatID(cd.id), "distance", cd.d, "reason", reason)
				if judgeable && soft < 0 && c.opts.Judgeable(prompt, cd.r.prompt) {
					soft = i
				}
				continue
			}
		}
		return cd.r.entry(cd.hits), cd.d, false, true // the copy handed out (see view)
	}
	if soft >= 0 {
		return cands[soft].r.entry(cands[soft].hits), cands[soft].d, true, true
	}
	return nil, 0, false, false
}

// SemanticHit counts a semantic hit on e (found by NearestGuarded in sp).
func (c *Cache) SemanticHit(ctx context.Context, sp Space, e *Entry) {
	if id, ok := parseID(e.ID); ok {
		// Count the hit on the record; no need to wait for the actor.
		select {
		case c.shardOf(sp).inbox <- op{f: func(s *shard) { s.hit(id) }}:
		case <-ctx.Done():
		case <-c.ctx.Done():
		}
	}
	c.hits.Add(1)
	c.semHits.Add(1)
}

// Miss counts a miss for a request that looked up the exact tier but not
// the semantic tier (no embedding, embedder failed). With LookupExact and
// LookupSemantic it makes every looked-up request count exactly once.
func (c *Cache) Miss() { c.misses.Add(1) }

// Store adds e: persisted (Badger commit) before it returns, replacing any
// entry with the same Exact hash in e.Space (or the same ID). It fills e.ID
// when empty, sets e.CreatedAt to Now and e.ExpiresAt to Now+TTL when zero,
// then keeps a copy: the caller keeps ownership of e and its slices. An
// entry already expired is not stored; an entry whose ID was deleted is an
// error. A stored entry is reported to Options.OnChange. When ctx ends
// first, Store returns its error and the entry is still stored.
func (c *Cache) Store(ctx context.Context, e *Entry) error {
	c.stamp(e)
	done := make(chan error, 1)
	c.storeOwned(e.clone(), func(err error) { done <- err })
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// StoreAsync is Store for a caller that waits as long as it likes, or not
// at all: it returns at once and calls done (which must not block) with
// Store's outcome once the entry is committed and in memory, or refused,
// from one of the cache's goroutines; after Close, with ErrClosed. It takes
// e: the caller must not change e or its slices from the call on. It costs
// no goroutine and no timer of the caller's, and its entry shares the
// committer's message to its shard with the other entries of its commit.
func (c *Cache) StoreAsync(e *Entry, done func(error)) {
	c.stamp(e)
	c.storeOwned(e, done)
}

// stamp fills what Store fills in e: an ID, CreatedAt and ExpiresAt.
func (c *Cache) stamp(e *Entry) {
	now := c.opts.Now()
	if e.ID == "" {
		e.ID = formatID(newID())
	}
	e.CreatedAt = now
	if e.ExpiresAt.IsZero() {
		e.ExpiresAt = now.Add(c.ttl())
	}
}

// storeOwned queues e, owned by the cache, for commitLoop, which commits
// it, adds it to its shard (addCommitted) and calls done. A local store is
// refused only when its ID is tombstoned, which a fresh random ID never is:
// it goes to disk without asking its shard first. In the rare refusal, the
// shard's stale list takes it off the disk again; a crash in between leaves
// it beside its tombstone, and the load drops it.
func (c *Cache) storeOwned(e *Entry, done func(error)) {
	id, ok := parseID(e.ID)
	if !ok {
		done(fmt.Errorf("index: entry id %q is not 16 lowercase hex digits", e.ID))
		return
	}
	now := c.opts.Now()
	if !e.ExpiresAt.After(now) {
		done(nil)
		return
	}
	e.Hits = 0
	r := commitReq{e: e, id: id, done: done}
	if c.opts.DB != nil {
		r.de = diskEntry(e, now)
	}
	c.enqueue(r)
}

// addCommitted adds the Stores' entries of a committed batch to their
// shards, one message per shard, then does what adding left to do (stale
// keys off the disk, eviction), reports each entry added to
// Options.OnChange and tells every caller. Requests of persist are told
// their commit's outcome.
func (c *Cache) addCommitted(batch []commitReq) {
	type result struct {
		stale []string
		k     *killed
		added bool
		err   error // the shard's call
	}
	res := make([]result, len(batch))
	work := make([][]int, len(c.shards))
	for i := range batch {
		r := &batch[i]
		switch {
		case r.e == nil:
			r.done(r.err)
		case r.err != nil:
			r.done(fmt.Errorf("index: persisting entry %s: %w", r.e.ID, r.err))
		default:
			w := &work[spaceHash(r.e.Space)%uint64(len(c.shards))]
			*w = append(*w, i)
		}
	}
	// Every shard with work gets its message at once. A message owns what it
	// reads and writes (its entries and its results), and signals on its own
	// channel: a Close may leave it queued while the committer answers its
	// callers and reuses the batch, and the actor may still run it after.
	type shardAdd struct {
		ids  []uint64
		es   []*Entry
		out  []result
		done chan struct{}
	}
	adds := make([]*shardAdd, len(c.shards))
	for si, idx := range work {
		if len(idx) == 0 {
			continue
		}
		a := &shardAdd{ids: make([]uint64, len(idx)), es: make([]*Entry, len(idx)), out: make([]result, len(idx)), done: make(chan struct{}, 1)}
		for j, i := range idx {
			a.ids[j], a.es[j] = batch[i].id, batch[i].e
		}
		f := func(s *shard) {
			for j := range a.ids {
				r := &a.out[j]
				r.stale, r.k, r.added = s.add(a.ids[j], a.es[j], false, false)
			}
		}
		select {
		case c.shards[si].inbox <- op{f, a.done}:
			adds[si] = a
		case <-c.ctx.Done():
		}
	}
	for si, idx := range work {
		if len(idx) == 0 {
			continue
		}
		answered := false
		if a := adds[si]; a != nil {
			select {
			case <-a.done:
				answered = true
				for j, i := range idx {
					res[i] = a.out[j]
				}
			case <-c.ctx.Done():
			}
		}
		if !answered {
			for _, i := range idx {
				res[i] = result{err: ErrClosed}
			}
		}
	}
	var stale []string
	var ks []killed
	anyAdded := false
	for _, idx := range work {
		for _, i := range idx {
			r := &res[i]
			stale = append(stale, r.stale...)
			if r.k != nil {
				ks = append(ks, *r.k)
			}
			anyAdded = anyAdded || r.added
		}
	}
	after := c.deleteKeys(stale)
	if err := c.settle(c.ctx, ks); after == nil {
		after = err
	}
	if anyAdded {
		if err := c.evict(c.ctx); after == nil {
			after = err
		}
	}
	for _, idx := range work {
		for _, i := range idx {
			r, e := &res[i], batch[i].e
			switch {
			case r.err != nil:
				batch[i].done(r.err)
			case r.added:
				if c.opts.OnChange != nil {
					cp := *e // the shard may hold e itself
					c.opts.OnChange(Change{Kind: ChangeStored, Entry: &cp, At: cp.CreatedAt})
				}
				batch[i].done(after)
			case r.k != nil:
				// A purge newer than the entry covers it: as if stored,
				// then purged.
				batch[i].done(after)
			default:
				// Otherwise a local store loses only to a tombstone.
				batch[i].done(fmt.Errorf("index: entry id %s was deleted", e.ID))
			}
		}
	}
}

// Insert adds e as given (ID and CreatedAt kept; ExpiresAt from TTL when
// zero), for entries replicated from other nodes; it is Apply of a
// ChangeStored that fills e's zero times. It is idempotent on ID: an entry
// whose ID is present is left as it is. Of two entries with the same Exact
// hash the later (CreatedAt, then ID) wins, so that nodes agree. An entry
// whose ID is tombstoned, or created before a purge that covers it, is
// dropped.
func (c *Cache) Insert(ctx context.Context, e *Entry) error {
	if e.CreatedAt.IsZero() {
		e.CreatedAt = c.opts.Now()
	}
	if e.ExpiresAt.IsZero() {
		e.ExpiresAt = e.CreatedAt.Add(c.ttl())
	}
	_, err := c.add(ctx, e, true)
	return err
}

// add stores a copy of in and returns it (with its Vector) when it went
// in; nil when it was expired, held already, refused or lost to a newer
// entry. A local store of a tombstoned ID is an error; a replica's is not.
func (c *Cache) add(ctx context.Context, in *Entry, replica bool) (*Entry, error) {
	id, ok := parseID(in.ID)
	if !ok {
		return nil, fmt.Errorf("index: entry id %q is not 16 lowercase hex digits", in.ID)
	}
	if !in.ExpiresAt.After(c.opts.Now()) {
		return nil, nil
	}
	e := in.clone()
	if !replica {
		e.Hits = 0
	}
	s := c.shardOf(e.Space)
	// A replica is checked first, so that one refused (held already,
	// tombstoned, purged: common, peers resending what they hold) costs no
	// disk write; the actor checks again when adding. A local store is
	// refused only when its ID is tombstoned, which a fresh random ID never
	// is: it saves the round trip to the actor and goes to disk at once. In
	// the rare refusal, add's stale list takes it off the disk again; a
	// crash in between leaves it beside its tombstone, and the load drops it.
	why, k := admitted, (*killed)(nil)
	if replica {
		if err := c.call(ctx, s, func(s *shard) { why, k = s.refuse(id, e, replica) }); err != nil {
			return nil, err
		}
	}
	added := false
	if why == admitted {
		if err := c.persist(e); err != nil {
			return nil, err
		}
		var stale []string
		if err := c.call(ctx, s, func(s *shard) { stale, k, added = s.add(id, e, replica, false) }); err != nil {
			return nil, err
		}
		if err := c.deleteKeys(stale); err != nil {
			return nil, err
		}
	}
	if k != nil {
		if err := c.settle(ctx, []killed{*k}); err != nil {
			return nil, err
		}
	}
	switch {
	case added:
		return e, c.evict(ctx)
	case !replica:
		// A local store loses only to a tombstone.
		return nil, fmt.Errorf("index: entry id %s was deleted", in.ID)
	}
	return nil, nil
}

// evict removes soonest-expiring entries until at most MaxEntries remain.
func (c *Cache) evict(ctx context.Context) error {
	limit := c.maxEntries.Load()
	if limit == 0 || c.entries.Load() <= limit {
		return nil
	}
	c.evictMu.Lock()
	defer c.evictMu.Unlock()
	for c.entries.Load() > limit {
		tops := make([]expiry, len(c.shards))
		found := make([]bool, len(c.shards))
		if err := c.each(ctx, func(i int, s *shard) { tops[i], found[i] = s.soonest() }); err != nil {
			return err
		}
		best := -1
		for i, x := range tops {
			if found[i] && (best < 0 || x.before(tops[best])) {
				best = i
			}
		}
		if best < 0 {
			return nil
		}
		id := tops[best].id
		var gone *Entry
		if err := c.call(ctx, c.shards[best], func(s *shard) { gone = s.remove(id) }); err != nil {
			return err
		}
		if gone != nil {
			c.log.Debug("cache entry evicted", "id", gone.ID, "max_entries", limit)
			if err := c.deleteKeys([]string{gone.ID}); err != nil {
				return err
			}
		}
	}
	return nil
}

// Get returns the live entry with the given ID (no hit counted).
func (c *Cache) Get(ctx context.Context, id string) (*Entry, bool) {
	n, ok := parseID(id)
	if !ok {
		return nil, false
	}
	found := make([]*Entry, len(c.shards))
	if c.each(ctx, func(i int, s *shard) { found[i] = s.get(n) }) != nil {
		return nil, false
	}
	for _, e := range found {
		if e != nil {
			return e, true
		}
	}
	return nil, false
}

// Delete removes the entry with the given ID from memory and disk,
// tombstones the ID so that no replica brings it back, and reports whether
// the entry was present in memory. While loading, an entry not yet loaded
// is deleted from disk and will not be loaded. A Delete that removed an
// entry or tombstoned a new ID is reported to Options.OnChange.
func (c *Cache) Delete(ctx context.Context, id string) (bool, error) {
	at := c.opts.Now()
	found, fresh, err := c.deleteID(ctx, id, at)
	if (found || fresh) && c.opts.OnChange != nil {
		c.opts.OnChange(Change{Kind: ChangeDeleted, ID: id, At: at})
	}
	return found, err
}

// deleteID removes id's entry and tombstones it as of at. It reports
// whether an entry was removed and whether the tombstone is new; an
// invalid id is neither.
func (c *Cache) deleteID(ctx context.Context, id string, at time.Time) (found, fresh bool, err error) {
	n, ok := parseID(id)
	if !ok {
		return false, false, nil
	}
	ats := at.UnixNano()
	held := make([]*killed, len(c.shards))
	had := make([]bool, len(c.shards))
	if err := c.each(ctx, func(i int, s *shard) { held[i], had[i] = s.deleteID(n, ats) }); err != nil {
		return false, false, err
	}
	for _, k := range held {
		if k != nil {
			// The holder recorded its copy; the counting shard needs one.
			return true, true, c.settle(ctx, []killed{*k})
		}
	}
	if slices.Contains(had, true) {
		return false, false, c.deleteKeys([]string{id}) // deleted before
	}
	// No shard holds the entry, so its Space is unknown: every shard gets a
	// copy, and removes an entry with that ID that raced in meanwhile.
	k := killed{id: n, at: ats, until: ats + int64(c.ttl())}
	gone := make([]string, len(c.shards))
	news := make([]bool, len(c.shards))
	if err := c.each(ctx, func(i int, s *shard) { gone[i], news[i] = s.tombstone(k) }); err != nil {
		return false, false, err
	}
	found = slices.ContainsFunc(gone, func(id string) bool { return id != "" })
	fresh = news[n%uint64(len(c.shards))]
	if k.until <= c.opts.Now().UnixNano() {
		return found, fresh, c.deleteKeys([]string{id})
	}
	return found, fresh, c.writeTombs([]killed{k}, []string{id})
}

// Purge removes every entry of partition and route ("" matches all, but
// not an internal Space, which must be named: see Space.Internal) from
// memory and disk, tombstoning each, and returns how many it removed from
// memory. It keeps a purge record for TTL, so that replicas of the
// partition and route created before now are refused. While loading,
// matching entries created before the purge are not loaded. Every Purge is
// reported to Options.OnChange.
func (c *Cache) Purge(ctx context.Context, partition, route string) (int, error) {
	at := c.opts.Now()
	n, err := c.purge(ctx, partition, route, at, true)
	if c.opts.OnChange != nil {
		c.opts.OnChange(Change{Kind: ChangePurged, Partition: partition, Route: route, At: at})
	}
	return n, err
}

// purge removes the entries of partition and route, all of them or those
// created at or before at, and records the purge.
func (c *Cache) purge(ctx context.Context, partition, route string, at time.Time, all bool) (int, error) {
	p := purgeRec{
		f:     filter{partition: partition, route: route, before: at},
		until: at.Add(c.ttl()).UnixNano(),
	}
	killedBy := make([][]killed, len(c.shards))
	if err := c.each(ctx, func(i int, s *shard) { killedBy[i] = s.purge(p, all) }); err != nil {
		return 0, err
	}
	var ks []killed
	for _, k := range killedBy {
		ks = append(ks, k...)
	}
	if p.until > c.opts.Now().UnixNano() {
		if err := c.writePurge(p); err != nil {
			return len(ks), err
		}
	}
	return len(ks), c.settle(ctx, ks)
}

// List returns up to limit live entries of partition and route ("" matches
// all but internal Spaces) with IDs after cursor, in ID order, and the cursor of the next page
// ("" at the end). limit ≤ 0 means 100.
func (c *Cache) List(ctx context.Context, partition, route string, limit int, cursor string) ([]*Entry, string, error) {
	if limit <= 0 {
		limit = 100
	}
	after, hasAfter := uint64(0), false
	if cursor != "" {
		n, ok := parseID(cursor)
		if !ok {
			return nil, "", fmt.Errorf("index: bad cursor %q", cursor)
		}
		after, hasAfter = n, true
	}
	f := filter{partition: partition, route: route}
	pages := make([][]*Entry, len(c.shards))
	more := make([]bool, len(c.shards))
	if err := c.each(ctx, func(i int, s *shard) { pages[i], more[i] = s.list(f, after, hasAfter, limit) }); err != nil {
		return nil, "", err
	}
	var out []*Entry
	for _, p := range pages {
		out = append(out, p...)
	}
	slices.SortFunc(out, func(a, b *Entry) int { return cmp.Compare(a.ID, b.ID) })
	next := ""
	if len(out) > limit || slices.Contains(more, true) {
		out = out[:min(limit, len(out))]
		next = out[len(out)-1].ID
	}
	return out, next, nil
}

// Search returns the k (default 10) nearest live entries to vec in sp, or,
// when sp.Shape is "", in every Space of sp.Partition and sp.Route. The
// guard is not applied: this is for the admin API.
func (c *Cache) Search(ctx context.Context, sp Space, vec []float32, k int) []SearchMatch {
	if k <= 0 {
		k = 10
	}
	if len(vec) == 0 {
		return nil
	}
	var out []SearchMatch
	if sp.Shape != "" {
		if c.call(ctx, c.shardOf(sp), func(s *shard) { out = s.search(sp, vec, k) }) != nil {
			return nil
		}
		return out
	}
	found := make([][]SearchMatch, len(c.shards))
	if c.each(ctx, func(i int, s *shard) { found[i] = s.search(sp, vec, k) }) != nil {
		return nil
	}
	for _, f := range found {
		out = append(out, f...)
	}
	slices.SortStableFunc(out, func(a, b SearchMatch) int {
		return cmp.Or(cmp.Compare(a.Distance, b.Distance), cmp.Compare(a.ID, b.ID))
	})
	return out[:min(k, len(out))]
}

// Stats returns the counters. It does not talk to the actors.
func (c *Cache) Stats() Stats {
	return Stats{
		Entries:        c.entries.Load(),
		Hits:           c.hits.Load(),
		Misses:         c.misses.Load(),
		ExactHits:      c.exactHits.Load(),
		SemanticHits:   c.semHits.Load(),
		NormalizedHits: c.normHits.Load(),
		Bytes:          c.bytes.Load(),

		InternalEntries: c.ientries.Load(),
		InternalBytes:   c.ibytes.Load(),
	}
}

// count adds n entries of size bytes in sp to the counters of its kind.
func (c *Cache) count(sp Space, n, bytes int64) {
	if sp.Internal() {
		c.ientries.Add(n)
		c.ibytes.Add(bytes)
		return
	}
	c.entries.Add(n)
	c.bytes.Add(bytes)
}

// sweepLoop removes expired entries every SweepInterval.
func (c *Cache) sweepLoop() {
	t := time.NewTicker(c.opts.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
			if err := c.sweep(c.ctx); err != nil && c.ctx.Err() == nil {
				c.log.Warn("cache sweep failed", "err", err)
			}
		}
	}
}

// sweep removes the entries expired by Now, and the tombstones and purge
// records past, from every shard, then from disk.
func (c *Cache) sweep(ctx context.Context) error {
	now := c.opts.Now()
	gone := make([]swept, len(c.shards))
	if err := c.each(ctx, func(i int, s *shard) { gone[i] = s.expire(now) }); err != nil {
		return err
	}
	var keys [][]byte
	for _, g := range gone {
		for _, id := range g.entries {
			keys = append(keys, diskKey(id))
		}
		for _, id := range g.tombs {
			keys = append(keys, tombKey(id))
		}
		keys = append(keys, g.purges...)
	}
	return c.write(nil, keys)
}
