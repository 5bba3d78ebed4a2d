package quality

import (
	"fmt"
	"os"
	"testing"

	"github.com/llmgate/llmgate/internal/embed"
)

func TestTmpRules(t *testing.T) {
	if os.Getenv("TUNE") == "" { t.Skip() }
	pairs, _ := LoadDir("/work/shared/data", "paws_dev.tsv", "gptcache_mock_data.json")
	outs := Run(pairs, embed.NewLocal().Embed)
	variants := map[string]func(o Outcome) bool{
		"base":       func(o Outcome) bool { return o.GuardOK || o.Reason == "order" || o.Reason == "qualifier" },
		"+order":     func(o Outcome) bool { return o.GuardOK || o.Reason == "qualifier" },
		"+order+qual": func(o Outcome) bool { return o.GuardOK },
	}
	for _, name := range []string{"base", "+order", "+order+qual"} {
		f := variants[name]
		o2 := make([]Outcome, len(outs))
		for i, o := range outs { o.GuardOK = f(o); o2[i] = o }
		for _, th := range []float64{0.02, 0.04, 0.06, 0.08, 0.1, 0.14, 0.2, 0.3} {
			a, p, c := Evaluate(o2, "", th, true), Evaluate(o2, PAWS, th, true), Evaluate(o2, GPTCache, th, true)
			fmt.Printf("%-12s t=%.2f all hit %.3f prec %.3f | paws hit %.3f prec %.3f (R%d W%d) | gpt hit %.3f prec %.3f (R%d W%d)\n", name, th, a.HitRate, a.Precision, p.HitRate, p.Precision, p.Right, p.Wrong, c.HitRate, c.Precision, c.Right, c.Wrong)
		}
	}
	reasons := map[string]int{}
	for _, o := range outs { if o.Distance < 0.3 { reasons[o.Reason]++ } }
	fmt.Println(reasons)
}
