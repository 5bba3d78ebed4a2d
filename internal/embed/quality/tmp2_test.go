package quality

import (
	"fmt"
	"os"
	"testing"

	"github.com/llmgate/llmgate/internal/embed"
)

func TestTmpPeek(t *testing.T) {
	if os.Getenv("TUNE") == "" { t.Skip() }
	pairs, _ := LoadDir("/work/shared/data", "paws_dev.tsv", "gptcache_mock_data.json")
	outs := Run(pairs, embed.NewLocal().Embed)
	n := map[string]int{}
	for _, o := range outs {
		if o.Distance <= 0.2 && o.GuardOK && o.Verdict == Wrong {
			n[o.Set]++
			if n[o.Set] <= 22 { fmt.Printf("%s pos=%v v=%d %.3f\n  Q %s\n  E %s\n", o.Set, o.Positive, o.Verdict, o.Distance, o.Query, o.Entry) }
		}
	}
}
