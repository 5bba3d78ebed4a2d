package affinity

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/llmgate/llmgate/internal/store"
)

// Owner is who a response id belongs to: the consumer that created it and
// the backend that holds it.
type Owner struct {
	Consumer string `json:"c"`
	Backend  string `json:"b"`
	// Origin is set on the id of a cached answer's replay: the response
	// the backend holds, which the replay repeats under its own id.
	Origin string `json:"o,omitempty"`
}

// record is one id's state as persisted and replicated.
type record struct {
	ID      string `json:"id"`
	Owner          // empty on a tombstone
	At      int64  `json:"at"`  // unix ms of the change on its origin
	Expires int64  `json:"exp"` // unix ms
	Deleted bool   `json:"del,omitempty"`
}

// Limits of what a node accepts and sends.
const (
	maxIDLen       = 256
	recordsPerLoad = 256            // records in one replicated payload
	fullWindow     = 24 * time.Hour // push/pull carries the changes of this window
	fullMaxRecords = 10000          // (at most this many)
	defaultPage    = 10000          // and the next page of every record
	defaultTTL     = 30 * 24 * time.Hour
)

// Options configure a Store; zero fields get defaults.
type Options struct {
	// DB persists the records; nil keeps them in memory only (tests).
	DB     *badger.DB
	TTL    time.Duration // how long a record lives; default 30 days
	Now    func() time.Time
	Logger *slog.Logger
	// Page is how many records of the whole set one push/pull carries
	// besides the last day's changes; default 10,000.
	Page int

	writeDelay time.Duration // default writeDelay (benchmarks compare others)
	maxPending int           // default maxPending (tests make it small)
}

// Store remembers response owners. Create it with Open; Close stops it.
type Store struct {
	db   *badger.DB
	ttl  time.Duration
	page int
	// delay is how long the writer gathers creations (writeDelay).
	delay time.Duration
	now   func() time.Time
	log   *slog.Logger
	ops   chan func()
	quit  chan struct{}
	done  chan struct{}
	// The writer persists local creations off the request path: the
	// creation that finds the queue empty starts gather, and the writer
	// writes when it fires (writeDelay later; flush fires it at once).
	// Starting a timer wakes no goroutine on the request's path, as a
	// message to the writer would.
	gather *time.Timer
	// written serialises reading what is persisted and writing what
	// changes it (the writer's batches, Forget, Merge): a deletion cannot
	// fall between a batch's check and its write and be overwritten.
	written    sync.Mutex
	stopWriter chan struct{}
	writerDone chan struct{}
	writes     atomic.Int64 // transactions the writer made (benchmarks)
	// filter spares most first-owner checks a database read; guarded by
	// written, filled from the database by loadFilter at Open.
	filter     *idFilter
	loaderDone chan struct{}
	reads      atomic.Int64 // first-owner checks that read the database (tests)

	// mu guards what passes between the request goroutines, the writer
	// and Outgoing: a creation costs a lock and an append. (Handed to the
	// actor on a channel, each creation woke its goroutine: with the
	// writer's hand-offs to it, about 2 % of a Responses node's CPU.)
	mu sync.Mutex
	// queue are local creations not yet taken by the writer; pending are
	// those and the ones it is writing, found by Lookup meanwhile.
	queue   []record
	pending map[string]record
	// spare is the last batch's array, emptied, for the next queue: a
	// queue that grows from nothing again after every batch allocated
	// about twice its records (garbage, on every created response).
	spare []record
	// room, when not nil, is closed once pending is below maxPending
	// again (Remember waits on it).
	room       chan struct{}
	maxPending int
	// closing refuses creations once Close has begun (stopCreations).
	closing bool
	// news are the local changes not yet taken by Outgoing; newsSpare is
	// the array Outgoing took last, emptied, for the next news (as spare).
	news, newsSpare []record
	// alone is set while the cluster names no live peer (SetPeers): the
	// news then reaches no one, so Outgoing encodes none and keeps only
	// the last aloneNewsKept of it. A peer that comes later catches up by
	// push/pull on what is older, as on whatever it missed while away; what
	// is kept covers the changes made while it was joining (after its
	// push/pull read this node's state, before the join reached SetPeers).
	alone bool

	// Scratch arrays of commit, reused from batch to batch (guarded by
	// written): the records kept, the keys and values, Badger's entries.
	// Badger copies keys and values into its memtable and log before the
	// transaction's Update returns, so nothing it keeps points into them
	// (only DB.Subscribe's publisher would read a write's entries later;
	// the node subscribes to nothing).
	keepBuf  []record
	bytesBuf []byte
	entryBuf []badger.Entry

	// Owned by the actor goroutine.
	mem map[string]record // the records, when there is no database
	// cursor is where the next catch-up page starts: the records whose id
	// sorts at or after it ("" = from the first).
	cursor string
}

// Open starts a Store.
func Open(opts Options) *Store {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.TTL <= 0 {
		opts.TTL = defaultTTL
	}
	if opts.Page <= 0 {
		opts.Page = defaultPage
	}
	if opts.writeDelay <= 0 {
		opts.writeDelay = writeDelay
	}
	if opts.maxPending <= 0 {
		opts.maxPending = maxPending
	}
	s := &Store{db: opts.DB, ttl: opts.TTL, page: opts.Page, delay: opts.writeDelay, now: opts.Now, log: opts.Logger,
		maxPending: opts.maxPending, ops: make(chan func()), quit: make(chan struct{}), done: make(chan struct{}),
		gather: time.NewTimer(time.Hour), stopWriter: make(chan struct{}), writerDone: make(chan struct{}),
		loaderDone: make(chan struct{}), pending: map[string]record{}}
	s.gather.Stop()
	if s.db == nil {
		s.mem = map[string]record{}
		close(s.writerDone)
		close(s.loaderDone)
	} else {
		s.filter = newIDFilter(s.ttl)
		go s.write()
		go s.loadFilter()
	}
	go s.run()
	return s
}

func (s *Store) run() {
	defer close(s.done)
	for {
		select {
		case op := <-s.ops:
			op()
		case <-s.quit:
			return
		}
	}
}

// maxPending bounds the creations not yet persisted: past it (the disk
// is slower than the creations), Remember waits for the writer.
const maxPending = 1 << 16

// do runs op on the actor goroutine.
func (s *Store) do(ctx context.Context, op func()) error {
	done := make(chan struct{})
	select {
	case s.ops <- func() { op(); close(done) }:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.quit:
		return errors.New("affinity store closed")
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops the Store after persisting the creations still queued.
// Records already persisted stay.
func (s *Store) Close() error {
	s.stopCreations()
	<-s.writerDone
	<-s.loaderDone
	select {
	case <-s.quit:
	default:
		close(s.quit)
	}
	<-s.done
	return nil
}

// stopCreations refuses creations from now on and tells the writer to
// persist what is queued and stop: a creation queued after its last drain
// would be acknowledged and never written, and creations that kept coming
// would keep the drain, and so Close, from ending.
func (s *Store) stopCreations() {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	select {
	case <-s.stopWriter:
	default:
		close(s.stopWriter)
	}
}

// Remember records that id belongs to o, here and (through Outgoing) on
// every node, unless id is known already (the first owner stays).
//
// With a database it returns once the record is queued: Lookup finds it
// at once, and the writer persists the queue in the background, a batch
// per write, then hands it to the cluster. A create pays a lock and an
// append, not a disk write; what a crash can lose is the queue (at most
// writeDelay of creations) and the batch being written (Close persists
// the queue).
func (s *Store) Remember(ctx context.Context, id string, o Owner) error {
	for {
		done, room, err := s.tryRemember(id, o)
		if done || err != nil {
			return err
		}
		if s.db == nil {
			now := s.now()
			return s.apply(ctx, []record{{ID: id, Owner: o, At: now.UnixMilli(), Expires: now.Add(s.ttl).UnixMilli()}}, true)
		}
		// maxPending creations are not yet persisted: wait for the writer.
		select {
		case <-room:
		case <-ctx.Done():
			return ctx.Err()
		case <-s.quit:
			return errors.New("affinity store closed")
		}
	}
}

// TryRemember is Remember when it need not wait: done is false (and
// nothing happened) when it would (maxPending creations are not yet
// persisted, or there is no database). A caller that bounds Remember with
// a deadline pays for the deadline's timer only then.
func (s *Store) TryRemember(id string, o Owner) (done bool, err error) {
	done, _, err = s.tryRemember(id, o)
	return done, err
}

// tryRemember queues a creation unless it must wait; then room is closed
// once it need not.
func (s *Store) tryRemember(id string, o Owner) (done bool, room <-chan struct{}, err error) {
	if id == "" || len(id) > maxIDLen {
		return false, nil, fmt.Errorf("response id of %d bytes", len(id))
	}
	if s.db == nil {
		return false, nil, nil
	}
	now := s.now()
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return false, nil, errors.New("affinity store closed")
	}
	if _, ok := s.pending[id]; ok { // queued already: the first owner stays
		s.mu.Unlock()
		return true, nil, nil
	}
	if len(s.pending) >= s.maxPending {
		if s.room == nil {
			s.room = make(chan struct{})
		}
		room = s.room
		s.mu.Unlock()
		return false, room, nil
	}
	r := record{ID: id, Owner: o, At: now.UnixMilli(), Expires: now.Add(s.ttl).UnixMilli()}
	s.pending[id] = r
	s.queue = append(s.queue, r)
	first := len(s.queue) == 1
	s.mu.Unlock()
	if first { // else the timer runs, and the writer takes the whole queue
		s.gather.Reset(s.delay)
	}
	return true, nil, nil
}

// write persists the queued creations, a batch at a time: those that
// arrive within writeDelay of the first, or while a batch is written, make
// one transaction (and one message to the cluster).
func (s *Store) write() {
	defer close(s.writerDone)
	for {
		select {
		case <-s.gather.C:
			s.writeQueue()
		case <-s.stopWriter:
			s.gather.Stop()
			s.writeQueue()
			return
		}
	}
}

const (
	// writeBatch bounds the records of one transaction.
	writeBatch = 1000
	// writeDelay is how long the writer gathers creations before a write:
	// look-ups find them meanwhile; the cluster hears of them this much
	// later; a crash loses at most the creations of this window and the
	// write under way. Each write costs the same fixed work (goroutine
	// wake-ups, one read-write transaction) whatever its size: at 2 ms
	// a node creating 500 responses a second wrote them one by one; at
	// 10 ms about five share a write (BenchmarkRememberPaced reports the
	// records per write and the CPU per record).
	writeDelay = 10 * time.Millisecond
)

// writeQueue persists the queue (the creations no record is known for
// yet) and hands them to the cluster.
func (s *Store) writeQueue() {
	ctx := context.Background()
	for {
		s.mu.Lock()
		n := min(len(s.queue), writeBatch)
		if n == 0 {
			s.mu.Unlock()
			return
		}
		batch := s.queue[:n:n]
		// array is the queue's whole array when the batch takes it all, to
		// be the next queue but one with its full capacity (the batch's
		// is cut to its length): a queue that outgrows its array again
		// after every batch allocates anew.
		var array []record
		if n == len(s.queue) {
			array = s.queue[:0]
			s.queue, s.spare = s.spare, nil
		} else {
			s.queue = s.queue[n:]
		}
		s.mu.Unlock()
		s.writes.Add(1)
		// written is held until keep, commit's scratch, is copied to news.
		s.written.Lock()
		keep, err := s.commit(ctx, batch)
		if err != nil {
			s.log.Warn("persisting response owners failed; follow-ups on these ids will be refused", "records", len(batch), "err", err)
		}
		s.mu.Lock()
		for _, r := range batch {
			delete(s.pending, r.ID)
		}
		if err == nil {
			s.addNews(keep)
		}
		s.written.Unlock()
		if array != nil && s.spare == nil && cap(array) <= 4*writeBatch {
			clear(batch) // its strings are not kept alive meanwhile
			s.spare = array
		}
		if s.room != nil && len(s.pending) < s.maxPending {
			close(s.room)
			s.room = nil
		}
		s.mu.Unlock()
	}
}

// addNews queues local changes for Outgoing. The caller holds mu.
func (s *Store) addNews(rs []record) {
	if s.news == nil {
		s.news, s.newsSpare = s.newsSpare, nil
	}
	s.news = append(s.news, rs...)
}

// SetPeers names the cluster's other live members (cluster.QuotaState's
// SetPeers, through node.SharedState). With none, Outgoing(false) encodes
// no news (the cluster drains its news even with no peer, only to discard
// it) and keeps only the last aloneNewsKept of it, for a peer that is
// joining. A peer that becomes live later learns the rest by push/pull,
// which carries the last day's changes and every record page by page.
// Until the first call, Outgoing encodes its news as with peers.
func (s *Store) SetPeers(names []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.alone = len(names) == 0
}

// aloneNewsKept is how much of its news a node without live peers keeps
// for a peer that is joining: far longer than the moments between the
// join's push/pull and the join reaching SetPeers, far less memory than
// the day push/pull carries.
const aloneNewsKept = 5 * time.Second

// trimAloneNews drops the news older than aloneNewsKept (Outgoing while
// alone). News is appended in the order the changes were persisted, which
// is nearly their time order; a straggler is kept until what follows it is
// old. The caller holds mu.
func (s *Store) trimAloneNews() {
	since := s.now().Add(-aloneNewsKept).UnixMilli()
	i := 0
	for i < len(s.news) && s.news[i].At < since {
		i++
	}
	if i == 0 {
		return
	}
	n := copy(s.news, s.news[i:])
	clear(s.news[n:])
	s.news = s.news[:n]
}

// flush waits until the queue is persisted (tests).
func (s *Store) flush(ctx context.Context) error {
	for {
		s.mu.Lock()
		n := len(s.pending)
		s.mu.Unlock()
		if n == 0 {
			return nil
		}
		s.gather.Reset(0)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

// Forget records that id was deleted: it is unknown from now on, everywhere.
func (s *Store) Forget(ctx context.Context, id string) error {
	now := s.now()
	return s.apply(ctx, []record{{ID: id, At: now.UnixMilli(), Expires: now.Add(s.ttl).UnixMilli(), Deleted: true}}, true)
}

// Lookup returns id's owner; false when the id is unknown, expired or deleted.
func (s *Store) Lookup(ctx context.Context, id string) (Owner, bool) {
	r, ok := s.get(ctx, id)
	if !ok && s.db != nil {
		// Not yet written (a persisted record wins: it came first), or
		// written since the read: the writer commits before it forgets.
		s.mu.Lock()
		r, ok = s.pending[id]
		s.mu.Unlock()
		if !ok {
			r, ok = s.get(ctx, id)
		}
	}
	if !ok || r.Deleted || r.Expires <= s.now().UnixMilli() {
		return Owner{}, false
	}
	return r.Owner, true
}

func (s *Store) get(ctx context.Context, id string) (record, bool) {
	var r record
	var found bool
	if s.db == nil {
		_ = s.do(ctx, func() { r, found = s.mem[id] })
		return r, found
	}
	err := s.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get([]byte(store.PrefixAffinity + id))
		if err != nil {
			return err
		}
		return it.Value(func(v []byte) (err error) {
			r, err = decodeValue(id, v)
			return err
		})
	})
	return r, err == nil
}

// apply persists the records that change what is known (a tombstone wins;
// otherwise the earlier creation stays) and, when local, queues them for
// the cluster.
func (s *Store) apply(ctx context.Context, in []record, local bool) error {
	s.written.Lock()
	defer s.written.Unlock()
	keep, err := s.commit(ctx, in)
	if err != nil || len(keep) == 0 {
		return err
	}
	if s.mem != nil {
		if err := s.do(ctx, func() {
			for _, r := range keep {
				s.mem[r.ID] = r
			}
		}); err != nil {
			return err
		}
	}
	if local {
		s.mu.Lock()
		s.addNews(keep)
		s.mu.Unlock()
	}
	return nil
}

// valueTag starts a persisted value in its compact form (appendValue);
// values persisted by earlier versions are r's JSON, starting with '{'.
const valueTag = 1

// appendValue appends the value r is persisted as, under a key that holds
// its id: a tag, a flags byte (1: deleted), At and Expires as varints, and
// the consumer, backend and origin, each after its length as a uvarint.
// It is about a quarter of the JSON's bytes (which repeated the id): every
// record is written to the write-ahead log, the memtable and then the
// tables, so the bytes are paid several times (BenchmarkWriteBatch).
func (r record) appendValue(b []byte) []byte {
	var flags byte
	if r.Deleted {
		flags = 1
	}
	b = append(b, valueTag, flags)
	b = binary.AppendVarint(b, r.At)
	b = binary.AppendVarint(b, r.Expires)
	for _, s := range [...]string{r.Consumer, r.Backend, r.Origin} {
		b = append(binary.AppendUvarint(b, uint64(len(s))), s...)
	}
	return b
}

// decodeValue reads the persisted value of id's record: appendValue's form,
// or the JSON of earlier versions.
func decodeValue(id string, v []byte) (record, error) {
	r := record{ID: id}
	if len(v) > 0 && v[0] == '{' {
		err := json.Unmarshal(v, &r)
		r.ID = id
		return r, err
	}
	bad := fmt.Errorf("decoding the owner record of %q: not a record", id)
	if len(v) < 2 || v[0] != valueTag || v[1] > 1 {
		return record{}, bad
	}
	r.Deleted = v[1] == 1
	v = v[2:]
	for _, n := range []*int64{&r.At, &r.Expires} {
		x, k := binary.Varint(v)
		if k <= 0 {
			return record{}, bad
		}
		*n, v = x, v[k:]
	}
	for _, f := range []*string{&r.Consumer, &r.Backend, &r.Origin} {
		n, k := binary.Uvarint(v)
		if k <= 0 || n > uint64(len(v)-k) {
			return record{}, bad
		}
		*f, v = string(v[k:k+int(n)]), v[k+int(n):]
	}
	if len(v) != 0 {
		return record{}, bad
	}
	return r, nil
}

// appendJSON appends json.Marshal(r) to b (a payload for the cluster),
// written directly when every string is plain ASCII that Marshal writes
// as is (response ids, consumer and backend names), without its
// reflection (TestEncodeIsMarshal).
func (r record) appendJSON(b []byte) []byte {
	if !plainASCII(r.ID) || !plainASCII(r.Consumer) || !plainASCII(r.Backend) || !plainASCII(r.Origin) {
		v, _ := json.Marshal(r)
		return append(b, v...)
	}
	b = append(append(append(b, `{"id":"`...), r.ID...), `","c":"`...)
	b = append(append(b, r.Consumer...), `","b":"`...)
	b = append(append(b, r.Backend...), '"')
	if r.Origin != "" {
		b = append(append(append(b, `,"o":"`...), r.Origin...), '"')
	}
	b = strconv.AppendInt(append(b, `,"at":`...), r.At, 10)
	b = strconv.AppendInt(append(b, `,"exp":`...), r.Expires, 10)
	if r.Deleted {
		b = append(b, `,"del":true`...)
	}
	return append(b, '}')
}

// plainASCII reports whether json.Marshal writes s between quotes as it is.
func plainASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20, c >= 0x80, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}

// known reports whether r changes nothing given the record old already
// there: a creation never replaces a record (the earlier one came first);
// a tombstone replaces a live record only.
func known(r, old record) bool { return old.Deleted || !r.Deleted }

// commit persists the records of in that change what is persisted (valid,
// unexpired, and either new or a tombstone for a live record) and returns
// them. With a database, the reads and the writes make one read-write
// transaction, which also sees a record written earlier in the same batch;
// without one, the records are only selected (apply keeps them in memory).
// The caller holds written.
func (s *Store) commit(ctx context.Context, in []record) ([]record, error) {
	now := s.now().UnixMilli()
	keep := s.keepBuf[:0]
	defer func() {
		if cap(keep) <= maxScratch {
			// Its records stay referenced until overwritten: at most
			// maxScratch records' strings kept alive meanwhile.
			s.keepBuf = keep[:0]
		}
	}()
	for _, r := range in {
		if r.ID != "" && len(r.ID) <= maxIDLen && r.Expires > now {
			keep = append(keep, r)
		}
	}
	if len(keep) == 0 {
		return nil, nil
	}
	if s.db == nil {
		var out []record
		err := s.do(ctx, func() {
			for _, r := range keep {
				if old, ok := s.mem[r.ID]; !ok || !known(r, old) {
					out = append(out, r)
				}
			}
		})
		return out, err
	}
	out := keep[:0] // filtered in place: the transaction runs once
	// The keys and values share one array, the entries another, both
	// kept for the next batch: no allocation per record or per batch.
	size := 0
	for _, r := range keep {
		size += len(store.PrefixAffinity) + len(r.ID) + 32 + len(r.Consumer) + len(r.Backend) + len(r.Origin)
	}
	buf := s.bytesBuf[:0]
	if cap(buf) < size {
		buf = make([]byte, 0, size)
	}
	entries := s.entryBuf[:0]
	if cap(entries) < len(keep) {
		entries = make([]badger.Entry, 0, len(keep))
	}
	defer func() {
		if cap(buf) <= maxScratch*64 {
			s.bytesBuf = buf[:0]
		}
		if cap(entries) <= maxScratch {
			clear(entries) // no key or value is kept alive meanwhile
			s.entryBuf = entries[:0]
		}
	}()
	err := s.db.Update(func(txn *badger.Txn) error {
		for _, r := range keep {
			start := len(buf)
			buf = append(append(buf, store.PrefixAffinity...), r.ID...)
			key := buf[start:len(buf):len(buf)]
			if !s.filter.absent(r.ID) { // else certainly new: nothing to read
				s.reads.Add(1)
				it, err := txn.Get(key)
				switch {
				case errors.Is(err, badger.ErrKeyNotFound):
				case err != nil:
					return err
				case !r.Deleted:
					continue // a creation: any record there came first
				default:
					var old record
					if it.Value(func(v []byte) (err error) { old, err = decodeValue(r.ID, v); return err }) == nil && known(r, old) {
						continue
					}
				}
			}
			// Past the size, appends move to a new array: the slices
			// taken stay valid. entries never grows past its size.
			start = len(buf)
			buf = r.appendValue(buf)
			entries = append(entries, badger.Entry{Key: key, Value: buf[start:len(buf):len(buf)]})
			e := entries[len(entries)-1].WithTTL(time.Duration(max(r.Expires-now, 1)) * time.Millisecond)
			if err := txn.SetEntry(e); err != nil {
				return err
			}
			// Added before the next record's check: the same id twice in
			// one batch is read the second time, and found.
			s.filter.add(r.ID, r.Expires, now)
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("persisting response owners: %w", err)
	}
	return out, nil
}

// maxScratch bounds the records commit's scratch arrays are kept for
// (a full batch, or a large payload from a peer).
const maxScratch = 4 * writeBatch

// loadFilter adds the ids the database holds to the filter, which spares
// no read until they are all in (ready). Ids persisted meanwhile are added
// by commit.
func (s *Store) loadFilter() {
	defer close(s.loaderDone)
	prefix := []byte(store.PrefixAffinity)
	ids := make([]string, 0, loadChunk)
	until := make([]int64, 0, loadChunk)
	add := func() {
		s.written.Lock()
		now := s.now().UnixMilli()
		for i, id := range ids {
			s.filter.add(id, until[i], now)
		}
		s.written.Unlock()
		ids, until = ids[:0], until[:0]
	}
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			exp := int64(math.MaxInt64)
			if at := item.ExpiresAt(); at > 0 {
				exp = int64(at+1) * 1000 // Badger's expiry is in seconds
			}
			ids = append(ids, string(item.Key()[len(prefix):]))
			until = append(until, exp)
			if len(ids) == loadChunk {
				add()
				select {
				case <-s.stopWriter:
					return errors.New("affinity store closing")
				default:
				}
			}
		}
		return nil
	})
	add()
	if err != nil {
		return
	}
	s.written.Lock()
	s.filter.ready = true
	s.written.Unlock()
}

// loadChunk is how many ids loadFilter adds per hold of written.
const loadChunk = 4096

// Outgoing returns the local changes since the previous call as payloads
// for the cluster's reliable channel. With full (push/pull), the changes of
// the last day (at most fullMaxRecords) and the next page of every
// unexpired record and tombstone, in id order from where the previous full
// call stopped, wrapping around: a node that joins or comes back has the
// last day's ids at its first exchange and every other id within
// records/Page exchanges, and no call holds more than about two pages.
func (s *Store) Outgoing(ctx context.Context, full bool) ([][]byte, error) {
	var rs []record
	if !full {
		s.mu.Lock()
		if s.alone {
			s.trimAloneNews()
			s.mu.Unlock()
			return nil, nil
		}
		rs, s.news = s.news, nil
		s.mu.Unlock()
		if taken := rs; taken != nil && cap(taken) <= 4*writeBatch { // a burst's is not kept
			defer func() {
				clear(taken)
				s.mu.Lock()
				if s.newsSpare == nil {
					s.newsSpare = taken[:0]
				}
				s.mu.Unlock()
			}()
		}
	} else {
		var err error
		if rs, err = s.recent(ctx); err != nil {
			return nil, err
		}
		page, err := s.nextPage(ctx)
		if err != nil {
			return nil, err
		}
		rs = append(rs, page...)
	}
	var out [][]byte
	for len(rs) > 0 {
		n := min(len(rs), recordsPerLoad)
		size := 2
		for _, r := range rs[:n] {
			size += len(r.ID) + len(r.Consumer) + len(r.Backend) + len(r.Origin) + 80
		}
		b := append(make([]byte, 0, size), '[') // json.Marshal(rs[:n])
		for i, r := range rs[:n] {
			if i > 0 {
				b = append(b, ',')
			}
			b = r.appendJSON(b)
		}
		out = append(out, append(b, ']'))
		rs = rs[n:]
	}
	return out, nil
}

// recent lists the records changed within fullWindow.
func (s *Store) recent(ctx context.Context) ([]record, error) {
	since := s.now().Add(-fullWindow).UnixMilli()
	var out []record
	if s.db == nil {
		err := s.do(ctx, func() {
			for _, r := range s.mem {
				if r.At >= since && len(out) < fullMaxRecords {
					out = append(out, r)
				}
			}
		})
		return out, err
	}
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(store.PrefixAffinity), PrefetchValues: true, PrefetchSize: 100})
		defer it.Close()
		for it.Rewind(); it.Valid() && len(out) < fullMaxRecords; it.Next() {
			r, err := itemRecord(it.Item())
			if err != nil {
				continue
			}
			if r.At >= since {
				out = append(out, r)
			}
		}
		return nil
	})
	return out, err
}

// nextPage returns up to Page records from the cursor on, in id order, and
// moves the cursor past them (back to the first id after the last).
func (s *Store) nextPage(ctx context.Context) ([]record, error) {
	var from string
	if err := s.do(ctx, func() { from = s.cursor }); err != nil {
		return nil, err
	}
	now := s.now().UnixMilli()
	var out []record
	next := "" // wrapped
	if s.db == nil {
		err := s.do(ctx, func() {
			ids := make([]string, 0, len(s.mem))
			for id, r := range s.mem {
				if id >= from && r.Expires > now {
					ids = append(ids, id)
				}
			}
			slices.Sort(ids)
			if len(ids) > s.page {
				ids, next = ids[:s.page], ids[s.page-1]+"\x00"
			}
			for _, id := range ids {
				out = append(out, s.mem[id])
			}
		})
		if err != nil {
			return nil, err
		}
	} else {
		err := s.db.View(func(txn *badger.Txn) error {
			prefix := []byte(store.PrefixAffinity)
			it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 100})
			defer it.Close()
			for it.Seek(append(prefix, from...)); it.Valid(); it.Next() {
				if len(out) == s.page {
					// The key is the id after the last one taken.
					next = string(it.Item().Key()[len(prefix):])
					break
				}
				r, err := itemRecord(it.Item())
				if err != nil || r.Expires <= now {
					continue
				}
				out = append(out, r)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, s.do(ctx, func() { s.cursor = next })
}

// itemRecord reads the record an iterator over store.PrefixAffinity is at.
func itemRecord(item *badger.Item) (r record, err error) {
	id := string(item.Key()[len(store.PrefixAffinity):])
	err = item.Value(func(v []byte) error {
		r, err = decodeValue(id, v)
		return err
	})
	return r, err
}

// Merge applies a payload from another node's Outgoing.
func (s *Store) Merge(ctx context.Context, payload []byte) error {
	rs, err := decode(payload)
	if err != nil {
		return err
	}
	return s.apply(ctx, rs, false)
}

// decode reads a payload of Outgoing.
func decode(payload []byte) ([]record, error) {
	var rs []record
	if err := json.Unmarshal(payload, &rs); err != nil {
		return nil, fmt.Errorf("decoding response owners: %w", err)
	}
	if len(rs) > recordsPerLoad*4 {
		return nil, fmt.Errorf("decoding response owners: %d records in one payload", len(rs))
	}
	return rs, nil
}
