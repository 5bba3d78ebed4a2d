package bench

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/llmgate/llmgate/internal/embed"
)

// TestCacheQualityOnTestdata runs the benchmark on the small labelled subset
// in index/testdata: every row is there, and the threshold it chooses is
// not stricter than the one the full data chose (embed.DefaultThreshold).
func TestCacheQualityOnTestdata(t *testing.T) {
	var out bytes.Buffer
	rep, err := CacheQuality(context.Background(), CacheQualityOptions{
		DataDir: "../index/testdata", PAWSFile: "paws_dev_300.tsv", GPTCacheFile: "gptcache_300.json",
	}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rows) != 2*2*15 {
		t.Errorf("%d rows, want 60 (2 embedders × guard off/on × 15 thresholds)", len(rep.Rows))
	}
	if rep.ChosenThreshold < embed.DefaultThreshold {
		t.Errorf("chosen threshold %.2f on the subset is stricter than embed.DefaultThreshold %.2f", rep.ChosenThreshold, embed.DefaultThreshold)
	}
	if !strings.Contains(out.String(), "default threshold:") {
		t.Errorf("table has no default threshold line:\n%s", out.String())
	}
	t.Log("\n" + out.String())
}
