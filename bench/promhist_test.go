package bench

import (
	"math"
	"testing"
)

func TestHistogramUpperBound(t *testing.T) {
	text := `# HELP x
llmgate_request_duration_seconds_bucket{op="chat",route="r",le="0.001"} 90
llmgate_request_duration_seconds_bucket{op="chat",route="r",le="0.0005"} 10
llmgate_request_duration_seconds_bucket{op="chat",route="r",le="0.0025"} 99
llmgate_request_duration_seconds_bucket{op="chat",route="r",le="+Inf"} 100
llmgate_request_duration_seconds_bucket{op="embeddings",route="r",le="0.001"} 7
`
	before := `llmgate_request_duration_seconds_bucket{op="chat",route="r",le="0.0005"} 0
llmgate_request_duration_seconds_bucket{op="chat",route="r",le="0.001"} 0
llmgate_request_duration_seconds_bucket{op="chat",route="r",le="0.0025"} 0
llmgate_request_duration_seconds_bucket{op="chat",route="r",le="+Inf"} 0
`
	const p = `llmgate_request_duration_seconds{op="chat"`
	h := parseHistograms(text, p)[p].minus(parseHistograms(before, p)[p])
	if h.count() != 100 {
		t.Fatalf("count %v, want 100 (the chat series only)", h.count())
	}
	for _, c := range []struct{ q, want float64 }{{0.05, 0.0005}, {0.5, 0.001}, {0.99, 0.0025}, {1, math.Inf(1)}} {
		if got := h.upperBound(c.q); got != c.want {
			t.Errorf("q %.2f: %v, want %v", c.q, got, c.want)
		}
	}
	if !math.IsNaN((histogram{}).upperBound(0.5)) {
		t.Error("no observations: want NaN")
	}
}
