package quality

import "testing"

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
