package bench

import (
	"context"
	"testing"

	"github.com/llmgate/llmgate/internal/embed/quality"
)

// TestTierQualityOnTestdata: every tier row is there, the guard raises
// precision, and an exact judge never adds a wrong hit or loses one the
// thresholds served.
func TestTierQualityOnTestdata(t *testing.T) {
	pairs, err := quality.LoadDir("../index/testdata", "paws_dev_300.tsv", "gptcache_300.json")
	if err != nil {
		t.Fatal(err)
	}
	rep, err := tierQuality(context.Background(), pairs)
	if err != nil {
		t.Fatal(err)
	}
	rows := rep.Rows
	if len(rows) != 8 {
		t.Fatalf("%d rows, want 8", len(rows))
	}
	byName := map[string]CacheTierRow{}
	for _, r := range rows {
		k := r.Data + "/" + r.Tier + "/" + r.Judge
		if r.Guard {
			k += "/guard"
		}
		byName[k] = r
	}
	off, on, oracle := byName["/semantic/"], byName["/semantic//guard"], byName["/semantic+verify/oracle/guard"]
	if on.Precision < off.Precision {
		t.Errorf("guard lowers precision: %.3f on, %.3f off", on.Precision, off.Precision)
	}
	if oracle.Wrong != 0 || oracle.Right < on.Right {
		t.Errorf("exact judge: %d right %d wrong; guard alone %d right", oracle.Right, oracle.Wrong, on.Right)
	}
	// The judge also settles what the guard refused on wording only: with
	// an exact judge, verification must lift the paraphrase hit rate well
	// beyond the guard alone, still without a wrong hit.
	if rep.Radius <= 0.02 || oracle.Settled == 0 || oracle.HitRate < 2*on.HitRate || oracle.HitRate < 0.3 {
		t.Errorf("radius %.2f: exact judge hit rate %.3f (%d settled), guard alone %.3f", rep.Radius, oracle.HitRate, oracle.Settled, on.HitRate)
	}
	t.Logf("radius %.2f; hit rate: guard alone %.3f, exact judge %.3f, 10%% noise %.3f (precision %.3f)", rep.Radius, on.HitRate, oracle.HitRate,
		byName["/semantic+verify/noisy-10%/guard"].HitRate, byName["/semantic+verify/noisy-10%/guard"].Precision)
	if rw := byName["rewordings/normalized+semantic//guard"]; rw.HitRate < 0.9 {
		t.Errorf("trivial rewordings hit rate %.3f, want ≥ 0.9", rw.HitRate)
	}
}
