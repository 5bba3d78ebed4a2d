package guard_test

import (
	"testing"

	"github.com/llmgate/llmgate/index/norm"
	"github.com/llmgate/llmgate/internal/embed"
	"github.com/llmgate/llmgate/internal/embed/quality"
)

// TestQualityFloor checks, on the labelled subset in index/testdata, that the
// local embedder with the guard keeps hits right at the default threshold.
// The subset (the first 300 rows of each set) is held out: the default
// threshold is chosen by `llmgate cache calibrate` on the other rows. A
// change to the embedder, the guard or the threshold that lets wrong
// entries hit fails here.
func TestQualityFloor(t *testing.T) {
	paws, err := quality.LoadPAWS("../testdata/paws_dev_300.tsv", 0)
	if err != nil {
		t.Fatal(err)
	}
	gpt, err := quality.LoadGPTCache("../testdata/gptcache_300.json", 0)
	if err != nil {
		t.Fatal(err)
	}
	outs := quality.Run(append(paws, gpt...), embed.NewLocal().Embed)
	const floor = 0.99
	for _, set := range []string{quality.PAWS, quality.GPTCache, ""} {
		s := quality.Evaluate(outs, set, embed.DefaultThreshold, true)
		name := set
		if name == "" {
			name = "both"
		}
		t.Logf("%s at %.2f with the guard: %d right, %d wrong hits, precision %.3f, paraphrase hit rate %.3f",
			name, embed.DefaultThreshold, s.Right, s.Wrong, s.Precision, s.HitRate)
		if s.Precision < floor {
			t.Errorf("%s: precision %.3f at threshold %.2f, want ≥ %.2f (%d right, %d wrong hits)",
				name, s.Precision, embed.DefaultThreshold, floor, s.Right, s.Wrong)
		}
	}
	// A change that stops right hits fails too: trivial rewordings hit,
	// through the normalised tier (equal once normalised) or the semantic
	// tier.
	rws := quality.Rewordings(append(paws, gpt...))
	semantic := quality.Evaluate(quality.Run(rws, embed.NewLocal().Embed), "", embed.DefaultThreshold, true)
	hits := 0
	for _, o := range quality.Run(rws, embed.NewLocal().Embed) {
		if norm.Text(o.Query) == norm.Text(o.Entry) || (float64(o.Distance) <= embed.DefaultThreshold && o.GuardOK && o.Verdict == quality.Right) {
			hits++
		}
	}
	rate := float64(hits) / float64(semantic.Positives)
	t.Logf("trivial rewordings: hit rate %.3f (normalised or semantic tier), %.3f semantic tier alone", rate, semantic.HitRate)
	if rate < 0.9 {
		t.Errorf("trivial rewordings: hit rate %.3f at threshold %.2f, want ≥ 0.9", rate, embed.DefaultThreshold)
	}
	// The guard must be doing work: without it the same threshold is worse.
	with, without := quality.Evaluate(outs, "", 0.1, true), quality.Evaluate(outs, "", 0.1, false)
	if with.Precision <= without.Precision {
		t.Errorf("at 0.10 the guard does not raise precision: %.3f with, %.3f without", with.Precision, without.Precision)
	}
}
