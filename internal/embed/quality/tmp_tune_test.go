package quality

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/embed"
)

func TestTmpCurve(t *testing.T) {
	if os.Getenv("TUNE") == "" { t.Skip() }
	pairs, err := LoadDir("/work/shared/data", "paws_dev.tsv", "gptcache_mock_data.json")
	if err != nil { t.Fatal(err) }
	for _, e := range []struct{ n string; l *embed.Local }{{"combined", embed.NewLocal()}, {"hashed", embed.NewHashed()}} {
		t0 := time.Now()
		outs := Run(pairs, e.l.Embed)
		fmt.Println(e.n, time.Since(t0))
		for _, g := range []bool{false, true} {
			for th := 0.02; th < 0.31; th += 0.02 {
				a, p, c := Evaluate(outs, "", th, g), Evaluate(outs, PAWS, th, g), Evaluate(outs, GPTCache, th, g)
				fmt.Printf("%s guard=%v t=%.2f  all: hit %.3f prec %.3f fh %.4f unk %d | paws hit %.3f prec %.3f (R%d W%d) | gpt hit %.3f prec %.3f (R%d W%d)\n", e.n, g, th, a.HitRate, a.Precision, a.FalseHits, a.Unknown, p.HitRate, p.Precision, p.Right, p.Wrong, c.HitRate, c.Precision, c.Right, c.Wrong)
			}
		}
		a := Evaluate(outs, "", 9, false)
		fmt.Println("pos", a.Positives, "neg", a.Negatives)
	}
}
