package quota

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Reasons a reservation is refused (Decision.Reason).
const (
	ReasonTPM      = "tpm"       // the sliding-minute window is full; retry after RetryAfter
	ReasonQuota    = "quota"     // the period quota is used up; retry when it resets
	ReasonTooLarge = "too_large" // the request alone exceeds the TPM limit or the whole quota
)

var (
	// ErrUnknownConsumer is wrapped by errors about a consumer that is not
	// configured.
	ErrUnknownConsumer = errors.New("unknown consumer")
	// ErrInvalidLimits is wrapped by SetLimits errors about the values given
	// (negative, or a quota for a consumer without a period).
	ErrInvalidLimits = errors.New("invalid limits")
	// ErrClosed is returned by calls made after Close.
	ErrClosed = errors.New("quota limiter closed")
)

// Options configure a Limiter. Zero fields get the documented defaults.
type Options struct {
	// DB persists counters and run-time limit changes; nil keeps everything
	// in memory only. The Limiter writes only keys under store.PrefixQuota
	// and store.PrefixLimits and does not close DB.
	DB *badger.DB
	// Now is the clock of every window and period decision. Default time.Now.
	Now func() time.Time
	// Logger receives snapshot failures and dropped records. Default: discard.
	Logger *slog.Logger
	// Shards is the number of actor goroutines; counters are spread over them
	// by a hash of (consumer, key). Default 8.
	Shards int
	// SnapshotInterval is how often changed counters are written to DB in
	// one WriteBatch; it bounds what a crash loses. Default 1s.
	SnapshotInterval time.Duration
	// NodeName names this node's own usage (Status.ByNode, and the origin a
	// cluster merges it under elsewhere). Default "local".
	NodeName string
}

// Decision is the answer to a Reserve (or the state after a Settle).
type Decision struct {
	// Allowed reports whether the tokens were reserved.
	Allowed bool
	// Reason says why not: ReasonTPM, ReasonQuota or ReasonTooLarge; "" when allowed.
	Reason string
	// RetryAfter is how long until this same request would fit: for
	// ReasonTPM, until enough tokens leave the window (exact, not a
	// constant); for ReasonQuota, until the period resets; 0 for ReasonTooLarge.
	RetryAfter time.Duration
	// Limit is the TPM limit of the counter; 0 = none.
	Limit int64
	// Remaining is the TPM left in the window after this decision, never
	// negative; 0 when there is no limit.
	Remaining int64
	// QuotaResetsAt is the end of the current quota period; zero when the
	// consumer has no quota.
	QuotaResetsAt time.Time
}

// Reservation is tokens charged by Reserve, to be settled exactly once with
// Settle. The zero Reservation holds nothing (Settle ignores it). Copies of a
// Reservation name the same reservation: only the first Settle counts.
type Reservation struct {
	consumer, key string
	id            uint64
	tokens        int64
}

// Tokens returns the reserved estimate.
func (r Reservation) Tokens() int64 { return r.tokens }

// Valid reports whether r holds a reservation (Settle has work to do).
func (r Reservation) Valid() bool { return r.id != 0 }

// Status is a consumer's limits and usage, as the admin API shows it.
type Status struct {
	Consumer     string `json:"consumer"`
	TPMLimit     int64  `json:"tpm_limit"`
	TPMUsed      int64  `json:"tpm_used"`
	TPMRemaining int64  `json:"tpm_remaining"`
	QuotaLimit   int64  `json:"quota_limit"`
	QuotaPeriod  string `json:"quota_period"`
	QuotaUsed    int64  `json:"quota_used"`
	// QuotaResetsAt is the end of the current period; nil without a period.
	QuotaResetsAt *time.Time `json:"quota_resets_at"`
	// ByNode is each node's tokens in the current window of the consumer's
	// own counter (key ""); this node is always present.
	ByNode map[string]int64 `json:"by_node"`
	// Keys are the consumer's other counter keys with usage, sorted by key.
	Keys []KeyStatus `json:"keys,omitempty"`
}

// KeyStatus is the usage of one counter key of a consumer.
type KeyStatus struct {
	Key          string `json:"key"`
	TPMUsed      int64  `json:"tpm_used"`
	TPMRemaining int64  `json:"tpm_remaining"`
	QuotaUsed    int64  `json:"quota_used"`
}

// Limiter enforces TPM windows and period quotas. Its methods are safe for
// concurrent use; each is a message to one shard actor (Status, List and
// SetLimits: to every shard) and may block briefly.
type Limiter struct {
	now      func() time.Time
	log      *slog.Logger
	db       *badger.DB
	node     string
	interval time.Duration
	known    map[string]bool // configured consumers; immutable
	shards   []*shard
	replies  sync.Pool // of chan result, buffered(1)

	setMu sync.Mutex // serialises SetLimits (read, persist, broadcast)

	closing     chan struct{} // closed first by Close: no new calls
	persistStop chan struct{} // closed by Close: persister writes its last snapshot
	persistDone chan struct{}
	stop        chan struct{} // closed last by Close: actors exit
	wg          sync.WaitGroup
	closeOnce   sync.Once
	closeErr    error
}

// Open starts a Limiter for the configured consumers' limits (by consumer
// name). Run-time limit changes persisted in opts.DB take precedence over
// limits; persisted counters are restored, dropping buckets that left the
// window and periods that ended.
func Open(opts Options, limits map[string]Limits) (*Limiter, error) {
	l := &Limiter{
		now:         opts.Now,
		log:         cmp.Or(opts.Logger, slog.New(slog.DiscardHandler)),
		db:          opts.DB,
		node:        cmp.Or(opts.NodeName, "local"),
		interval:    cmp.Or(opts.SnapshotInterval, time.Second),
		known:       make(map[string]bool, len(limits)),
		closing:     make(chan struct{}),
		persistStop: make(chan struct{}),
		persistDone: make(chan struct{}),
		stop:        make(chan struct{}),
	}
	if opts.Now == nil {
		l.now = time.Now
	}
	if opts.Shards < 0 {
		return nil, fmt.Errorf("quota: shards %d: must not be negative", opts.Shards)
	}
	nShards := cmp.Or(opts.Shards, 8)
	l.replies.New = func() any { return make(chan result, 1) }
	effective := make(map[string]Limits, len(limits))
	for name, lim := range limits {
		if err := lim.validate(); err != nil {
			return nil, fmt.Errorf("quota: consumer %q: %w", name, err)
		}
		l.known[name] = true
		effective[name] = lim
	}
	if err := l.loadLimits(effective); err != nil {
		return nil, err
	}
	l.shards = make([]*shard, nShards)
	for i := range l.shards {
		l.shards[i] = newShard(l.node, l.now, effective)
	}
	if err := l.loadCounters(); err != nil {
		return nil, err
	}
	l.wg.Add(len(l.shards))
	for _, s := range l.shards {
		go func() {
			defer l.wg.Done()
			s.run(l.stop)
		}()
	}
	go l.persist()
	return l, nil
}

// shardOf returns the shard that owns (consumer, key): FNV-1a over both.
func (l *Limiter) shardOf(consumer, key string) *shard {
	h := uint64(14695981039346656037)
	for i := 0; i < len(consumer); i++ {
		h = (h ^ uint64(consumer[i])) * 1099511628211
	}
	h = (h ^ 0xff) * 1099511628211
	for i := 0; i < len(key); i++ {
		h = (h ^ uint64(key[i])) * 1099511628211
	}
	return l.shards[h%uint64(len(l.shards))]
}

// call sends m to s and waits for its result. ctx bounds the wait; a Reserve
// whose caller gave up after sending is released by a helper goroutine.
// With sendAnyway, m is queued even when ctx is already done.
func (l *Limiter) call(ctx context.Context, s *shard, m message, sendAnyway bool) (result, error) {
	select {
	case <-l.closing:
		return result{}, ErrClosed
	default:
	}
	ch := l.replies.Get().(chan result)
	m.reply = ch
	done := ctx.Done()
	if sendAnyway {
		done = nil
	}
	select {
	case s.inbox <- m:
	case <-done:
		l.replies.Put(ch)
		return result{}, ctx.Err()
	case <-l.closing:
		l.replies.Put(ch)
		return result{}, ErrClosed
	}
	select {
	case r := <-ch:
		l.replies.Put(ch)
		return r, nil
	case <-ctx.Done():
		if m.kind == msgReserve {
			go l.release(s, ch)
		}
		return result{}, ctx.Err()
	case <-l.stop:
		return result{}, ErrClosed
	}
}

// release waits for the result of a Reserve nobody waits for any more and
// settles what it reserved to 0: the call was never forwarded.
func (l *Limiter) release(s *shard, ch chan result) {
	select {
	case r := <-ch:
		if r.res.Valid() {
			l.call(context.Background(), s, message{kind: msgSettle, consumer: r.res.consumer, key: r.res.key, id: r.res.id}, true)
		}
	case <-l.stop:
	}
}

// MaxTokens is the most one Reserve, Settle or Merge counts; larger numbers
// (an absurd max_tokens, a backend reporting absurd usage) are clamped to it,
// so sums over a window and a period can never overflow and wrap to zero.
const MaxTokens = 1 << 40

// Reserve charges tokens to the counter key of consumer (key "" is the
// consumer itself; other keys get the consumer's limits separately) if its
// TPM window and period quota allow them. A consumer that is not configured
// is unlimited (Allowed, Limit 0) but its usage is still counted. When the
// Decision is not Allowed, the Reservation is the zero one. Errors: negative
// tokens, ctx done, or ErrClosed.
func (l *Limiter) Reserve(ctx context.Context, consumer, key string, tokens int64) (Reservation, Decision, error) {
	if tokens < 0 {
		return Reservation{}, Decision{}, fmt.Errorf("quota: reserve %d tokens: must not be negative", tokens)
	}
	r, err := l.call(ctx, l.shardOf(consumer, key), message{kind: msgReserve, consumer: consumer, key: key, tokens: min(tokens, MaxTokens)}, false)
	if err != nil {
		return Reservation{}, Decision{}, fmt.Errorf("quota: reserve for %q: %w", consumer, err)
	}
	return r.res, r.dec, nil
}

// Headroom returns the TPM limit and what is left of it for the counter key
// of consumer, charging nothing: what a request that needs no tokens (a cache
// hit) reports in its headers.
func (l *Limiter) Headroom(ctx context.Context, consumer, key string) (Decision, error) {
	r, err := l.call(ctx, l.shardOf(consumer, key), message{kind: msgHeadroom, consumer: consumer, key: key}, false)
	if err != nil {
		return Decision{}, fmt.Errorf("quota: headroom of %q: %w", consumer, err)
	}
	return r.dec, nil
}

// Settle replaces r's estimate by the actual tokens used: in the window
// bucket where r was charged (unless that bucket has left the window) and in
// the period counter (unless the period has ended since). It counts once per
// reservation; later calls, and calls with the zero Reservation, change
// nothing. The settlement is queued even if ctx is done (tokens spent must be
// charged); ctx bounds only the wait for the returned Decision, which carries
// the window's Limit and Remaining after settling (zero if not awaited).
func (l *Limiter) Settle(ctx context.Context, r Reservation, actual int64) Decision {
	if !r.Valid() {
		return Decision{}
	}
	actual = min(max(actual, 0), MaxTokens)
	res, err := l.call(ctx, l.shardOf(r.consumer, r.key), message{kind: msgSettle, consumer: r.consumer, key: r.key, id: r.id, tokens: actual}, true)
	if err != nil {
		return Decision{}
	}
	return res.dec
}

// Merge records that node origin charged tokens in total to (consumer, key)
// in the one-second bucket starting at bucketStart. Merging keeps the maximum
// per (origin, bucket), so duplicated or reordered deliveries of the same or
// older totals never double-count. The tokens count in this node's window and
// period like local ones. Merges of this node's own origin, of buckets more
// than about 61 s old or more than 2 s ahead of this node's clock are ignored.
func (l *Limiter) Merge(ctx context.Context, origin, consumer, key string, bucketStart time.Time, tokens int64) error {
	_, err := l.call(ctx, l.shardOf(consumer, key), message{
		kind: msgMerge, origin: origin, consumer: consumer, key: key, bucket: bucketOf(bucketStart), tokens: min(tokens, MaxTokens),
	}, false)
	if err != nil {
		return fmt.Errorf("quota: merge from %q: %w", origin, err)
	}
	return nil
}

// collect gathers views of consumer's counters ("" = all) from every shard,
// and the limits as shard 0 holds them.
func (l *Limiter) collect(ctx context.Context, consumer string) ([]keyView, map[string]Limits, error) {
	var views []keyView
	var limits map[string]Limits
	for i, s := range l.shards {
		r, err := l.call(ctx, s, message{kind: msgCollect, consumer: consumer}, false)
		if err != nil {
			return nil, nil, err
		}
		views = append(views, r.views...)
		if i == 0 {
			limits = r.limits
		}
	}
	return views, limits, nil
}

// status builds a consumer's Status from its limits and counter views.
func (l *Limiter) status(consumer string, lim Limits, views []keyView, now time.Time) Status {
	st := Status{
		Consumer:    consumer,
		TPMLimit:    lim.TPM,
		QuotaLimit:  lim.QuotaTokens,
		QuotaPeriod: string(lim.Period),
		ByNode:      map[string]int64{l.node: 0},
	}
	remaining := func(used int64) int64 {
		if lim.TPM <= 0 {
			return 0
		}
		return max(lim.TPM-used, 0)
	}
	if lim.Period != NoPeriod {
		_, end := lim.Period.Bounds(now)
		st.QuotaResetsAt = &end
	}
	for _, v := range views {
		if v.consumer != consumer {
			continue
		}
		if v.key == "" {
			st.TPMUsed, st.QuotaUsed = max(v.used, 0), v.quotaUsed
			maps.Copy(st.ByNode, v.byNode)
			continue
		}
		st.Keys = append(st.Keys, KeyStatus{Key: v.key, TPMUsed: max(v.used, 0), TPMRemaining: remaining(v.used), QuotaUsed: v.quotaUsed})
	}
	st.TPMRemaining = remaining(st.TPMUsed)
	slices.SortFunc(st.Keys, func(a, b KeyStatus) int { return cmp.Compare(a.Key, b.Key) })
	return st
}

// Status returns a configured consumer's limits and usage; false if the
// consumer is not configured, ctx is done or the Limiter is closed.
func (l *Limiter) Status(ctx context.Context, consumer string) (Status, bool) {
	if !l.known[consumer] {
		return Status{}, false
	}
	views, limits, err := l.collect(ctx, consumer)
	if err != nil {
		return Status{}, false
	}
	return l.status(consumer, limits[consumer], views, l.now()), true
}

// List returns the Status of every configured consumer, sorted by name (nil
// if ctx is done or the Limiter is closed).
func (l *Limiter) List(ctx context.Context) []Status {
	views, limits, err := l.collect(ctx, "")
	if err != nil {
		return nil
	}
	byConsumer := map[string][]keyView{}
	for _, v := range views {
		byConsumer[v.consumer] = append(byConsumer[v.consumer], v)
	}
	now := l.now()
	names := slices.Sorted(maps.Keys(l.known))
	out := make([]Status, 0, len(names))
	for _, name := range names {
		out = append(out, l.status(name, limits[name], byConsumer[name], now))
	}
	return out
}

// SetLimits changes a configured consumer's TPM limit and/or quota tokens
// (nil = unchanged; 0 = unlimited) at run time. The change is written to the
// database before SetLimits returns and outlives restarts, taking precedence
// over the configuration for the fields it set. The consumer's period cannot
// be changed here. Errors wrap ErrUnknownConsumer for a consumer that is not
// configured and ErrInvalidLimits for negative values or a quota for a
// consumer without a period; others are database or context failures.
func (l *Limiter) SetLimits(ctx context.Context, consumer string, tpm, quotaTokens *int64) (Status, error) {
	if !l.known[consumer] {
		return Status{}, fmt.Errorf("quota: set limits of %q: %w", consumer, ErrUnknownConsumer)
	}
	l.setMu.Lock()
	defer l.setMu.Unlock()
	r, err := l.call(ctx, l.shards[0], message{kind: msgCollect, consumer: consumer}, false)
	if err != nil {
		return Status{}, fmt.Errorf("quota: set limits of %q: %w", consumer, err)
	}
	lim := r.limits[consumer]
	if tpm != nil {
		lim.TPM = *tpm
	}
	if quotaTokens != nil {
		lim.QuotaTokens = *quotaTokens
	}
	if err := lim.validate(); err != nil {
		return Status{}, fmt.Errorf("quota: set limits of %q: %w: %w", consumer, ErrInvalidLimits, err)
	}
	if err := l.storeLimits(consumer, tpm, quotaTokens); err != nil {
		return Status{}, fmt.Errorf("quota: set limits of %q: %w", consumer, err)
	}
	for _, s := range l.shards {
		// Queued even if ctx is done: the change is already persisted and
		// every shard must see it.
		if _, err := l.call(context.WithoutCancel(ctx), s, message{kind: msgSetLimits, consumer: consumer, limits: lim}, true); err != nil {
			return Status{}, fmt.Errorf("quota: set limits of %q: %w", consumer, err)
		}
	}
	// The change is stored and applied: report it even if the caller's ctx ended.
	st, ok := l.Status(context.WithoutCancel(ctx), consumer)
	if !ok {
		return Status{}, fmt.Errorf("quota: set limits of %q: status: %w", consumer, cmp.Or(ctx.Err(), ErrClosed))
	}
	return st, nil
}

// Close stops the actors after writing a final snapshot. Calls made after
// Close return ErrClosed. It does not close Options.DB.
func (l *Limiter) Close() error {
	l.closeOnce.Do(func() {
		close(l.closing)
		close(l.persistStop)
		<-l.persistDone
		close(l.stop)
		l.wg.Wait()
	})
	return l.closeErr
}
