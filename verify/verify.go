package verify

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// Judge decides whether one cached answer serves two requests: it sees both
// dialog texts verbatim and answers yes (same) or no. tokens is what the
// call cost (prompt + completion), metered against the budget.
type Judge interface {
	Judge(ctx context.Context, query, candidate string) (same bool, tokens int64, err error)
}

// Verdict is one judged candidate.
type Verdict struct {
	Key      string  // partition key (Key)
	Route    string  // for the per-route precision estimate
	Distance float32 // cosine distance of the candidate
	Same     bool    // the judge's answer
	Audit    bool    // a sampled hit served without a judge
	// Soft: the guard refused the candidate on wording only and the judge
	// settled it (Settle). Such verdicts never move a learned threshold,
	// which vouches for candidates the guard accepts.
	Soft bool
	At   time.Time
}

// Store persists and shares verdicts. Save may be slow (a disk write, a
// replication); Load returns every verdict known, from every node.
type Store interface {
	Save(ctx context.Context, v Verdict) error
	Load(ctx context.Context) ([]Verdict, error)
}

// Options configure a Verifier.
type Options struct {
	Judge Judge
	Store Store // nil: verdicts live in memory only
	// MaxErrorRate is the target share of wrong semantic hits (default 0.01).
	MaxErrorRate float64
	// MinVerdicts below a distance before it can be vouched for (default 20).
	MinVerdicts int
	// AuditRate is the share of hits served without a judge that are judged
	// in the background (default 0.02; negative = none).
	AuditRate float64
	// TokensPerMinute caps the judge's tokens (default 20000): past it,
	// candidates that need a judge are misses until the minute ends.
	TokensPerMinute int64
	// Timeout bounds one judge call (default 2s).
	Timeout time.Duration
	// Reload is how often the Store's verdicts are read again (default 1s).
	Reload time.Duration
	Now    func() time.Time
	Rand   func() float64 // [0,1), for audit sampling
	Logger *slog.Logger
}

// Stats is what /admin/cache/stats and /metrics show of verification.
type Stats struct {
	Judged     int64 `json:"judged"`      // judge calls that gave a verdict
	Confirmed  int64 `json:"confirmed"`   // verdicts "yes" on candidates that needed one (verified hits)
	Settled    int64 `json:"settled"`     // of Confirmed, candidates the guard had refused on wording (Settle: both orders said yes)
	Refused    int64 `json:"refused"`     // verdicts "no"
	Failed     int64 `json:"failed"`      // judge errors and timeouts (misses)
	OverBudget int64 `json:"over_budget"` // candidates not judged for lack of budget (misses)
	Tokens     int64 `json:"tokens"`      // judge tokens spent
	// Routes: per route, audited hits and the online precision estimate
	// (audited "yes" / audited), over every node's audits.
	Routes map[string]RouteStats `json:"routes"`
	// Thresholds learned per partition key.
	Thresholds map[string]float32 `json:"thresholds"`
}

// RouteStats is the audit of one route's hits.
type RouteStats struct {
	Audited   int     `json:"audited"`
	Right     int     `json:"right"`
	Precision float64 `json:"precision"` // Right / Audited; 1 with no audit yet
}

// Verifier decides semantic candidates with a judge. Methods are safe for
// concurrent use.
type Verifier struct {
	o     Options
	inbox chan func(*state)
	ctx   context.Context
	stop  context.CancelFunc
	wg    sync.WaitGroup
}

// state is owned by the run goroutine.
type state struct {
	local      []Verdict            // made here, not yet seen back from the Store
	stored     []Verdict            // last Load
	byKey      map[string][]Verdict // stored and local verdicts per key, by distance
	thresholds map[string]float32
	routes     map[string]RouteStats
	minute     int64 // Unix minute of spent
	spent      int64
	stats      Stats
}

// Key names the partition whose verdicts calibrate a candidate: its cache
// partition and route.
func Key(partition, route string) string { return partition + "\x00" + route }

// New starts a Verifier; Close stops it.
func New(o Options) (*Verifier, error) {
	if o.Judge == nil {
		return nil, errors.New("verify: no judge")
	}
	if o.MaxErrorRate <= 0 || o.MaxErrorRate >= 1 {
		o.MaxErrorRate = cmp.Or(o.MaxErrorRate, 0.01)
		if o.MaxErrorRate <= 0 || o.MaxErrorRate >= 1 {
			return nil, errors.New("verify: max error rate must be in (0, 1)")
		}
	}
	o.MinVerdicts = cmp.Or(o.MinVerdicts, 20)
	if o.AuditRate == 0 {
		o.AuditRate = 0.02
	}
	o.TokensPerMinute = cmp.Or(o.TokensPerMinute, 20000)
	o.Timeout = cmp.Or(o.Timeout, 2*time.Second)
	o.Reload = cmp.Or(o.Reload, time.Second)
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Float64
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	v := &Verifier{o: o, inbox: make(chan func(*state), 64)}
	v.ctx, v.stop = context.WithCancel(context.Background())
	st := &state{byKey: map[string][]Verdict{}, thresholds: map[string]float32{}, routes: map[string]RouteStats{}}
	v.wg.Add(1)
	go func() {
		defer v.wg.Done()
		v.run(st)
	}()
	if o.Store != nil {
		v.wg.Add(1)
		go func() {
			defer v.wg.Done()
			v.reloadLoop()
		}()
	}
	return v, nil
}

// Close stops the actor and the reloader and waits for background audits.
func (v *Verifier) Close() {
	v.stop()
	v.wg.Wait()
}

func (v *Verifier) run(st *state) {
	for {
		select {
		case <-v.ctx.Done():
			return
		case f := <-v.inbox:
			f(st)
		}
	}
}

// do runs f on the actor and waits; false when the Verifier is closed or
// ctx ended first.
func (v *Verifier) do(ctx context.Context, f func(*state)) bool {
	done := make(chan struct{}, 1)
	select {
	case v.inbox <- func(s *state) { f(s); done <- struct{}{} }:
	case <-ctx.Done():
		return false
	case <-v.ctx.Done():
		return false
	}
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	case <-v.ctx.Done():
		return false
	}
}

// Vouched reports whether the learned threshold of key covers distance d:
// the candidate may be served without a judge.
func (v *Verifier) Vouched(ctx context.Context, key string, d float32) bool {
	ok := false
	v.do(ctx, func(s *state) {
		t, has := s.thresholds[key]
		ok = has && d <= t
	})
	return ok
}

// Threshold is the learned threshold of key, and whether there is one.
func (v *Verifier) Threshold(ctx context.Context, key string) (float32, bool) {
	var t float32
	var has bool
	v.do(ctx, func(s *state) { t, has = s.thresholds[key] })
	return t, has
}

// Confirm asks the judge whether the candidate serves the query, within
// Timeout and the token budget, and records the verdict. It returns true
// only on a "yes"; a failing, slow or over-budget judge is a no.
func (v *Verifier) Confirm(ctx context.Context, key, route, query, candidate string, d float32) bool {
	same, ok := v.judge(ctx, key, route, query, candidate, d, false, false)
	return ok && same
}

// Settle is Confirm for a candidate the match guard refused on wording
// only (guard.Judgeable: a content word without a WordNet link, a
// qualifier, word order, a pronoun, quantifier or comparative on one side
// only): no learned threshold vouches for such a candidate, so the judge is
// always asked, and its verdicts do not move the threshold of key. It is
// asked twice at once, with the two texts in either order, and both
// answers must be yes: such candidates are wrong more often than the ones
// the guard accepts, and a judge's slips (position bias, noise) seldom
// repeat in both orders. The two calls run in parallel, so the request
// waits for one judge call's time, and both count against the budget.
func (v *Verifier) Settle(ctx context.Context, key, route, query, candidate string, d float32) bool {
	var swapped, swappedOK bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		swapped, swappedOK = v.judge(ctx, key, route, candidate, query, d, false, true)
	}()
	same, ok := v.judge(ctx, key, route, query, candidate, d, false, true)
	<-done
	if !ok || !same || !swappedOK || !swapped {
		return false
	}
	v.do(context.WithoutCancel(ctx), func(s *state) {
		s.stats.Confirmed++
		s.stats.Settled++
	})
	return true
}

// MaybeAudit samples a hit served without a judge (AuditRate) and judges it
// in the background; it returns at once.
func (v *Verifier) MaybeAudit(key, route, query, candidate string, d float32) {
	if v.o.AuditRate <= 0 || v.o.Rand() >= v.o.AuditRate || v.ctx.Err() != nil {
		return
	}
	v.wg.Add(1)
	go func() {
		defer v.wg.Done()
		v.judge(v.ctx, key, route, query, candidate, d, true, false)
	}()
}

// judge calls the judge if the budget allows and records the verdict; ok
// is false when there is no verdict.
func (v *Verifier) judge(ctx context.Context, key, route, query, candidate string, d float32, audit, soft bool) (same, ok bool) {
	allowed := false
	if !v.do(ctx, func(s *state) {
		m := v.o.Now().Unix() / 60
		if m != s.minute {
			s.minute, s.spent = m, 0
		}
		allowed = s.spent < v.o.TokensPerMinute
		if !allowed {
			s.stats.OverBudget++
		}
	}) || !allowed {
		return false, false
	}
	jctx, cancel := context.WithTimeout(ctx, v.o.Timeout)
	same, tokens, err := v.o.Judge.Judge(jctx, query, candidate)
	cancel()
	vd := Verdict{Key: key, Route: route, Distance: d, Same: same, Audit: audit, Soft: soft, At: v.o.Now()}
	v.do(context.WithoutCancel(ctx), func(s *state) {
		s.spent += max(tokens, 0)
		s.stats.Tokens += max(tokens, 0)
		if err != nil {
			s.stats.Failed++
			return
		}
		s.stats.Judged++
		if same {
			if !audit && !soft { // Settle counts its hit once both orders agree
				s.stats.Confirmed++
			}
		} else {
			s.stats.Refused++
		}
		s.local = append(s.local, vd)
		v.add(s, vd)
	})
	if err != nil {
		v.o.Logger.Warn("cache judge failed; candidate is a miss", "route", route, "err", err)
		return false, false
	}
	if v.o.Store != nil {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		if err := v.o.Store.Save(sctx, vd); err != nil {
			v.o.Logger.Warn("saving a cache verdict failed", "err", err)
		}
		cancel()
	}
	return same, true
}

// reloadLoop reads the Store's verdicts every Reload interval.
func (v *Verifier) reloadLoop() {
	t := time.NewTicker(v.o.Reload)
	defer t.Stop()
	for {
		v.Reload(v.ctx)
		select {
		case <-v.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Reload reads every verdict from the Store now (also called on a timer).
func (v *Verifier) Reload(ctx context.Context) {
	if v.o.Store == nil {
		return
	}
	all, err := v.o.Store.Load(ctx)
	if err != nil {
		if ctx.Err() == nil {
			v.o.Logger.Warn("loading cache verdicts failed", "err", err)
		}
		return
	}
	v.do(ctx, func(s *state) {
		s.stored = all
		// Local verdicts the Store now holds are counted once.
		seen := map[Verdict]bool{}
		for _, x := range all {
			seen[x] = true
		}
		s.local = slices.DeleteFunc(s.local, func(x Verdict) bool { return seen[x] })
		v.recompute(s)
	})
}

// Stats returns the counters, audit estimates and learned thresholds.
func (v *Verifier) Stats(ctx context.Context) Stats {
	var out Stats
	v.do(ctx, func(s *state) {
		out = s.stats
		out.Routes = make(map[string]RouteStats, len(s.routes))
		for k, r := range s.routes {
			out.Routes[k] = r
		}
		out.Thresholds = make(map[string]float32, len(s.thresholds))
		for k, t := range s.thresholds {
			out.Thresholds[k] = t
		}
	})
	return out
}

// recompute derives thresholds and audit estimates from every verdict.
func (v *Verifier) recompute(s *state) {
	clear(s.byKey)
	clear(s.routes)
	clear(s.thresholds)
	for _, list := range [][]Verdict{s.stored, s.local} {
		for _, x := range list {
			v.audited(s, x)
			if !x.Soft {
				s.byKey[x.Key] = append(s.byKey[x.Key], x)
			}
		}
	}
	for k, vs := range s.byKey {
		slices.SortFunc(vs, byDistance)
		if t, ok := learnSorted(vs, v.o.MaxErrorRate, v.o.MinVerdicts); ok {
			s.thresholds[k] = t
		}
	}
}

// add counts one new verdict: its key's threshold is learned again.
func (v *Verifier) add(s *state, x Verdict) {
	v.audited(s, x)
	if x.Soft {
		return
	}
	vs := s.byKey[x.Key]
	i, _ := slices.BinarySearchFunc(vs, x, byDistance)
	vs = slices.Insert(vs, i, x)
	s.byKey[x.Key] = vs
	if t, ok := learnSorted(vs, v.o.MaxErrorRate, v.o.MinVerdicts); ok {
		s.thresholds[x.Key] = t
	} else {
		delete(s.thresholds, x.Key)
	}
}

// audited counts x in its route's audit estimate when it is an audit.
func (v *Verifier) audited(s *state, x Verdict) {
	if !x.Audit {
		return
	}
	r := s.routes[x.Route]
	r.Audited++
	if x.Same {
		r.Right++
	}
	r.Precision = float64(r.Right) / float64(r.Audited)
	s.routes[x.Route] = r
}

func byDistance(a, b Verdict) int { return cmp.Compare(a.Distance, b.Distance) }

// Learn returns the largest verdict distance t such that the verdicts at
// distance ≤ t number at least minN and the 95 % Wilson upper bound of
// their share of "no" is at most maxErr; ok is false when there is none.
func Learn(vs []Verdict, maxErr float64, minN int) (t float32, ok bool) {
	sorted := slices.Clone(vs)
	slices.SortFunc(sorted, byDistance)
	return learnSorted(sorted, maxErr, minN)
}

func learnSorted(sorted []Verdict, maxErr float64, minN int) (t float32, ok bool) {
	wrong := 0
	for i, x := range sorted {
		if !x.Same {
			wrong++
		}
		n := i + 1
		if i+1 < len(sorted) && sorted[i+1].Distance == x.Distance {
			continue // ties: all verdicts at a distance count together
		}
		if n >= minN && wilsonUpper(wrong, n) <= maxErr {
			t, ok = x.Distance, true
		}
	}
	return t, ok
}

// wilsonUpper is the one-sided 95 % Wilson score upper bound of k/n.
func wilsonUpper(k, n int) float64 {
	const z = 1.645
	p := float64(k) / float64(n)
	nn := float64(n)
	den := 1 + z*z/nn
	centre := p + z*z/(2*nn)
	margin := z * math.Sqrt(p*(1-p)/nn+z*z/(4*nn*nn))
	return (centre + margin) / den
}
