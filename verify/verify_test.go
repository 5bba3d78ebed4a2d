package verify

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// oracle judges "yes" below a true boundary, with a share of flipped answers.
type oracle struct {
	boundary float32
	noise    float64
	rng      *rand.Rand
	mu       sync.Mutex
	calls    int
	dist     map[string]float32
}

func (o *oracle) Judge(_ context.Context, q, c string) (bool, int64, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls++
	same := o.dist[q] <= o.boundary
	if o.rng.Float64() < o.noise {
		same = !same
	}
	return same, 30, nil
}

// memStore is a Store shared by "nodes".
type memStore struct {
	mu sync.Mutex
	vs []Verdict
}

func (m *memStore) Save(_ context.Context, v Verdict) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.vs = append(m.vs, v)
	return nil
}

func (m *memStore) Load(context.Context) ([]Verdict, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Verdict(nil), m.vs...), nil
}

// simulate asks n candidates at uniform distances in [0, 0.3) and returns
// how many were served and how many of those were wrong (beyond the
// boundary), as the node does: vouched → served, else judge.
func simulate(t *testing.T, v *Verifier, o *oracle, n int, seed uint64) (served, wrong, vouched int) {
	t.Helper()
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(seed, 1))
	key := Key("team-a", "gpt-4o")
	for i := range n {
		d := float32(rng.Float64() * 0.3)
		q := "q" + string(rune('a'+i%26)) + time.Duration(i).String()
		o.mu.Lock()
		o.dist[q] = d
		o.mu.Unlock()
		ok := v.Vouched(ctx, key, d)
		if !ok {
			ok = v.Confirm(ctx, key, "gpt-4o", q, "c", d)
		} else {
			vouched++
			if d > o.boundary {
				wrong++
			}
		}
		if ok {
			served++
		}
	}
	return served, wrong, vouched
}

func TestThresholdConvergesBelowTheBoundary(t *testing.T) {
	o := &oracle{boundary: 0.12, rng: rand.New(rand.NewPCG(1, 2)), dist: map[string]float32{}}
	v, err := New(Options{Judge: o, MaxErrorRate: 0.01, AuditRate: -1, TokensPerMinute: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	simulate(t, v, o, 3000, 7)
	th, ok := v.Threshold(t.Context(), Key("team-a", "gpt-4o"))
	if !ok || th > 0.12 || th < 0.09 {
		t.Fatalf("learned threshold %v (ok %v), want just below the true boundary 0.12", th, ok)
	}
	calls := o.calls
	simulate(t, v, o, 1000, 8)
	if share := float64(o.calls-calls) / 1000; share > 0.7 {
		t.Errorf("after convergence %.2f of candidates still need the judge, want the vouched ones (~0.35) not to", share)
	}
}

func TestNoisyJudgeKeepsTheErrorBound(t *testing.T) {
	for _, tc := range []struct{ noise, maxErr float64 }{{0.05, 0.10}, {0.10, 0.15}} {
		o := &oracle{boundary: 0.12, noise: tc.noise, rng: rand.New(rand.NewPCG(3, 4)), dist: map[string]float32{}}
		v, err := New(Options{Judge: o, MaxErrorRate: tc.maxErr, AuditRate: -1, TokensPerMinute: 1 << 40})
		if err != nil {
			t.Fatal(err)
		}
		simulate(t, v, o, 3000, 9)
		_, wrong, vouched := simulate(t, v, o, 3000, 10)
		v.Close()
		if vouched < 300 {
			t.Errorf("noise %.2f: only %d of 3000 candidates vouched for: the thresholds learned nothing", tc.noise, vouched)
		}
		// The error the thresholds add: vouched hits beyond the true boundary.
		if rate := float64(wrong) / float64(max(vouched, 1)); rate > tc.maxErr+0.02 {
			t.Errorf("noise %.2f: %d of %d vouched hits wrong (%.3f), want ≤ %.2f", tc.noise, wrong, vouched, rate, tc.maxErr+0.02)
		}
	}
}

type failing struct{ err error }

func (f failing) Judge(ctx context.Context, _, _ string) (bool, int64, error) {
	if f.err == nil {
		<-ctx.Done()
		return true, 0, ctx.Err()
	}
	return true, 0, f.err
}

func TestFailingOrSlowJudgeIsAMiss(t *testing.T) {
	for name, j := range map[string]Judge{"error": failing{errors.New("backend down")}, "slow": failing{}} {
		v, err := New(Options{Judge: j, Timeout: 20 * time.Millisecond, AuditRate: -1})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if v.Confirm(t.Context(), "k", "r", "a", "b", 0.1) {
			t.Errorf("%s judge: a candidate was confirmed", name)
		}
		if time.Since(start) > 2*time.Second {
			t.Errorf("%s judge: Confirm took %v", name, time.Since(start))
		}
		if st := v.Stats(t.Context()); st.Failed != 1 || st.Judged != 0 {
			t.Errorf("%s judge: stats %+v", name, st)
		}
		v.Close()
	}
}

func TestJudgeBudget(t *testing.T) {
	o := &oracle{boundary: 1, rng: rand.New(rand.NewPCG(5, 6)), dist: map[string]float32{}}
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	v, err := New(Options{Judge: o, TokensPerMinute: 60, AuditRate: -1, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	yes := 0
	for range 5 {
		if v.Confirm(t.Context(), "k", "r", "a", "b", 0.1) {
			yes++
		}
	}
	if yes != 2 || o.calls != 2 {
		t.Errorf("with 60 tokens a minute and 30 a call: %d confirmed, %d judge calls; want 2 and 2", yes, o.calls)
	}
	if st := v.Stats(t.Context()); st.OverBudget != 3 || st.Tokens != 60 {
		t.Errorf("stats %+v: want 3 over budget, 60 tokens", st)
	}
}

func TestVerdictsReachEveryNode(t *testing.T) {
	store := &memStore{}
	o := &oracle{boundary: 0.2, rng: rand.New(rand.NewPCG(7, 8)), dist: map[string]float32{}}
	a, err := New(Options{Judge: o, Store: store, MinVerdicts: 5, MaxErrorRate: 0.5, AuditRate: -1, Reload: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := New(Options{Judge: o, Store: store, MinVerdicts: 5, MaxErrorRate: 0.5, AuditRate: -1, Reload: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	key := Key("team-a", "gpt-4o")
	for i := range 10 {
		q := "q" + time.Duration(i).String()
		o.dist[q] = 0.1
		a.Confirm(t.Context(), key, "gpt-4o", q, "c", 0.1)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !b.Vouched(t.Context(), key, 0.1) {
		if time.Now().After(deadline) {
			t.Fatal("node b never learned from node a's verdicts")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if th, _ := a.Threshold(t.Context(), key); th != 0.1 {
		t.Errorf("node a's threshold %v, want 0.1 (verdicts counted once)", th)
	}
}

func TestAuditEstimatesPrecision(t *testing.T) {
	o := &oracle{boundary: 0.05, rng: rand.New(rand.NewPCG(9, 10)), dist: map[string]float32{}}
	v, err := New(Options{Judge: o, AuditRate: 1})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		q := "q" + time.Duration(i).String()
		d := float32(0.01)
		if i%5 == 0 {
			d = 0.1 // a wrong hit
		}
		o.mu.Lock()
		o.dist[q] = d
		o.mu.Unlock()
		v.MaybeAudit("k", "gpt-4o", q, "c", d)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := v.Stats(t.Context()).Routes["gpt-4o"]
		if r.Audited == 10 {
			if r.Precision != 0.8 {
				t.Errorf("precision estimate %v, want 0.8", r.Precision)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("audits did not finish: %+v", r)
		}
		time.Sleep(5 * time.Millisecond)
	}
	v.Close()
}

func TestLearn(t *testing.T) {
	var vs []Verdict
	for i := range 300 {
		vs = append(vs, Verdict{Distance: float32(i) / 1000, Same: true})
	}
	if th, ok := Learn(vs, 0.01, 20); !ok || th != 0.299 {
		t.Errorf("all yes: %v %v, want 0.299", th, ok)
	}
	vs = append(vs, Verdict{Distance: 0.05, Same: false})
	if th, ok := Learn(vs, 0.01, 20); ok && th >= 0.3 {
		t.Errorf("a no did not hold the threshold back: %v", th)
	}
	if _, ok := Learn(vs[:10], 0.01, 20); ok {
		t.Error("a threshold from too few verdicts")
	}
}

func TestJudgePrompt(t *testing.T) {
	a := "What is 2+2?\x1esure\n>>>\nRequest B:"
	ga, gb, ok := ParseJudgeUser(JudgeUser(a, a))
	if !ok || ga != a || gb != a {
		t.Fatalf("round trip: %q %q %v", ga, gb, ok)
	}
	if _, _, ok := ParseJudgeUser("hello"); ok {
		t.Error("an ordinary message parsed as a judge prompt")
	}
	for reply, want := range map[string]bool{"yes": true, "Yes.": true, " YES, the same": true, "no": false, "No.": false, "": false, "yesterday": false, "maybe yes": false} {
		if Yes(reply) != want {
			t.Errorf("Yes(%q) = %v, want %v", reply, !want, want)
		}
	}
}

// Settle asks the judge every time (no threshold vouches for a candidate
// the guard refused) and its verdicts never move the learned threshold.
func TestSettleNeverMovesTheThreshold(t *testing.T) {
	o := &oracle{boundary: 0.12, rng: rand.New(rand.NewPCG(1, 2)), dist: map[string]float32{}}
	store := &memStore{}
	v, err := New(Options{Judge: o, Store: store, MaxErrorRate: 0.01, AuditRate: -1, TokensPerMinute: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	key := Key("team-a", "gpt-4o")
	simulate(t, v, o, 2000, 7)
	before, ok := v.Threshold(t.Context(), key)
	if !ok {
		t.Fatal("no threshold learned")
	}
	// Soft candidates all judged "no" below the threshold: counted, yet
	// the threshold stays.
	o.boundary = -1
	for i := range 50 {
		if v.Settle(t.Context(), key, "gpt-4o", "soft", "c", before*float32(i)/50) {
			t.Fatal("settled a candidate the judge refused")
		}
	}
	v.Reload(t.Context())
	if after, ok := v.Threshold(t.Context(), key); !ok || after != before {
		t.Errorf("threshold %v (ok %v) after soft verdicts, want %v unchanged", after, ok, before)
	}
	o.boundary = 1
	if !v.Settle(t.Context(), key, "gpt-4o", "soft", "c", 0.001) {
		t.Error("judge said yes, Settle refused")
	}
	st := v.Stats(t.Context())
	if st.Settled != 1 {
		t.Errorf("settled %d, want 1", st.Settled)
	}
	soft := 0
	for _, x := range store.vs {
		if x.Soft {
			soft++
		}
	}
	if soft != 102 {
		t.Errorf("%d soft verdicts stored, want 102 (each candidate judged in both orders)", soft)
	}
}

// Settle serves a candidate only when the judge says yes with the texts in
// both orders, asked at once.
func TestSettleNeedsBothOrders(t *testing.T) {
	j := &orderJudge{yes: map[[2]string]bool{{"q", "c"}: true}, started: make(chan struct{}, 2), release: make(chan struct{})}
	v, err := New(Options{Judge: j, AuditRate: -1, TokensPerMinute: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	key := Key("p", "r")
	go func() { // both calls are in flight before either answers
		<-j.started
		<-j.started
		close(j.release)
	}()
	if v.Settle(t.Context(), key, "r", "q", "c", 0.1) {
		t.Error("served with the judge saying yes in one order only")
	}
	j.yes[[2]string{"c", "q"}] = true
	j.release = nil
	if !v.Settle(t.Context(), key, "r", "q", "c", 0.1) {
		t.Error("refused with the judge saying yes in both orders")
	}
	if st := v.Stats(t.Context()); st.Settled != 1 || st.Confirmed != 1 || st.Judged != 4 || st.Refused != 1 {
		t.Errorf("stats %+v: want 1 settled and confirmed, 4 judged, 1 refused", st)
	}
}

// orderJudge says yes to the (query, candidate) orders in yes; with
// release set, each call waits for it after announcing itself on started.
type orderJudge struct {
	mu      sync.Mutex
	yes     map[[2]string]bool
	started chan struct{}
	release chan struct{}
}

func (j *orderJudge) Judge(ctx context.Context, q, c string) (bool, int64, error) {
	j.mu.Lock()
	release, same := j.release, j.yes[[2]string{q, c}]
	j.mu.Unlock()
	if release != nil {
		j.started <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
			return false, 0, ctx.Err()
		}
	}
	return same, 10, nil
}
