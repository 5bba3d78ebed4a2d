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
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Reasons a reservation is refused (Decision.Reason).
const (
	ReasonTPM      = "tpm"       // the sliding-minute window is full; retry after RetryAfter
	ReasonQuota    = "quota"     // the period quota is used up (or, with peers, its tail is another node's); retry when it resets
	ReasonTooLarge = "too_large" // the request alone exceeds the TPM limit or the whole quota
	// ReasonShare: the cluster still has room, but this node's share of what
	// remains is in flight (not yet seen by its peers); retry in well under
	// a second. Only with peers.
	ReasonShare = "share"
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
	// PeerLag bounds how long peers take to learn of this node's usage (an
	// exchange interval plus delivery). Reservations younger than that are
	// in flight, and with peers (SetPeers) in-flight tokens are limited to
	// this node's share of the budget left, so that the nodes together stay
	// within each limit. Default 250ms.
	PeerLag time.Duration
	// DemandHalfLife is the half-life of the demand (requested tokens per
	// second) that sets this node's share. Default 2s.
	DemandHalfLife time.Duration
}

// Decision is the answer to a Reserve (or the state after a Settle).
type Decision struct {
	// Allowed reports whether the tokens were reserved.
	Allowed bool
	// Reason says why not: ReasonTPM, ReasonQuota, ReasonTooLarge or
	// ReasonShare; "" when allowed.
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

// AfterSettle returns d, the Decision that admitted a reservation of
// reserved tokens, as it reads once the reservation is settled to actual:
// Remaining grows by what was reserved and not used, or shrinks by what was
// used beyond it. It counts only this reservation's change since d: what the
// window gained or lost meanwhile (other calls, buckets leaving the window)
// shows in the next Decision asked of the shard.
func (d Decision) AfterSettle(reserved, actual int64) Decision {
	if d.Limit <= 0 {
		return d
	}
	actual = min(max(actual, 0), MaxTokens)
	d.Remaining = min(max(d.Remaining+reserved-actual, 0), d.Limit)
	return d
}

// Reservation is tokens charged by Reserve, to be settled exactly once with
// Settle. The zero Reservation holds nothing (Settle ignores it). Copies of a
// Reservation name the same reservation: only the first Settle counts.
type Reservation struct {
	consumer, key string
	id            uint64 // the shard's; 0 for an unmetered one
	tokens        int64
	// bucket and periodStart are where a metered reservation was charged.
	bucket, periodStart int64
	// settled is set by the first Settle or SettleAsync of any copy of a
	// reservation of the shard's, so that only the first one gives what it
	// frees to a grant (see grant.give).
	settled *atomic.Bool
	// unmetered is set instead of id when the counter had no limit at all:
	// the reservation was made without its shard, and settling it records
	// the usage in the bucket of the reservation.
	unmetered *unmetered
	// drawn is set instead of id when the reservation was taken from a
	// grant (see grant.go).
	drawn *drawn
}

// unmetered is what settling a reservation made without its shard needs.
type unmetered struct {
	bucket  int64       // where Reserve would have charged the estimate
	settled atomic.Bool // the first Settle or SettleAsync won
}

// Tokens returns the reserved estimate, as reserved (before any Shrink).
func (r Reservation) Tokens() int64 { return r.tokens }

// Valid reports whether r holds a reservation (Settle has work to do).
func (r Reservation) Valid() bool { return r.id != 0 || r.unmetered != nil || r.drawn != nil }

// Status is a consumer's limits and usage, as the admin API shows it.
type Status struct {
	Consumer     string `json:"consumer"`
	TPMLimit     int64  `json:"tpm_limit"`
	TPMUsed      int64  `json:"tpm_used"`
	TPMRemaining Left   `json:"tpm_remaining"`
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
	// ShareRefusals counts the reservations of any of the consumer's
	// counters that this node refused since it started because its share
	// of the cluster's remaining budget was too small, although its view of
	// the window and quota had room (see SetPeers). Always 0 for a node
	// alone.
	ShareRefusals int64 `json:"share_refusals,omitempty"`
	// Budget is the consumer's money budget (quota.usd), when it has one.
	Budget *Budget `json:"quota_usd,omitempty"`
}

// KeyStatus is the usage of one counter key of a consumer.
type KeyStatus struct {
	Key          string `json:"key"`
	TPMUsed      int64  `json:"tpm_used"`
	TPMRemaining Left   `json:"tpm_remaining"`
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
	// config holds the configured consumers' limits. The map is never
	// changed once stored; SetConfig stores a new one (under setMu).
	config  atomic.Pointer[map[string]Limits]
	shards  []*shard
	replies sync.Pool // of chan result, buffered(1)
	timers  sync.Pool // of stopped *time.Timer, for callWithin

	// effective mirrors the shards' copies of the effective limits (stored
	// under setMu before the shards are given a change), so that a counter
	// without any limit is reserved for without a round trip to its shard.
	effective atomic.Pointer[map[string]Limits]

	// setMu serialises limit changes (SetLimits, ApplyLimits: merge,
	// persist, broadcast) and guards the fields below.
	setMu sync.Mutex
	// records are the run-time limit changes by consumer, with versions.
	records map[string]LimitRecord
	// limitsOut counts, by consumer, the Outgoing(false) calls that still
	// carry a change made here by SetLimits.
	limitsOut map[string]int

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
		records:     map[string]LimitRecord{},
		limitsOut:   map[string]int{},
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
	if opts.PeerLag < 0 || opts.DemandHalfLife < 0 {
		return nil, fmt.Errorf("quota: peer lag %v, demand half-life %v: must not be negative", opts.PeerLag, opts.DemandHalfLife)
	}
	lag := cmp.Or(opts.PeerLag, 250*time.Millisecond)
	halfLife := cmp.Or(opts.DemandHalfLife, 2*time.Second)
	nShards := cmp.Or(opts.Shards, 8)
	l.replies.New = func() any { return make(chan result, 1) }
	l.timers.New = func() any {
		t := time.NewTimer(time.Hour)
		t.Stop()
		return t
	}
	effective := make(map[string]Limits, len(limits))
	config := make(map[string]Limits, len(limits))
	for name, lim := range limits {
		if err := lim.validate(); err != nil {
			return nil, fmt.Errorf("quota: consumer %q: %w", name, err)
		}
		config[name] = lim
		effective[name] = lim
	}
	l.config.Store(&config)
	if err := l.loadLimits(effective); err != nil {
		return nil, err
	}
	mirror := maps.Clone(effective)
	l.effective.Store(&mirror)
	l.shards = make([]*shard, nShards)
	for i := range l.shards {
		l.shards[i] = newShard(l.node, l.now, lag, halfLife, effective)
		l.shards[i].closing = l.closing
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

// usable returns ctx's error, or ErrClosed after Close.
func (l *Limiter) usable(ctx context.Context) error {
	select {
	case <-l.closing:
		return ErrClosed
	default:
		return ctx.Err()
	}
}

// shardOf returns the shard that owns (consumer, key).
func (l *Limiter) shardOf(consumer, key string) *shard {
	return l.shards[l.shardIndex(consumer, key)]
}

// shardIndex returns the index of the shard that owns (consumer, key):
// FNV-1a over both.
func (l *Limiter) shardIndex(consumer, key string) int {
	h := uint64(14695981039346656037)
	for i := 0; i < len(consumer); i++ {
		h = (h ^ uint64(consumer[i])) * 1099511628211
	}
	h = (h ^ 0xff) * 1099511628211
	for i := 0; i < len(key); i++ {
		h = (h ^ uint64(key[i])) * 1099511628211
	}
	return int(h % uint64(len(l.shards)))
}

// call sends m to s and waits for its result. ctx bounds the wait; a Reserve
// whose caller gave up after sending is released by a helper goroutine.
// With sendAnyway, m is queued even when ctx is already done.
func (l *Limiter) call(ctx context.Context, s *shard, m message, sendAnyway bool) (result, error) {
	return l.callWithin(ctx, 0, s, m, sendAnyway)
}

// callWithin is call that also gives up after wait (0: no limit but ctx's),
// with context.DeadlineExceeded. The wait is a pooled timer: a context per
// call would cost allocations and its parent's lock on every request.
func (l *Limiter) callWithin(ctx context.Context, wait time.Duration, s *shard, m message, sendAnyway bool) (result, error) {
	select {
	case <-l.closing:
		return result{}, ErrClosed
	default:
	}
	var expired <-chan time.Time
	if wait > 0 {
		t := l.timers.Get().(*time.Timer)
		t.Reset(wait)
		// Stopped, a timer's channel holds nothing stale (Go 1.23): the next
		// Reset starts clean.
		defer func() { t.Stop(); l.timers.Put(t) }()
		expired = t.C
	}
	ch := l.replies.Get().(chan result)
	m.reply = ch
	done := ctx.Done()
	if sendAnyway {
		done, expired = nil, nil
	}
	select {
	case s.inbox <- m:
	case <-done:
		l.replies.Put(ch)
		return result{}, ctx.Err()
	case <-expired:
		l.replies.Put(ch)
		return result{}, context.DeadlineExceeded
	case <-l.closing:
		l.replies.Put(ch)
		return result{}, ErrClosed
	}
	err := error(nil)
	select {
	case r := <-ch:
		l.replies.Put(ch)
		return r, nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-expired:
		err = context.DeadlineExceeded
	case <-l.stop:
		return result{}, ErrClosed
	}
	if m.kind == msgReserve {
		go l.release(s, ch)
	}
	return result{}, err
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
// is unlimited (Allowed, Limit 0) but its usage is still counted. For a
// consumer without any limit, the reservation is made without asking its
// shard and charges nothing until it is settled (see the package doc). When the
// Decision is not Allowed, the Reservation is the zero one. Errors: negative
// tokens, ctx done, or ErrClosed.
func (l *Limiter) Reserve(ctx context.Context, consumer, key string, tokens int64) (Reservation, Decision, error) {
	return l.ReserveWithin(ctx, 0, consumer, key, tokens)
}

// ReserveWithin is Reserve that also gives up after wait (0: only when ctx
// is done), with an error wrapping context.DeadlineExceeded; a reservation
// made after the caller gave up is released, as for a done ctx. It bounds
// the wait without a context per call.
func (l *Limiter) ReserveWithin(ctx context.Context, wait time.Duration, consumer, key string, tokens int64) (Reservation, Decision, error) {
	if tokens < 0 {
		return Reservation{}, Decision{}, fmt.Errorf("quota: reserve %d tokens: must not be negative", tokens)
	}
	if l.unlimited(consumer) {
		if err := l.usable(ctx); err != nil {
			return Reservation{}, Decision{}, fmt.Errorf("quota: reserve for %q: %w", consumer, err)
		}
		// What the shard would answer, without asking it: nothing can be
		// refused, and the usage is recorded when the reservation is settled.
		return Reservation{consumer: consumer, key: key, tokens: min(tokens, MaxTokens), unmetered: &unmetered{bucket: bucketOf(l.now())}},
			Decision{Allowed: true}, nil
	}
	tokens = min(tokens, MaxTokens)
	s := l.shardOf(consumer, key)
	if res, d, g := s.draw(consumer, key, tokens, l.now(), false); g != nil {
		if err := l.usable(ctx); err != nil {
			// Taken, but the caller gave up (or Close runs, when SettleAsync
			// would drop the release): the call is not forwarded.
			s.giveBack(res, g)
			return Reservation{}, Decision{}, fmt.Errorf("quota: reserve for %q: %w", consumer, err)
		}
		return res, d, nil
	}
	r, err := l.callWithin(ctx, wait, s, message{kind: msgReserve, consumer: consumer, key: key, tokens: tokens}, false)
	if err != nil {
		return Reservation{}, Decision{}, fmt.Errorf("quota: reserve for %q: %w", consumer, err)
	}
	return r.res, r.dec, nil
}

// ReserveSpare reserves tokens for the counter key of consumer only if that
// needs no round trip to its shard (a grant of the counter holds them, see
// grant.go) and leaves the counter's window and period under half of their
// limits; otherwise it reserves nothing and returns false. It is for a
// caller that would rather reserve a generous bound at once than count
// exactly first: where a bound larger than the estimate could refuse
// anything, near a limit, it is refused and the caller counts. A consumer
// without limits gets false (Reserve answers it without a round trip).
func (l *Limiter) ReserveSpare(consumer, key string, tokens int64) (Reservation, Decision, bool) {
	if tokens < 0 || tokens > MaxTokens || l.usable(context.Background()) != nil {
		return Reservation{}, Decision{}, false
	}
	s := l.shardOf(consumer, key)
	r, d, g := s.draw(consumer, key, tokens, l.now(), true)
	if g == nil {
		return Reservation{}, Decision{}, false
	}
	if l.usable(context.Background()) != nil {
		// Taken while Close ran, which would drop its settlement (as in
		// ReserveWithin): nothing is admitted.
		s.giveBack(r, g)
		return Reservation{}, Decision{}, false
	}
	return r, d, true
}

// Shrink brings what a reservation taken by ReserveSpare holds down to
// tokens before it is settled, as a settlement to tokens would, without
// settling it: what it frees goes back to the counter's grant when the
// grant it was taken from is still live, else the shard refunds the window
// and period through its mailbox (see SettleAsync). The later Settle or
// SettleAsync then replaces tokens, not the original estimate, by the
// actual charge. It is for a caller that reserved a bound of its estimate
// and has counted the estimate since: the window then holds what counting
// first would have reserved. It reports whether it shrank anything: false
// for a reservation not taken from a grant, one already settled, or tokens
// not below what it holds. Any goroutine; it never waits for the shard.
func (l *Limiter) Shrink(r Reservation, tokens int64) bool {
	if r.drawn == nil || tokens < 0 {
		return false
	}
	select {
	case <-l.closing:
		return false
	default:
	}
	for {
		held := r.drawn.held.Load()
		if held == drawnSettled || tokens >= held {
			return false
		}
		if r.drawn.held.CompareAndSwap(held, tokens) {
			// A settlement of held to tokens that leaves the reservation
			// open: charges are additive, so it may be applied before or
			// after the final one.
			l.post(settlement{consumer: r.consumer, key: r.key, tokens: tokens, estimate: held,
				bucket: r.bucket, periodStart: r.periodStart, drawn: true, at: r.drawn.at})
			return true
		}
	}
}

// unlimited reports whether consumer's counters have no limit at all (no
// TPM, no quota, no period): a Reserve cannot be refused and there is no
// headroom to report, so neither needs a round trip to the shard.
func (l *Limiter) unlimited(consumer string) bool {
	return (*l.effective.Load())[consumer] == Limits{}
}

// Unlimited reports whether consumer has no limit at all right now (no TPM,
// no quota, no period; or it is not configured): Reserve cannot refuse it
// and makes its reservations without a round trip to a shard. A limit set
// later (SetLimits, ApplyLimits, SetConfig) counts from then on.
func (l *Limiter) Unlimited(consumer string) bool { return l.unlimited(consumer) }

// Headroom returns the TPM limit and what is left of it for the counter key
// of consumer, charging nothing: what a request that needs no tokens (a cache
// hit) reports in its headers.
func (l *Limiter) Headroom(ctx context.Context, consumer, key string) (Decision, error) {
	if l.unlimited(consumer) {
		if err := l.usable(ctx); err != nil {
			return Decision{}, fmt.Errorf("quota: headroom of %q: %w", consumer, err)
		}
		return Decision{Allowed: true}, nil // no limit: nothing to report
	}
	s := l.shardOf(consumer, key)
	if g := s.grantOf(consumer, key, l.now()); g != nil && !g.closed.Load() {
		if err := l.usable(ctx); err != nil {
			return Decision{}, fmt.Errorf("quota: headroom of %q: %w", consumer, err)
		}
		if left := g.credit.Load(); left >= 0 {
			return g.decision(left), nil
		}
	}
	r, err := l.call(ctx, s, message{kind: msgHeadroom, consumer: consumer, key: key}, false)
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
	s := l.shardOf(r.consumer, r.key)
	if r.unmetered != nil || r.drawn != nil {
		st, ok := r.settlement(actual)
		if !ok {
			return Decision{}
		}
		l.post(st)
		// Served after the mailbox: the Decision counts the settlement.
		res, err := l.call(ctx, s, message{kind: msgHeadroom, consumer: r.consumer, key: r.key}, false)
		if err != nil {
			return Decision{}
		}
		return res.dec
	}
	if st, ok := r.settlement(actual); !ok || actual != r.tokens {
		// Queued as SettleAsync queues it: above the estimate, it closes the
		// counter's grant even if ctx ends before the shard answers; below,
		// it gives what it frees to the grant (see shard.post). The
		// Headroom is served after the mailbox. Settled already: only the
		// Decision.
		if ok {
			l.post(st)
		}
		res, err := l.call(ctx, s, message{kind: msgHeadroom, consumer: r.consumer, key: r.key}, false)
		if err != nil {
			return Decision{}
		}
		return res.dec
	}
	res, err := l.call(ctx, s, message{kind: msgSettle, consumer: r.consumer, key: r.key, id: r.id, tokens: actual}, true)
	if err != nil {
		return Decision{}
	}
	return res.dec
}

// SettleAsync is Settle without waiting: the settlement is queued in the
// reservation's shard's mailbox and SettleAsync returns at once, never
// blocking on the shard and without waking its goroutine. It is for callers
// that compute the headroom they report themselves (see
// Decision.AfterSettle) and must not hold an answer for a round trip to the
// actor. The shard applies its mailbox before any message it serves, so a
// Reserve, Settle, Status, snapshot or Outgoing asked after SettleAsync
// returned sees the settlement, and a timer applies it within 20
// milliseconds when nothing is asked; what a crash can lose is what it can
// lose of a Settle: the counters since the last snapshot, which Close writes
// with every settlement queued before it. After Close the settlement is
// dropped, as Settle's is.
func (l *Limiter) SettleAsync(r Reservation, actual int64) {
	if !r.Valid() {
		return
	}
	select {
	case <-l.closing:
		return
	default:
	}
	st, ok := r.settlement(min(max(actual, 0), MaxTokens))
	if !ok {
		return
	}
	l.post(st)
}

// post queues st in its shard's mailbox. A settlement that charges more
// than its estimate closes the counter's grant, so that no Reserve is
// answered without the shard before it is applied; one below its estimate,
// of a reservation charged where the counter's grant is, gives what it
// frees to the grant at once, so that a Reserve taken from the grant next
// admits against it, as the shard would (see shard.post and grant.give).
func (l *Limiter) post(st settlement) {
	l.shardOf(st.consumer, st.key).post(st)
}

// settlement is the mailbox's settlement of r to actual, false if a copy of
// r was settled already.
func (r Reservation) settlement(actual int64) (settlement, bool) {
	st := settlement{consumer: r.consumer, key: r.key, id: r.id, tokens: actual, estimate: r.tokens, bucket: r.bucket, periodStart: r.periodStart}
	switch {
	case r.unmetered != nil:
		if !r.unmetered.settled.CompareAndSwap(false, true) {
			return settlement{}, false
		}
		st.bucket, st.estimate = r.unmetered.bucket, 0 // nothing charged yet
	case r.drawn != nil:
		held := r.drawn.held.Swap(drawnSettled)
		if held == drawnSettled {
			return settlement{}, false
		}
		st.drawn, st.at, st.estimate = true, r.drawn.at, held
	case r.settled != nil:
		if !r.settled.CompareAndSwap(false, true) {
			return settlement{}, false
		}
	}
	return st, true
}

// collected is what collect gathers from the shards.
type collected struct {
	views    []keyView         // unordered
	limits   map[string]Limits // as shard 0 holds them
	refusals map[string]int64  // summed over the shards
}

// collect gathers views of consumer's counters ("" = all), the limits and
// the share refusals from every shard.
func (l *Limiter) collect(ctx context.Context, consumer string) (collected, error) {
	all := collected{refusals: map[string]int64{}}
	for i, s := range l.shards {
		r, err := l.call(ctx, s, message{kind: msgCollect, consumer: consumer, flag: i == 0}, false)
		if err != nil {
			return collected{}, err
		}
		all.views = append(all.views, r.views...)
		if i == 0 {
			all.limits = r.limits
		}
		for k, n := range r.refusals {
			all.refusals[k] += n
		}
	}
	return all, nil
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
	if lim.Period != NoPeriod {
		_, end := lim.Period.Bounds(now)
		st.QuotaResetsAt = &end
	}
	for _, v := range views {
		if v.consumer != consumer {
			continue
		}
		if v.key == "" {
			st.TPMUsed, st.QuotaUsed = v.used, v.quotaUsed
			maps.Copy(st.ByNode, v.byNode)
			continue
		}
		st.Keys = append(st.Keys, KeyStatus{Key: v.key, TPMUsed: v.used, TPMRemaining: lim.left(v.used), QuotaUsed: v.quotaUsed})
	}
	st.TPMRemaining = lim.left(st.TPMUsed)
	slices.SortFunc(st.Keys, func(a, b KeyStatus) int { return cmp.Compare(a.Key, b.Key) })
	return st
}

// Status returns a configured consumer's limits and usage; false if the
// consumer is not configured, ctx is done or the Limiter is closed.
func (l *Limiter) Status(ctx context.Context, consumer string) (Status, bool) {
	if _, ok := l.configured()[consumer]; !ok || isBudget(consumer) {
		return Status{}, false
	}
	all, err := l.collect(ctx, consumer)
	if err != nil {
		return Status{}, false
	}
	st := l.status(consumer, all.limits[consumer], all.views, l.now())
	st.ShareRefusals = all.refusals[consumer]
	l.withBudget(ctx, &st)
	return st, true
}

// List returns the Status of every configured consumer, sorted by name (nil
// if ctx is done or the Limiter is closed).
func (l *Limiter) List(ctx context.Context) []Status {
	all, err := l.collect(ctx, "")
	if err != nil {
		return nil
	}
	byConsumer := map[string][]keyView{}
	for _, v := range all.views {
		byConsumer[v.consumer] = append(byConsumer[v.consumer], v)
	}
	now := l.now()
	names := slices.Sorted(maps.Keys(l.configured()))
	out := make([]Status, 0, len(names))
	for _, name := range names {
		if isBudget(name) {
			continue // shown in its consumer's Status
		}
		st := l.status(name, all.limits[name], byConsumer[name], now)
		st.ShareRefusals = all.refusals[name]
		if b := BudgetName(name); all.limits[b].QuotaTokens > 0 {
			st.Budget = budgetOf(l.status(b, all.limits[b], byConsumer[b], now))
		}
		out = append(out, st)
	}
	return out
}

// SetLimits changes a configured consumer's TPM limit and/or quota tokens
// (nil = unchanged; 0 = unlimited) at run time. The change is written to the
// database before SetLimits returns and outlives restarts, taking precedence
// over the configuration for the fields it set. Each field set is stamped
// with the time and this node's name, so that the change, carried to peers
// by Outgoing, wins over older ones everywhere (ApplyLimits). The consumer's
// period cannot be changed here. Errors wrap ErrUnknownConsumer for a
// consumer that is not configured and ErrInvalidLimits for negative values
// or a quota for a consumer without a period; others are database or
// context failures.
func (l *Limiter) SetLimits(ctx context.Context, consumer string, tpm, quotaTokens *int64) (Status, error) {
	if _, ok := l.configured()[consumer]; !ok || isBudget(consumer) {
		return Status{}, fmt.Errorf("quota: set limits of %q: %w", consumer, ErrUnknownConsumer)
	}
	if err := l.usable(ctx); err != nil {
		return Status{}, fmt.Errorf("quota: set limits of %q: %w", consumer, err)
	}
	l.setMu.Lock()
	defer l.setMu.Unlock()
	rec := l.records[consumer].clone()
	rec.Consumer = consumer
	// Later than any version seen, even if this node's clock is behind the
	// one that made the current value: a change made here must win.
	now := l.now().UnixNano()
	if tpm != nil {
		rec.TPM, rec.TPMAt, rec.TPMOrigin = ptrTo(*tpm), max(now, rec.TPMAt+1), l.node
	}
	if quotaTokens != nil {
		rec.QuotaTokens, rec.QuotaAt, rec.QuotaOrigin = ptrTo(*quotaTokens), max(now, rec.QuotaAt+1), l.node
	}
	base, ok := l.configured()[consumer]
	if !ok { // removed by SetConfig meanwhile
		return Status{}, fmt.Errorf("quota: set limits of %q: %w", consumer, ErrUnknownConsumer)
	}
	lim := rec.apply(base)
	if err := lim.validate(); err != nil {
		return Status{}, fmt.Errorf("quota: set limits of %q: %w: %w", consumer, ErrInvalidLimits, err)
	}
	if err := l.storeLimits([]LimitRecord{rec}); err != nil {
		return Status{}, fmt.Errorf("quota: set limits of %q: %w", consumer, err)
	}
	l.records[consumer] = rec
	l.limitsOut[consumer] = resendRounds
	if err := l.broadcastLimits(ctx, map[string]Limits{consumer: lim}); err != nil {
		return Status{}, fmt.Errorf("quota: set limits of %q: %w", consumer, err)
	}
	// The change is stored and applied: report it even if the caller's ctx ended.
	st, ok := l.Status(context.WithoutCancel(ctx), consumer)
	if !ok {
		return Status{}, fmt.Errorf("quota: set limits of %q: status: %w", consumer, cmp.Or(ctx.Err(), ErrClosed))
	}
	return st, nil
}

// configured returns the configured consumers' limits; the map must not be changed.
func (l *Limiter) configured() map[string]Limits { return *l.config.Load() }

// SetConfig replaces the configured consumers and their limits (a
// configuration reload). Run-time changes (SetLimits, ApplyLimits) keep their
// precedence over the configuration for the fields they set, as at Open; a
// consumer that is no longer configured is no longer listed and cannot have
// its limits changed. Counters and usage are kept. Nothing changes when an
// error is returned: ErrInvalidLimits for invalid limits, ctx done or
// ErrClosed.
func (l *Limiter) SetConfig(ctx context.Context, limits map[string]Limits) error {
	if err := l.usable(ctx); err != nil {
		return fmt.Errorf("quota: set configuration: %w", err)
	}
	config := make(map[string]Limits, len(limits))
	effective := make(map[string]Limits, len(limits))
	l.setMu.Lock()
	defer l.setMu.Unlock()
	for name, lim := range limits {
		if err := lim.validate(); err != nil {
			return fmt.Errorf("quota: consumer %q: %w: %w", name, ErrInvalidLimits, err)
		}
		config[name] = lim
		eff := lim
		if rec, ok := l.records[name]; ok {
			eff = rec.apply(lim)
			if eff.validate() != nil {
				// A run-time quota for a consumer whose period the file
				// removed: the file's limits apply until a valid change.
				eff = lim
			}
		}
		effective[name] = eff
	}
	l.config.Store(&config)
	return l.broadcastLimits(ctx, effective)
}

// broadcastLimits gives every shard the changed effective limits. The
// messages are queued even if ctx is done: the change is already persisted
// and every shard must see it.
func (l *Limiter) broadcastLimits(ctx context.Context, changed map[string]Limits) error {
	// Mirrored first: a consumer given a limit is no longer reserved for
	// without its shard once this returns (nor while it runs, at worst
	// against the old limits, as a Reserve queued before the change is).
	mirror := maps.Clone(*l.effective.Load())
	maps.Copy(mirror, changed)
	l.effective.Store(&mirror)
	for _, s := range l.shards {
		if _, err := l.call(context.WithoutCancel(ctx), s, message{kind: msgSetLimits, limits: changed}, true); err != nil {
			return err
		}
	}
	return nil
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
		for _, s := range l.shards {
			s.stopMail()
		}
	})
	return l.closeErr
}
