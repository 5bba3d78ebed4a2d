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

// VerifyRadius is the widest distance the tier benchmark lets the judge see
// (cache.verify.radius's default).
const VerifyRadius = 0.15

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
	// Unlabelled counts rewording hits on another pair's text: two pairs of
	// the data can be paraphrases of each other without a label saying so.
	Unlabelled int `json:"unlabelled"`
}

// tierQuality scores each tier on the held-out half of pairs (quality.Split:
// the tuning half trains the verifier's thresholds first and is not scored),
// local embedder at embed.DefaultThreshold. The judges are oracles built
// from the labels, exact or with 5 % / 10 % of their answers flipped.
func tierQuality(ctx context.Context, pairs []quality.Pair) ([]CacheTierRow, error) {
	tune, held := quality.Split(pairs)
	e := embed.NewLocal()
	tuneOut, heldOut := quality.Run(tune, e.Embed), quality.Run(held, e.Embed)
	th := embed.DefaultThreshold
	var rows []CacheTierRow
	scoreOn := func(outs []quality.Outcome, r CacheTierRow, hit func(o quality.Outcome) bool) CacheTierRow {
		pos, posHits := 0, 0
		for _, o := range outs {
			if o.Positive {
				pos++
			}
			if !hit(o) {
				continue
			}
			switch o.Verdict {
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
	score := func(r CacheTierRow, hit func(o quality.Outcome) bool) CacheTierRow { return scoreOn(heldOut, r, hit) }
	normalized := func(o quality.Outcome) bool { return o.Entry != "" && norm.Text(o.Query) == norm.Text(o.Entry) }
	// Trivial rewordings (quality.Rewordings) of the held-out half.
	rw := quality.Run(quality.Rewordings(held), e.Embed)
	rows = append(rows, scoreOn(rw, CacheTierRow{Tier: "normalized", Judge: "", Data: "rewordings"}, normalized))
	rows = append(rows, scoreOn(rw, CacheTierRow{Tier: "normalized+semantic", Guard: true, Data: "rewordings"}, func(o quality.Outcome) bool {
		return normalized(o) || (float64(o.Distance) <= th && o.GuardOK)
	}))
	rows = append(rows, score(CacheTierRow{Tier: "normalized"}, normalized))
	for _, g := range []bool{false, true} {
		rows = append(rows, score(CacheTierRow{Tier: "semantic", Guard: g}, func(o quality.Outcome) bool {
			return float64(o.Distance) <= th && (!g || o.GuardOK)
		}))
	}
	for _, j := range []struct {
		name  string
		noise float64
	}{{"oracle", 0}, {"noisy-5%", 0.05}, {"noisy-10%", 0.10}} {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		judge := &labelJudge{noise: j.noise, rng: rand.New(rand.NewPCG(42, uint64(j.noise*1000)))}
		v, err := verify.New(verify.Options{Judge: judge, AuditRate: -1, TokensPerMinute: 1 << 40})
		if err != nil {
			return nil, err
		}
		decide := func(o quality.Outcome) bool {
			if o.Entry == "" || !o.GuardOK || float64(o.Distance) > VerifyRadius {
				return false
			}
			if float64(o.Distance) <= th {
				return true
			}
			key := verify.Key("bench", o.Set)
			if v.Vouched(ctx, key, o.Distance) {
				return true
			}
			judge.set(o)
			return v.Confirm(ctx, key, o.Set, o.Query, o.Entry, o.Distance)
		}
		for _, o := range tuneOut { // training: verdicts only
			decide(o)
		}
		judge.reset()
		r := score(CacheTierRow{Tier: "semantic+verify", Guard: true, Judge: j.name}, decide)
		r.Judged = judge.calls
		v.Close()
		rows = append(rows, r)
	}
	return rows, nil
}

// labelJudge answers from the data's labels: yes for a right entry (or one
// of unknown verdict), no for a wrong one, each answer flipped with
// probability noise.
type labelJudge struct {
	mu    sync.Mutex
	noise float64
	rng   *rand.Rand
	cur   quality.Outcome
	calls int
}

func (j *labelJudge) set(o quality.Outcome) {
	j.mu.Lock()
	j.cur = o
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
	same := j.cur.Verdict != quality.Wrong
	if j.rng.Float64() < j.noise {
		same = !same
	}
	return same, 0, nil
}

func writeTierQuality(w io.Writer, rows []CacheTierRow) {
	if w == nil || len(rows) == 0 {
		return
	}
	fmt.Fprintf(w, "\nper tier, held-out half (quality.Split; the tuning half trained the verifier), local embedder, threshold %.2f, judge radius %.2f:\n", embed.DefaultThreshold, VerifyRadius)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "data\ttier\tguard\tjudge\tprec\thit\tright\twrong\tunlabelled\tjudged\t")
	for _, r := range rows {
		g := "off"
		if r.Guard {
			g = "on"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.3f\t%.3f\t%d\t%d\t%d\t%d\t\n", cmp.Or(r.Data, "pairs"), r.Tier, g, r.Judge, r.Precision, r.HitRate, r.Right, r.Wrong, r.Unlabelled, r.Judged)
	}
	tw.Flush()
}
