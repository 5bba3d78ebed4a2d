package quota

import (
	"math"
	"time"
)

// Shares of the remaining budget: how several nodes enforce one limit.
//
// Each node admits against the cluster-wide sum it knows: its own usage,
// exact, plus every peer's as last merged. Peers learn of an admission one
// gossip lag later (an exchange interval plus delivery), so a node checking
// only "sum + t ≤ limit" overshoots by what the others admitted during the
// lag: with every node refilling the same freed budget at the same instant,
// by up to (nodes-1) × that budget.
//
// So each node also limits what it has in flight: the tokens it charged in
// the last PeerLag, which peers may not have seen. Let L be a limit and, for
// node j, inflight_j its in-flight tokens, total_j the sum it sees, and
// R_j = L − (total_j − inflight_j) the budget left by everything j knows to
// be known everywhere. Node j admits t tokens only if
//
//	inflight_j + t ≤ w_j × R_j,   with Σ_j w_j = 1.
//
// Let S be the cluster's usage older than the lag, which every node has
// seen. Each node's view holds S and its own in-flight, so
// total_j − inflight_j ≥ S and R_j ≤ L − S. Summing over the nodes,
// Σ inflight_j ≤ Σ w_j R_j ≤ L − S, and the cluster's true usage,
// S + Σ inflight_j (what peers have not seen of a node is part of its
// in-flight), stays within L. The argument needs the gossip lag to stay
// within PeerLag, and the weights to sum to at most 1 although each node
// computes them alone (see weight).
//
// The weights follow demand, so a busy node is not starved by idle ones:
// w_j = (d_j + f) / Σ_k (d_k + f) over this node and its live peers (dead
// nodes get no share, but their usage counts until it leaves the window),
// where d is an exponentially weighted rate of the tokens requested
// (admitted or not; a peer's as last reported, decayed since), and the floor
// f (half the mean, at least 1 token/s) lets an idle node start. A node
// alone never applies the rule. Near a full window the busy node of an
// otherwise idle cluster keeps w ≈ 5/6 of a small remainder (two nodes; see
// shareFloor), which costs it a few tokens, not a share of the limit. Busy
// nodes that compete pay more: with a remainder R smaller than t/w, no node
// may take a request of t tokens until the window slides, so the last few
// requests' worth of the window may stay unused. A period quota's remainder
// never slides away: its tail goes to one node (see shareRefusal).
//
// Settlements keep in-flight equal to what peers have not seen: a refund of
// a reservation still in flight removes it from in-flight (peers that saw the
// estimate over-count until they see the refund, which is safe), and a charge
// above the estimate enters in-flight like a reservation.

// shareFloor is the floor f of a node's demand as a share of the mean. It is
// what a node whose peers do not know its demand yet may take: with two
// nodes, one busy and one just starting, 1/6 of the remaining budget for the
// newcomer and 5/6 for the other. A smaller floor starves a newcomer for a
// lag or more (each of its refusals then raises its demand, which starves the
// other in turn); a larger one leaves more of the window unused when the
// busy node takes the last requests' worth.
const shareFloor = 0.5

// decay returns v tokens/s after dt nanoseconds of exponential decay.
func decay(v float64, dt int64, halfLife time.Duration) float64 {
	if v == 0 || dt <= 0 {
		return v
	}
	return v * math.Exp2(-float64(dt)/float64(halfLife))
}

// rate is an exponentially weighted moving average of a flow of tokens, in
// tokens per second: each event adds tokens × ln2 / halfLife, and the value
// halves every halfLife, so a steady flow of r tokens/s reads r.
type rate struct {
	v float64 // tokens per second at t
	t int64   // Unix nanoseconds
}

func (r *rate) at(now int64, halfLife time.Duration) float64 {
	return decay(r.v, now-r.t, halfLife)
}

func (r *rate) add(now, tokens int64, halfLife time.Duration) {
	r.v = r.at(now, halfLife) + float64(tokens)*math.Ln2/halfLife.Seconds()
	r.t = max(r.t, now)
}

// flight is tokens charged between first and last (Unix ns); they stay in
// flight until last+lag.
type flight struct {
	first, last int64
	tokens      int64
}

// inflight holds a counter's recent reservations, oldest first. Reservations
// less than lag/flightSlots apart share an entry, so it holds at most about
// flightSlots entries whatever the rate.
type inflight struct {
	q   []flight
	sum int64
}

const flightSlots = 32

// expire drops the entries that left the horizon.
func (f *inflight) expire(now int64, lag time.Duration) {
	i := 0
	for i < len(f.q) && f.q[i].last+int64(lag) <= now {
		f.sum -= f.q[i].tokens
		i++
	}
	if i > 0 {
		f.q = f.q[:copy(f.q, f.q[i:])]
	}
	if len(f.q) == 0 {
		f.sum = 0
	}
}

// add puts tokens charged at now in flight.
func (f *inflight) add(now, tokens int64, lag time.Duration) {
	f.expire(now, lag)
	if tokens <= 0 {
		return
	}
	if n := len(f.q); n > 0 && now-f.q[n-1].first < int64(lag)/flightSlots {
		e := &f.q[n-1]
		e.last = max(e.last, now)
		e.tokens += tokens
	} else {
		f.q = append(f.q, flight{first: now, last: now, tokens: tokens})
	}
	f.sum += tokens
}

// refund takes back up to tokens of a reservation charged at `at`, if it is
// still in flight.
func (f *inflight) refund(at, tokens, now int64, lag time.Duration) {
	f.expire(now, lag)
	if at+int64(lag) <= now {
		return
	}
	for i := range f.q {
		if e := &f.q[i]; e.last >= at {
			if e.first > at {
				return // charged before the rule was on: never in flight
			}
			n := min(tokens, e.tokens)
			e.tokens -= n
			f.sum -= n
			return
		}
	}
}

// retryAfter returns how long until enough tokens leave flight for a request
// refused by excess = inflight + t − w×R to fit: as x tokens leave, in-flight
// and R both drop by x, so the test gains (1−w)×x. If all of them leaving is
// not enough (the share itself must grow), it is lag.
func (f *inflight) retryAfter(excess, w float64, now int64, lag time.Duration) time.Duration {
	var x float64
	for _, e := range f.q {
		x += float64(e.tokens)
		if (1-w)*x >= excess {
			return time.Duration(e.last + int64(lag) - now)
		}
	}
	return lag
}

// sent is a demand this node sent to its peers: v tokens/s at `at` (Unix ns).
type sent struct {
	at int64
	v  float64
}

// published holds the demands this node sent in the last lag, and the last
// one sent before: the values its peers may hold now.
type published struct{ q []sent }

func (p *published) add(at int64, v float64, lag time.Duration) {
	p.q = append(p.q, sent{at: at, v: v})
	i := 0
	for i+1 < len(p.q) && p.q[i+1].at <= at-int64(lag) {
		i++
	}
	p.q = p.q[:copy(p.q, p.q[i:])]
}

// last returns the demand last sent, decayed to now: what peers assume once
// they have it.
func (p *published) last(now int64, halfLife time.Duration) float64 {
	if len(p.q) == 0 {
		return 0
	}
	e := p.q[len(p.q)-1]
	return decay(e.v, now-e.at, halfLife)
}

// floor returns the least demand any peer may now assume for this node: a
// peer holds the last value it received (every peer has the last one sent
// a lag ago, perhaps a later one), decayed since it received it, later than
// it was sent. 0 if a peer may have received nothing yet.
func (p *published) floor(now int64, lag, halfLife time.Duration) float64 {
	if len(p.q) == 0 || p.q[0].at > now-int64(lag) {
		return 0
	}
	v := math.Inf(1)
	for i, e := range p.q {
		if i+1 < len(p.q) && p.q[i+1].at <= now-int64(lag) {
			continue // superseded by a value every peer has
		}
		v = min(v, decay(e.v, now-e.at, halfLife))
	}
	return v
}

// weight returns this node's share w of the counter's remaining budget, from
// its own demand and its live peers' last reported demand.
//
// The shares of the nodes sum to at most 1 only if each node counts for
// itself no more demand than its peers count for it: w_j ≤ (d_j+f)/Σ(d_k+f)
// then holds for the values every node uses. So a node counts the smaller of
// its current demand and the least its peers may assume (published.floor).
// When every node's demand jumps at once, as when clients told to retry at
// the same instant come back, each node's share therefore stays at what the
// others know for one lag, instead of each one taking nearly all.
func (s *shard) weight(c *counter, now int64) float64 {
	self := min(c.demand.at(now, s.halfLife), c.sent.floor(now, s.lag, s.halfLife))
	sum := self
	for _, p := range s.peers {
		for i := 1; i < len(c.origins); i++ {
			if o := &c.origins[i]; o.name == p {
				sum += decay(o.demand, now-o.demandAt, s.halfLife)
				break
			}
		}
	}
	n := float64(1 + len(s.peers))
	f := max(shareFloor*sum/n, 1)
	return (self + f) / (sum + n*f)
}

// tailSpan bounds the tail of a period quota: a remainder R is a tail for a
// request of t tokens when it is less than tailSpan × t per node. Above it,
// an equal share holds the request with a margin, so a node refused by its
// share waits for its demand to raise that share; below it, the nodes'
// shares may all stay too small.
const tailSpan = 1.25

// tailTie is how close two nodes' demands must be, as a ratio, for the
// tail of a period quota to go by name rather than by demand (see tailTaker).
const tailTie = 0.75

// tailTaker reports whether this node takes the tail of c's period quota:
// what is left when no node's share of it holds a request. The taker is the
// node with the largest demand, this node's and its live peers' as it knows
// them (the values weight uses, floor included); demands within tailTie of
// the largest tie, and the lowest name among them wins. Every node computes
// it alone, from views that agree within a gossip lag, so the nodes
// normally name the same taker.
func (s *shard) tailTaker(c *counter, now int64) bool {
	self := min(c.demand.at(now, s.halfLife), c.sent.floor(now, s.lag, s.halfLife))
	demand := make([]float64, len(s.peers))
	top, sum := self, self
	for j, p := range s.peers {
		for i := 1; i < len(c.origins); i++ {
			if o := &c.origins[i]; o.name == p {
				demand[j] = decay(o.demand, now-o.demandAt, s.halfLife)
				break
			}
		}
		top, sum = max(top, demand[j]), sum+demand[j]
	}
	f := max(shareFloor*sum/float64(1+len(s.peers)), 1)
	cut := tailTie*(top+f) - f
	if self < cut {
		return false
	}
	for j, p := range s.peers {
		if demand[j] >= cut && p < s.node {
			return false
		}
	}
	return true
}

// shareRefusal applies the share rule to a request of tokens that the
// window (holding used tokens) and the quota admit. It reports whether the
// request is refused, why (ReasonShare, or ReasonQuota for the tail of a
// period quota that another node takes) and when to retry.
//
// The tail of a period quota: with a remainder R smaller than t/w, no node
// may take a request of t tokens, and unlike a window's, a period's
// remainder never grows until the period ends, so shares alone would
// refuse every request as ReasonShare (a 429 to retry) until then. So once
// waiting for this node's in-flight tokens cannot make the request fit and
// R is less than tailSpan × t per node (more than that, an equal share
// would hold it, and the demands move the shares towards the nodes whose
// requests wait), one node, the tail's taker, admits it on the quota alone (its view of the
// cluster's total plus t within the quota), and the others refuse it for the
// period (ReasonQuota: a 403). While the taker spends the tail, the others
// may still admit within their shares, so the cluster can exceed the quota
// by at most what their shares held, less than the tail itself; as the
// taker takes more than its own share each time, the tails it takes
// shrink geometrically and the excess over the whole period stays below
// one remainder R < t/w, about one request's estimate.
func (s *shard) shareRefusal(c *counter, lim Limits, used, tokens int64, at time.Time, cur int64) (bool, time.Duration, string) {
	now := at.UnixNano()
	c.flight.expire(now, s.lag)
	inflight := c.flight.sum
	w := -1.0
	if lim.QuotaTokens > 0 && c.periodStart != 0 {
		budget := lim.QuotaTokens - max(c.periodSum()-inflight, 0)
		w = s.weight(c, now)
		if excess := float64(inflight+tokens) - w*float64(budget); excess > 0 {
			drained := c.flight.retryAfter(excess, w, now, s.lag)
			if (1-w)*float64(inflight) >= excess || float64(budget) >= tailSpan*float64(1+len(s.peers))*float64(tokens) {
				return true, drained, ReasonShare
			}
			if !s.tailTaker(c, now) {
				return true, 0, ReasonQuota
			}
		}
	}
	if lim.TPM <= 0 {
		return false, 0, ""
	}
	budget := lim.TPM - max(used-inflight, 0)
	if w < 0 {
		w = s.weight(c, now)
	}
	excess := float64(inflight+tokens) - w*float64(budget)
	if excess <= 0 {
		return false, 0, ""
	}
	drained := c.flight.retryAfter(excess, w, now, s.lag)
	if (1-w)*float64(inflight) >= excess {
		return true, drained, ReasonShare
	}
	// Even with nothing in flight the request is over this node's share of
	// what the window leaves: that share grows as the window slides (or
	// when the peers' demand falls). Telling the client the lag would have it
	// retry in vain until then.
	// If the whole window leaving is not enough, only the weights can help.
	need := int64(math.Ceil(float64(tokens)/max(w, 1e-3))) - (budget - inflight)
	if need > used-inflight {
		return true, drained, ReasonShare
	}
	return true, max(drained, c.retryAfter(at, cur, need)), ReasonShare
}
