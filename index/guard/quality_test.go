package guard_test

import (
	"testing"

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
	// A change that stops right hits fails too: trivial rewordings hit.
	rw := quality.Run(quality.Rewordings(append(paws, gpt...)), embed.NewLocal().Embed)
	if s := quality.Evaluate(rw, "", embed.DefaultThreshold, true); s.HitRate < 0.9 {
		t.Errorf("trivial rewordings: hit rate %.3f at threshold %.2f, want ≥ 0.9", s.HitRate, embed.DefaultThreshold)
	} else {
		t.Logf("trivial rewordings: hit rate %.3f, precision %.3f", s.HitRate, s.Precision)
	}
	// The guard must be doing work: without it the same threshold is worse.
	with, without := quality.Evaluate(outs, "", 0.1, true), quality.Evaluate(outs, "", 0.1, false)
	if with.Precision <= without.Precision {
		t.Errorf("at 0.10 the guard does not raise precision: %.3f with, %.3f without", with.Precision, without.Precision)
	}
}
