package usage

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/llmgate/llmgate/internal/store"
	"github.com/llmgate/llmgate/telemetry"
)

const prefix = store.PrefixUsage

// Price is what a route's tokens cost, in US dollars per million tokens.
// CachedInputPer1M applies to prompt tokens served by the backend's prompt
// cache; 0 means they cost InputPer1M.
type Price struct {
	InputPer1M, OutputPer1M, CachedInputPer1M float64
}

// Options configure a History. Zero fields get the defaults named on them.
type Options struct {
	// DB holds the rows under store.PrefixUsage (required).
	DB *badger.DB
	// Node is this node's name; the origin of its rows is the name and the
	// process's start time.
	Node   string
	Now    func() time.Time
	Logger *slog.Logger
	// Retention is how long rows are kept (default 400 days).
	Retention time.Duration
	// Prices are per route; a route without one costs nothing.
	Prices map[string]Price
	// FlushInterval is how often changed rows are written (default 1s): a
	// kill -9 loses at most that much of this node's counts.
	FlushInterval time.Duration
	// RecentHours is how many of the latest hours every full exchange
	// carries (default 3); older hours follow a few at a time, in turn.
	RecentHours int
	// FullChunkBytes bounds the older rows one full exchange adds (default 256 KiB).
	FullChunkBytes int
}

// History is the node's usage history. Its methods are safe for concurrent use.
type History struct {
	opts   Options
	db     *badger.DB
	log    *slog.Logger
	now    func() time.Time
	origin string

	events  chan event
	calls   chan call
	dropped atomic.Int64
	// live holds what a configuration reload changes (SetConfig): read
	// by requests (prices) and the actor (retention) without a lock.
	live atomic.Pointer[liveOptions]

	cursorMu sync.Mutex
	cursor   int64 // the hour below which the next full exchange's older rows start; 0 = from the recent ones

	cancel context.CancelFunc
	done   chan struct{}
}

type liveOptions struct {
	retention time.Duration
	prices    map[string]Price
}

type event struct {
	key Key
	t   Totals
}

type callKind int

const (
	callFlush callKind = iota
	callOutgoing
	callMerge
)

type call struct {
	kind  callKind
	rows  []Row
	reply chan callResult // buffered(1)
}

type callResult struct {
	rows []Row
	err  error
}

// resendRounds is how many consecutive Outgoing(false) calls carry a row
// after it changed: a lost packet is repaired by one of the next.
const resendRounds = 3

// Open starts the history. The rows already in DB stay; those older than
// the retention are deleted now and then every hour.
func Open(opts Options) (*History, error) {
	if opts.DB == nil {
		return nil, errors.New("usage: Options.DB is required")
	}
	opts.Logger = cmp.Or(opts.Logger, slog.New(slog.DiscardHandler))
	if opts.Now == nil {
		opts.Now = time.Now
	}
	opts.Retention = cmp.Or(opts.Retention, 400*24*time.Hour)
	opts.FlushInterval = cmp.Or(opts.FlushInterval, time.Second)
	opts.RecentHours = cmp.Or(opts.RecentHours, 3)
	opts.FullChunkBytes = cmp.Or(opts.FullChunkBytes, 256<<10)
	h := &History{
		opts: opts, db: opts.DB, log: opts.Logger, now: opts.Now,
		// The start time names the process's life; the random part keeps two
		// lives apart even if a clock went back.
		origin: opts.Node + "@" + strconv.FormatInt(opts.Now().UnixNano(), 36) + "." + strconv.FormatUint(uint64(rand.Uint32()), 36),
		events: make(chan event, 8192),
		calls:  make(chan call),
		done:   make(chan struct{}),
	}
	h.SetConfig(opts.Prices, opts.Retention)
	if err := h.sweep(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go h.run(ctx)
	return h, nil
}

// SetConfig changes the prices (requests observed from now on are costed
// with them; recorded costs stay) and the retention (the next hourly sweep
// applies it; 0 = the default). prices must not be written afterwards.
func (h *History) SetConfig(prices map[string]Price, retention time.Duration) {
	h.live.Store(&liveOptions{retention: cmp.Or(retention, 400*24*time.Hour), prices: prices})
}

func (h *History) retention() time.Duration { return h.live.Load().retention }

// Origin is the name this process's rows carry.
func (h *History) Origin() string { return h.origin }

// Dropped is how many requests were not counted because the actor's queue was full.
func (h *History) Dropped() int64 { return h.dropped.Load() }

// Close writes what is pending and stops the actor.
func (h *History) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := h.Flush(ctx)
	h.cancel()
	<-h.done
	return err
}

// Observe implements telemetry.Observer: it counts a request the gateway
// served, or one it refused or failed (Refused only: no tokens, no cost),
// without blocking; when the actor's queue is full the request is dropped
// and counted in Dropped. Requests of no consumer are not counted, and a
// refusal names its route only if the route has a price entry (every
// configured route has one), so that names clients make up never become
// rows.
func (h *History) Observe(_ context.Context, r *telemetry.Request) {
	if r.Consumer == "" {
		return
	}
	if r.Refusal != "" {
		route := r.Route
		if _, ok := h.live.Load().prices[route]; !ok {
			route = ""
		}
		h.enqueue(event{key: Key{Hour: hourOf(r.Time), Origin: h.origin, Consumer: r.Consumer, Route: route, User: r.User}, t: Totals{Refused: 1}})
		return
	}
	e := event{
		key: Key{Hour: hourOf(r.Time), Origin: h.origin, Consumer: r.Consumer, Route: r.Route, User: r.User},
		t: Totals{
			Requests: 1, Prompt: r.PromptTokens, Completion: r.CompletionTokens, Cached: r.CachedTokens,
			Saved: r.Saved,
		},
	}
	if r.Cache == "hit" {
		e.t.CacheHits = 1
	}
	if p, ok := h.live.Load().prices[r.Route]; ok {
		e.t.CostNano = p.costNano(r.PromptTokens, r.CompletionTokens, r.CachedTokens)
		if r.Saved > 0 {
			// The spared call is priced as the stored answer's usage, uncached.
			savedPrompt := min(max(r.SavedPrompt, 0), r.Saved)
			e.t.SavedNano = p.costNano(savedPrompt, r.Saved-savedPrompt, 0)
		}
	}
	h.enqueue(e)
}

// enqueue hands e to the actor, or drops it (counted) when its queue is full.
func (h *History) enqueue(e event) {
	select {
	case h.events <- e:
	default:
		h.dropped.Add(1)
	}
}

// costNano is the cost of the tokens in billionths of a dollar: a price per
// million tokens is that many thousandths of a nano-dollar per token.
func (p Price) costNano(prompt, completion, cached int64) int64 {
	cached = min(max(cached, 0), prompt)
	cachedPrice := p.CachedInputPer1M
	if cachedPrice == 0 {
		cachedPrice = p.InputPer1M
	}
	c := float64(prompt-cached)*p.InputPer1M + float64(cached)*cachedPrice + float64(completion)*p.OutputPer1M
	return int64(math.Round(c * 1000))
}

func hourOf(t time.Time) int64 {
	s := t.Unix()
	return s - ((s%3600)+3600)%3600
}

// Flush waits until every request observed before the call is on disk.
func (h *History) Flush(ctx context.Context) error {
	_, err := h.ask(ctx, call{kind: callFlush})
	return err
}

func (h *History) ask(ctx context.Context, c call) ([]Row, error) {
	c.reply = make(chan callResult, 1)
	select {
	case h.calls <- c:
	case <-ctx.Done():
		return nil, fmt.Errorf("usage: %w", ctx.Err())
	case <-h.done:
		return nil, errors.New("usage: closed")
	}
	select {
	case r := <-c.reply:
		return r.rows, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("usage: %w", ctx.Err())
	}
}

// actor state, owned by run.
type actor struct {
	rows  map[Key]*Totals // changed since start (this origin) or merged lately
	dirty map[Key]bool    // to write
	news  map[Key]int     // this origin's rows to tell peers, with rounds left
}

func (h *History) run(ctx context.Context) {
	defer close(h.done)
	a := &actor{rows: map[Key]*Totals{}, dirty: map[Key]bool{}, news: map[Key]int{}}
	flush := time.NewTicker(h.opts.FlushInterval)
	defer flush.Stop()
	sweep := time.NewTicker(time.Hour)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			h.drain(a)
			if err := h.write(a); err != nil {
				h.log.Error("writing usage history", "err", err)
			}
			return
		case e := <-h.events:
			a.add(e)
		case c := <-h.calls:
			h.drain(a)
			var res callResult
			switch c.kind {
			case callFlush:
				res.err = h.write(a)
			case callOutgoing:
				res.rows = a.outgoing()
			case callMerge:
				h.merge(a, c.rows)
			}
			c.reply <- res
		case <-flush.C:
			h.drain(a)
			if err := h.write(a); err != nil {
				h.log.Warn("writing usage history", "err", err)
			}
			a.prune(hourOf(h.now()) - int64(h.opts.RecentHours)*3600)
		case <-sweep.C:
			if err := h.sweep(); err != nil {
				h.log.Warn("deleting usage history past its retention", "err", err)
			}
		}
	}
}

// drain applies the events already queued, so a call sees every request
// observed before it.
func (h *History) drain(a *actor) {
	for {
		select {
		case e := <-h.events:
			a.add(e)
		default:
			return
		}
	}
}

func (a *actor) add(e event) {
	t := a.rows[e.key]
	if t == nil {
		t = &Totals{}
		a.rows[e.key] = t
	}
	t.add(e.t)
	a.dirty[e.key] = true
	a.news[e.key] = resendRounds
}

func (a *actor) outgoing() []Row {
	rows := make([]Row, 0, len(a.news))
	for k, n := range a.news {
		rows = append(rows, Row{Key: k, Totals: *a.rows[k]})
		if n <= 1 {
			delete(a.news, k)
		} else {
			a.news[k] = n - 1
		}
	}
	return rows
}

// merge takes, per counter, the larger of what is held and what came.
// Rows of this very origin are this actor's own: nobody holds more of them.
func (h *History) merge(a *actor, rows []Row) {
	now := h.now()
	oldest, newest := hourOf(now.Add(-h.retention())), hourOf(now)+3600
	for _, r := range rows {
		if r.Origin == h.origin || r.Hour < oldest || r.Hour > newest || r.Hour%3600 != 0 {
			continue
		}
		t := a.rows[r.Key]
		if t == nil {
			t = &Totals{}
			a.rows[r.Key] = t
		}
		if t.maxOf(r.Totals) {
			a.dirty[r.Key] = true
		}
	}
}

// prune forgets rows of hours before keep that are written: they are final
// for this origin, and a merged copy of them is kept on disk.
func (a *actor) prune(keep int64) {
	for k := range a.rows {
		if k.Hour < keep && !a.dirty[k] && a.news[k] == 0 {
			delete(a.rows, k)
		}
	}
}

// write stores the dirty rows, each as the larger of it and what the disk
// holds (a merged row may not have been read from disk first).
func (h *History) write(a *actor) error {
	if len(a.dirty) == 0 {
		return nil
	}
	err := h.db.Update(func(txn *badger.Txn) error {
		for k := range a.dirty {
			t := *a.rows[k]
			dk := diskKey(prefix, k)
			item, err := txn.Get(dk)
			switch {
			case err == nil:
				var old Totals
				if verr := item.Value(func(v []byte) error {
					var rerr error
					old, rerr = readDiskTotals(v)
					return rerr
				}); verr == nil {
					cur := old
					if !cur.maxOf(t) {
						continue // the disk already has as much
					}
					t = cur
				}
			case !errors.Is(err, badger.ErrKeyNotFound):
				return err
			}
			if err := txn.Set(dk, appendTotals(nil, t)); err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, badger.ErrTxnTooBig) {
		// Rare (a large merge): write row by row.
		for k := range a.dirty {
			one := &actor{rows: map[Key]*Totals{k: a.rows[k]}, dirty: map[Key]bool{k: true}}
			if err := h.write(one); err != nil {
				return err
			}
		}
		err = nil
	}
	if err != nil {
		return fmt.Errorf("usage: writing rows: %w", err)
	}
	clear(a.dirty)
	return nil
}

// sweep deletes the rows older than the retention.
func (h *History) sweep() error {
	cutoff := hourKey(prefix, hourOf(h.now().Add(-h.retention())))
	var keys [][]byte
	err := h.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefix)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			if bytes.Compare(k, cutoff) >= 0 {
				break
			}
			keys = append(keys, it.Item().KeyCopy(nil))
		}
		return nil
	})
	if err != nil || len(keys) == 0 {
		return err
	}
	wb := h.db.NewWriteBatch()
	defer wb.Cancel()
	for _, k := range keys {
		if err := wb.Delete(k); err != nil {
			return fmt.Errorf("usage: deleting old rows: %w", err)
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("usage: deleting old rows: %w", err)
	}
	h.log.Info("usage history past its retention deleted", "rows", len(keys))
	return nil
}

// Outgoing returns what to tell peers. With full false: this origin's rows
// that changed lately (each in resendRounds consecutive calls). With full
// true (anti-entropy): every origin's rows of the recent hours, plus the
// next older hours in turn (up to FullChunkBytes), so that over successive
// exchanges the whole retained history reaches a node that missed some.
func (h *History) Outgoing(ctx context.Context, full bool) ([]Row, error) {
	if !full {
		return h.ask(ctx, call{kind: callOutgoing})
	}
	if err := h.Flush(ctx); err != nil {
		return nil, err
	}
	recent := hourOf(h.now()) - int64(h.opts.RecentHours-1)*3600
	rows, err := h.scan(recent, math.MaxInt64)
	if err != nil {
		return nil, err
	}
	h.cursorMu.Lock()
	defer h.cursorMu.Unlock()
	below := h.cursor
	if below == 0 || below > recent {
		below = recent
	}
	older, next, err := h.scanDown(below, h.opts.FullChunkBytes)
	if err != nil {
		return nil, err
	}
	h.cursor = next
	return append(rows, older...), nil
}

// Merge merges rows from peers.
func (h *History) Merge(ctx context.Context, rows []Row) error {
	if len(rows) == 0 {
		return nil
	}
	_, err := h.ask(ctx, call{kind: callMerge, rows: rows})
	return err
}

// scan reads the rows of hours [from, to) from disk.
func (h *History) scan(from, to int64) ([]Row, error) {
	var rows []Row
	end := hourKey(prefix, to)
	err := h.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefix), PrefetchValues: true})
		defer it.Close()
		for it.Seek(hourKey(prefix, max(from, 0))); it.Valid(); it.Next() {
			item := it.Item()
			if to != math.MaxInt64 && bytes.Compare(item.Key(), end) >= 0 {
				break
			}
			r, err := readRow(item)
			if err != nil {
				h.log.Warn("skipping an unreadable usage row", "err", err)
				continue
			}
			rows = append(rows, r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("usage: reading rows: %w", err)
	}
	return rows, nil
}

// scanDown reads whole hours below the hour below, newest first, until
// about budget bytes; next is where the following call continues (0 when
// the oldest row was reached: start again from the top).
func (h *History) scanDown(below int64, budget int) (rows []Row, next int64, err error) {
	size := 0
	err = h.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefix), Reverse: true, PrefetchValues: true})
		defer it.Close()
		last := int64(-1)
		for it.Seek(hourKey(prefix, below)); it.Valid(); it.Next() {
			item := it.Item()
			if bytes.Compare(item.Key(), hourKey(prefix, below)) >= 0 {
				continue
			}
			r, err := readRow(item)
			if err != nil {
				continue
			}
			if r.Hour != last && size >= budget {
				next = last
				return nil
			}
			last = r.Hour
			size += len(item.Key()) + 16
			rows = append(rows, r)
		}
		return nil
	})
	return rows, next, err
}

func readRow(item *badger.Item) (Row, error) {
	k, err := parseDiskKey(prefix, item.Key())
	if err != nil {
		return Row{}, err
	}
	var t Totals
	err = item.Value(func(v []byte) error {
		var rerr error
		t, rerr = readDiskTotals(v)
		return rerr
	})
	return Row{Key: k, Totals: t}, err
}
