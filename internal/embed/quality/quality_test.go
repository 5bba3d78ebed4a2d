package quality

import (
	"testing"

	"github.com/llmgate/llmgate/index/guard"
)

func TestClustersJoinSharedTextsAndBags(t *testing.T) {
	pairs := []Pair{
		{PAWS, "A went to B .", "B went to A .", false},     // 0
		{PAWS, "A went to B .", "A travelled to B .", true}, // 1: shares a text with 0
		{PAWS, "to B went A", "C met D .", false},           // 2: same bag as 0
		{GPTCache, "E is F.", "F is E!", true},              // 3: alone
	}
	c := clusters(pairs)
	if c[0] != c[1] || c[0] != c[2] || c[3] == c[0] {
		t.Errorf("clusters %v, want 0, 1, 2 together and 3 apart", c)
	}
}

func TestEvaluateCountsRightAndWrongHits(t *testing.T) {
	outs := []Outcome{
		{Set: PAWS, Positive: true, Distance: 0.01, Verdict: Right, GuardOK: true},   // right hit
		{Set: PAWS, Positive: false, Distance: 0.01, Verdict: Wrong, GuardOK: false}, // refused by the guard
		{Set: PAWS, Positive: false, Distance: 0.02, Verdict: Wrong, GuardOK: true},  // wrong hit
		{Set: PAWS, Positive: true, Distance: 0.5, Verdict: Right, GuardOK: true},    // too far: a miss
		{Set: GPTCache, Positive: false, Distance: 0.0, Verdict: Unknown, GuardOK: true},
	}
	s := Evaluate(outs, PAWS, 0.05, true)
	if s.Right != 1 || s.Wrong != 1 || s.Positives != 2 || s.Negatives != 2 || s.HitRate != 0.5 || s.Precision != 0.5 {
		t.Errorf("with guard: %+v", s)
	}
	if s := Evaluate(outs, PAWS, 0.05, false); s.Wrong != 2 {
		t.Errorf("without guard: %d wrong hits, want 2", s.Wrong)
	}
	if s := Evaluate(outs, "", 0.05, true); s.Unknown != 1 || s.Precision != 0.5 {
		t.Errorf("all sets: %+v", s)
	}
	if s := Evaluate(nil, "", 0.05, true); s.Precision != 1 {
		t.Errorf("no hits: precision %v, want 1", s.Precision)
	}
}

func TestChooseRadius(t *testing.T) {
	pt := func(r float64, right, wrong int, noisy float64) RadiusPoint {
		return RadiusPoint{Radius: r, Right: right, Wrong: wrong, NoisyError: noisy}
	}
	tests := []struct {
		name string
		pts  []RadiusPoint
		want float64
	}{
		{"stops where a step adds more wrong than right", []RadiusPoint{pt(0.1, 10, 1, 0.01), pt(0.2, 20, 5, 0.02), pt(0.3, 22, 12, 0.025)}, 0.2},
		{"stops where the noisy error passes the bound", []RadiusPoint{pt(0.1, 10, 1, 0.01), pt(0.2, 30, 10, 0.04)}, 0.1},
		{"none when the first fails", []RadiusPoint{pt(0.1, 1, 5, 0.2)}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ChooseRadius(tt.pts, 0.03); got != tt.want {
				t.Errorf("ChooseRadius = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPickPrefersAcceptedThenJudgeable(t *testing.T) {
	o := Outcome{Candidates: []Candidate{
		{Entry: "hard", Distance: 0.01, Diff: guard.ClassNumber | guard.ClassWord},
		{Entry: "soft", Distance: 0.05, Diff: guard.ClassWord},
		{Entry: "ok", Distance: 0.2, GuardOK: true},
	}}
	if c, judge, ok := Pick(o, 0.3); !ok || c.Entry != "ok" || judge {
		t.Errorf("radius 0.3: %q judge %v ok %v, want the accepted one", c.Entry, judge, ok)
	}
	if c, judge, ok := Pick(o, 0.1); !ok || c.Entry != "soft" || !judge {
		t.Errorf("radius 0.1: %q judge %v ok %v, want the soft one for the judge", c.Entry, judge, ok)
	}
	if _, _, ok := Pick(o, 0.02); ok {
		t.Error("radius 0.02: a hard refusal was picked")
	}
}
