package bench

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"text/tabwriter"

	"github.com/llmgate/llmgate/index/norm"
	"github.com/llmgate/llmgate/internal/embed"
	"github.com/llmgate/llmgate/internal/embed/quality"
	"github.com/llmgate/llmgate/verify"
)

// MaxErrorRate is cache.verify.max_error_rate's default: the radius is
// chosen so that a judge wrong on quality.JudgeError of its answers keeps
// the share of wrong hits within it plus RadiusSlack on the tuning half.
const (
	MaxErrorRate = 0.01
	RadiusSlack  = 0.02
)

// CacheTierRow is one tier or configuration on the held-out half.
type CacheTierRow struct {
	Tier      string  `json:"tier"`  // normalized, semantic, semantic+verify
	Data      string  `json:"data"`  // "pairs" (the labelled pairs) or "rewordings"
	Guard     bool    `json:"guard"` // the match guard on
	Judge     string  `json:"judge"` // "", oracle, noisy-5%, noisy-10%
	Right     int     `json:"right"`
	Wrong     int     `json:"wrong"`
	Precision float64 `json:"precision"`
	HitRate   float64 `json:"hit_rate"` // paraphrase queries that hit their right entry
	Judged    int     `json:"judged"`   // judge calls on the held-out half
	// Settled counts hits on candidates the guard refused on wording only,
	// confirmed by the judge (guard.Judgeable).
	Settled int `json:"settled"`
	// Unlabelled counts rewording hits on another pair's text: two pairs of
	// the data can be paraphrases of each other without a label saying so.
	Unlabelled int `json:"unlabelled"`
}

// TierReport is the per-tier table and the verification radius chosen on
// the tuning half.
type TierReport struct {
	Radius float64               `json:"radius"`
	Curve  []quality.RadiusPoint `json:"radius_curve"` // tuning half
	Rows   []CacheTierRow        `json:"rows"`
}

// tierQuality scores each tier on the held-out half of pairs (quality.Split:
// the tuning half chooses the verification radius and trains the
// verifier's thresholds first, and is not scored), local embedder at
// embed.DefaultThreshold. Candidates are chosen as a node does (up to
// quality.Candidates nearest entries, quality.Pick). The judges are oracles
// built from the labels, exact or with 5 % / 10 % of their answers flipped.
func tierQuality(ctx context.Context, pairs []quality.Pair) (*TierReport, error) {
	tune, held := quality.Split(pairs)
	e := embed.NewLocal()
	tuneOut, heldOut := quality.Run(tune, e.Embed), quality.Run(held, e.Embed)
	th := embed.DefaultThreshold
	rep := &TierReport{Curve: quality.RadiusCurve(tuneOut, th, quality.Radii)}
	rep.Radius = max(quality.ChooseRadius(rep.Curve, MaxErrorRate+RadiusSlack), th)
	// hit returns whether a query hits, and on which candidate.
	type hitFunc func(o quality.Outcome) (quality.Candidate, bool)
	scoreOn := func(outs []quality.Outcome, r CacheTierRow, hit hitFunc) CacheTierRow {
		pos, posHits := 0, 0
		for _, o := range outs {
			if o.Positive {
				pos++
			}
			c, ok := hit(o)
			if !ok {
				continue
			}
			switch c.Verdict {
			case quality.Right:
				r.Right++
				if o.Positive {
					posHits++
				}
			case quality.Wrong:
				if r.Data == "rewordings" {
					r.Unlabelled++
				} else {
					r.Wrong++
				}
			}
		}
		r.Precision = 1
		if r.Right+r.Wrong > 0 {
			r.Precision = float64(r.Right) / float64(r.Right+r.Wrong)
		}
		if pos > 0 {
			r.HitRate = float64(posHits) / float64(pos)
		}
		return r
	}
	var rows []CacheTierRow
	score := func(r CacheTierRow, hit hitFunc) CacheTierRow { return scoreOn(heldOut, r, hit) }
	nearest := func(o quality.Outcome) quality.Candidate {
		return quality.Candidate{Entry: o.Entry, Distance: o.Distance, Verdict: o.Verdict, GuardOK: o.GuardOK}
	}
	normalized := func(o quality.Outcome) (quality.Candidate, bool) {
		return nearest(o), o.Entry != "" && norm.Text(o.Query) == norm.Text(o.Entry)
	}
	semantic := func(o quality.Outcome) (quality.Candidate, bool) { // a node without a judge
		c, judge, ok := quality.Pick(o, th)
		return c, ok && !judge
	}
	// Trivial rewordings (quality.Rewordings) of the held-out half.
	rw := quality.Run(quality.Rewordings(held), e.Embed)
	rows = append(rows, scoreOn(rw, CacheTierRow{Tier: "normalized", Judge: "", Data: "rewordings"}, normalized))
	rows = append(rows, scoreOn(rw, CacheTierRow{Tier: "normalized+semantic", Guard: true, Data: "rewordings"}, func(o quality.Outcome) (quality.Candidate, bool) {
		if c, ok := normalized(o); ok {
			return c, true
		}
		return semantic(o)
	}))
	rows = append(rows, score(CacheTierRow{Tier: "normalized"}, normalized))
	rows = append(rows, score(CacheTierRow{Tier: "semantic"}, func(o quality.Outcome) (quality.Candidate, bool) {
		return nearest(o), o.Entry != "" && float64(o.Distance) <= th
	}))
	rows = append(rows, score(CacheTierRow{Tier: "semantic", Guard: true}, semantic))
	for _, j := range []struct {
		name  string
		noise float64
	}{{"oracle", 0}, {"noisy-5%", 0.05}, {"noisy-10%", 0.10}} {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		judge := &labelJudge{noise: j.noise, rng: rand.New(rand.NewPCG(42, uint64(j.noise*1000)))}
		v, err := verify.New(verify.Options{Judge: judge, AuditRate: -1, TokensPerMinute: 1 << 40, MaxErrorRate: MaxErrorRate})
		if err != nil {
			return nil, err
		}
		settled := 0
		decide := func(o quality.Outcome) (quality.Candidate, bool) {
			c, soft, ok := quality.Pick(o, rep.Radius)
			if !ok {
				return c, false
			}
			key := verify.Key("bench", o.Set)
			judge.set(c.Verdict)
			if soft {
				if v.Settle(ctx, key, o.Set, o.Query, c.Entry, c.Distance) {
					settled++
					return c, true
				}
				return c, false
			}
			if float64(c.Distance) <= th || v.Vouched(ctx, key, c.Distance) {
				return c, true
			}
			return c, v.Confirm(ctx, key, o.Set, o.Query, c.Entry, c.Distance)
		}
		for _, o := range tuneOut { // training: verdicts only
			decide(o)
		}
		judge.reset()
		settled = 0
		r := score(CacheTierRow{Tier: "semantic+verify", Guard: true, Judge: j.name}, decide)
		r.Judged, r.Settled = judge.calls, settled
		v.Close()
		rows = append(rows, r)
	}
	rep.Rows = rows
	return rep, nil
}

// labelJudge answers from the data's labels: yes for a right entry (or one
// of unknown verdict), no for a wrong one, each answer flipped with
// probability noise.
type labelJudge struct {
	mu    sync.Mutex
	noise float64
	rng   *rand.Rand
	cur   int // the verdict of the candidate being judged
	calls int
}

func (j *labelJudge) set(verdict int) {
	j.mu.Lock()
	j.cur = verdict
	j.mu.Unlock()
}

func (j *labelJudge) reset() {
	j.mu.Lock()
	j.calls = 0
	j.mu.Unlock()
}

func (j *labelJudge) Judge(context.Context, string, string) (bool, int64, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.calls++
	same := j.cur != quality.Wrong
	if j.rng.Float64() < j.noise {
		same = !same
	}
	return same, 0, nil
}

func writeTierQuality(w io.Writer, rep *TierReport) {
	if w == nil || rep == nil {
		return
	}
	fmt.Fprintf(w, "\nverification radius on the tuning half (exact judge; noisy error: a judge wrong on %.0f %% of its answers), local embedder, threshold %.2f:\n", 100*quality.JudgeError, embed.DefaultThreshold)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "radius\thit\tjudged\tright\twrong\tnoisy error\t")
	for _, p := range rep.Curve {
		fmt.Fprintf(tw, "%.2f\t%.3f\t%d\t%d\t%d\t%.3f\t\n", p.Radius, p.HitRate, p.Judged, p.Right, p.Wrong, p.NoisyError)
	}
	tw.Flush()
	fmt.Fprintf(w, "chosen radius: %.2f (widest reached while each step adds as many right candidates as wrong and the noisy error stays ≤ %.2f)\n", rep.Radius, MaxErrorRate+RadiusSlack)
	fmt.Fprintf(w, "\nper tier, held-out half (quality.Split; the tuning half chose the radius and trained the verifier), local embedder, threshold %.2f, judge radius %.2f:\n", embed.DefaultThreshold, rep.Radius)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "data\ttier\tguard\tjudge\tprec\thit\tright\twrong\tunlabelled\tjudged\tsettled\t")
	for _, r := range rep.Rows {
		g := "off"
		if r.Guard {
			g = "on"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.3f\t%.3f\t%d\t%d\t%d\t%d\t%d\t\n", cmp.Or(r.Data, "pairs"), r.Tier, g, r.Judge, r.Precision, r.HitRate, r.Right, r.Wrong, r.Unlabelled, r.Judged, r.Settled)
	}
	tw.Flush()
}
