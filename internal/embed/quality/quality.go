package quality

import (
	"bufio"
	"cmp"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/llmgate/llmgate/index/graph"
	"github.com/llmgate/llmgate/index/guard"
)

// Data sets.
const (
	PAWS     = "paws"
	GPTCache = "gptcache"
)

// Pair is one labelled pair of prompts.
type Pair struct {
	Set  string // PAWS or GPTCache
	A, B string
	Same bool // label: the two mean the same
}

// LoadPAWS reads a PAWS TSV file (id, sentence1, sentence2, label, with a
// header line). limit > 0 keeps the first limit rows.
func LoadPAWS(path string, limit int) ([]Pair, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	var out []Pair
	for line := 0; sc.Scan(); line++ {
		if line == 0 {
			continue
		}
		x := strings.Split(sc.Text(), "\t")
		if len(x) != 4 || (x[3] != "0" && x[3] != "1") {
			return nil, fmt.Errorf("%s:%d: want id, sentence1, sentence2, label", path, line+1)
		}
		out = append(out, Pair{Set: PAWS, A: x[1], B: x[2], Same: x[3] == "1"})
		if limit > 0 && len(out) == limit {
			break
		}
	}
	return out, sc.Err()
}

// LoadGPTCache reads GPTCache's JSON list of {origin, similar}; every pair
// is a paraphrase. limit > 0 keeps the first limit pairs.
func LoadGPTCache(path string, limit int) ([]Pair, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var raw []struct{ Origin, Similar string }
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if limit > 0 && len(raw) > limit {
		raw = raw[:limit]
	}
	out := make([]Pair, len(raw))
	for i, r := range raw {
		out[i] = Pair{Set: GPTCache, A: r.Origin, B: r.Similar, Same: true}
	}
	return out, nil
}

// LoadDir loads both data sets from dir, which holds the files named by
// pawsFile and gptcacheFile.
func LoadDir(dir, pawsFile, gptcacheFile string) ([]Pair, error) {
	p, err := LoadPAWS(filepath.Join(dir, pawsFile), 0)
	if err != nil {
		return nil, err
	}
	g, err := LoadGPTCache(filepath.Join(dir, gptcacheFile), 0)
	if err != nil {
		return nil, err
	}
	return append(p, g...), nil
}

// Outcome is one query's nearest entry.
type Outcome struct {
	Query    string
	Entry    string // the nearest stored text; "" when nothing is stored
	Set      string
	Positive bool    // the query should hit (its own paraphrase is stored)
	Distance float32 // cosine distance to the nearest entry
	Verdict  int     // Right, Wrong or Unknown: what a hit on that entry would be
	GuardOK  bool    // guard.Check accepts the entry for the query
	Reason   string  // guard.Check's reason when it refuses
	// Candidates are the Candidates nearest entries, nearest first (the
	// first is Entry), as a node's semantic lookup examines them.
	Candidates []Candidate
}

// Candidate is one of a query's nearest entries.
type Candidate struct {
	Entry    string
	Distance float32
	Verdict  int         // Right, Wrong or Unknown
	GuardOK  bool        // guard.Check accepts it
	Diff     guard.Class // guard.Differences
}

// Candidates is how many nearest entries Run keeps per query: as many as a
// node's semantic lookup examines (index.Options.Candidates' default).
const Candidates = 4

// Verdicts of a hit.
const (
	Right = iota
	Wrong
	Unknown
)

// Run embeds the entries and queries built from pairs (see the package
// comment) and returns each query's outcome.
func Run(pairs []Pair, embed func(string) []float32) []Outcome {
	cl := clusters(pairs)
	labels := map[[2]string]bool{}
	for _, p := range pairs {
		labels[[2]string{p.A, p.B}] = p.Same
		labels[[2]string{p.B, p.A}] = p.Same
	}
	clusterOf := map[string]int{}
	for i, p := range pairs {
		clusterOf[p.A], clusterOf[p.B] = cl[i], cl[i]
	}
	// Cache every other cluster in order of first appearance.
	order := map[int]int{}
	for _, c := range cl {
		if _, ok := order[c]; !ok {
			order[c] = len(order)
		}
	}
	cached := func(i int) bool { return order[cl[i]]%2 == 0 }

	idx := graph.NewFlat()
	var texts []string
	stored := map[string]bool{}
	for i, p := range pairs {
		if cached(i) && !stored[p.A] {
			stored[p.A] = true
			idx.Add(uint64(len(texts)), embed(p.A))
			texts = append(texts, p.A)
		}
	}
	type query struct {
		set      string
		text     string
		positive bool
	}
	var queries []query
	asked := map[string]bool{}
	for i, p := range pairs {
		if cached(i) {
			if !stored[p.B] && !asked[p.B] {
				asked[p.B] = true
				queries = append(queries, query{p.Set, p.B, p.Same})
			}
			continue
		}
		for _, t := range []string{p.A, p.B} {
			if !stored[t] && !asked[t] {
				asked[t] = true
				queries = append(queries, query{p.Set, t, false})
			}
		}
	}
	out := make([]Outcome, len(queries))
	for i, q := range queries {
		ms := idx.Search(embed(q.text), Candidates)
		// Among equal distances the entry stored first comes first (what a
		// search for the single nearest gives).
		slices.SortFunc(ms, func(x, y graph.Match) int {
			return cmp.Or(cmp.Compare(x.Distance, y.Distance), cmp.Compare(x.ID, y.ID))
		})
		o := Outcome{Query: q.text, Set: q.set, Positive: q.positive, Distance: 2, Verdict: Wrong}
		for k, m := range ms {
			e := texts[m.ID]
			c := Candidate{Entry: e, Distance: m.Distance}
			same, labelled := labels[[2]string{q.text, e}]
			switch {
			case labelled && same:
				c.Verdict = Right
			case labelled || clusterOf[q.text] != clusterOf[e]:
				c.Verdict = Wrong
			default:
				c.Verdict = Unknown
			}
			var reason string
			c.GuardOK, reason = guard.Check(q.text, e)
			if !c.GuardOK {
				c.Diff = guard.Differences(q.text, e)
			}
			if k == 0 {
				o.Entry, o.Distance, o.Verdict, o.GuardOK, o.Reason = e, c.Distance, c.Verdict, c.GuardOK, reason
			}
			o.Candidates = append(o.Candidates, c)
		}
		out[i] = o
	}
	return out
}

// Score is what a threshold gives on a set of outcomes.
type Score struct {
	Positives int `json:"positives"` // queries that should hit
	Negatives int `json:"negatives"` // queries that must miss
	Right     int `json:"right"`     // hits on a right entry (a labelled paraphrase of the query)
	Wrong     int `json:"wrong"`     // hits on a wrong entry
	Unknown   int `json:"unknown"`   // hits of unknown verdict (not in Precision)
	// PositiveHits are the Right hits of queries that should hit. (A query
	// that must miss its own pair's entry may still rightly hit another
	// entry the data labels its paraphrase.)
	PositiveHits int     `json:"positive_hits"`
	HitRate      float64 `json:"hit_rate"`   // PositiveHits / Positives
	Precision    float64 `json:"precision"`  // Right / (Right + Wrong); 1 with no hits
	FalseHits    float64 `json:"false_hits"` // Wrong / (Positives + Negatives)
}

// Evaluate scores outcomes of the given set ("" for all) at threshold, with
// or without the guard.
func Evaluate(outs []Outcome, set string, threshold float64, useGuard bool) Score {
	var s Score
	for _, o := range outs {
		if set != "" && o.Set != set {
			continue
		}
		if o.Positive {
			s.Positives++
		} else {
			s.Negatives++
		}
		if float64(o.Distance) > threshold || (useGuard && !o.GuardOK) {
			continue
		}
		switch o.Verdict {
		case Unknown:
			s.Unknown++
		case Right:
			s.Right++
			if o.Positive {
				s.PositiveHits++
			}
		default:
			s.Wrong++
		}
	}
	if s.Positives > 0 {
		s.HitRate = float64(s.PositiveHits) / float64(s.Positives)
	}
	s.Precision = 1
	if s.Right+s.Wrong > 0 {
		s.Precision = float64(s.Right) / float64(s.Right+s.Wrong)
	}
	if n := s.Positives + s.Negatives; n > 0 {
		s.FalseHits = float64(s.Wrong) / float64(n)
	}
	return s
}

// clusters returns a cluster number per pair: pairs sharing a text or a bag
// of words are in one cluster.
func clusters(pairs []Pair) []int {
	parent := make([]int, len(pairs))
	for i := range parent {
		parent[i] = i
	}
	find := func(i int) int {
		for parent[i] != i {
			parent[i] = parent[parent[i]]
			i = parent[i]
		}
		return i
	}
	first := map[string]int{}
	link := func(key string, i int) {
		if j, ok := first[key]; ok {
			parent[find(i)] = find(j)
		} else {
			first[key] = i
		}
	}
	for i, p := range pairs {
		for _, t := range []string{p.A, p.B} {
			link("t\x00"+t, i)
			link("b\x00"+bag(t), i)
		}
	}
	out := make([]int, len(pairs))
	for i := range pairs {
		out[i] = find(i)
	}
	return out
}

// bag is the sorted multiset of the lower-cased words of t.
func bag(t string) string {
	w := strings.FieldsFunc(strings.ToLower(t), func(r rune) bool {
		return !('a' <= r && r <= 'z' || '0' <= r && r <= '9' || r > 127)
	})
	slices.Sort(w)
	return strings.Join(w, " ")
}

// Rewordings is the set of trivial rewordings: for each pair's side A, a
// copy changed only in ways that keep its meaning, one kind per pair in
// turn: lower case, the final punctuation changed, "Please" added, a
// contraction or "how can I" for "how do I", doubled spaces. Every pair is
// labelled the same; a cache should answer nearly all of them.
func Rewordings(pairs []Pair) []Pair {
	var out []Pair
	seen := map[string]bool{}
	for i, p := range pairs {
		if seen[p.A] {
			continue
		}
		seen[p.A] = true
		a := strings.TrimSpace(p.A)
		var b string
		switch i % 5 {
		case 0:
			b = strings.ToLower(a)
		case 1:
			b = strings.TrimRight(a, ".?! ")
			if b == a {
				b = a + "?"
			}
		case 2:
			b = "Please " + strings.ToLower(a[:1]) + a[1:]
		case 3:
			r := strings.NewReplacer("How do I ", "How can I ", "how do I ", "how can I ", "What is ", "What's ", "what is ", "what's ", "It is ", "It's ", " is not ", " isn't ")
			b = r.Replace(a)
			if b == a {
				b = strings.Replace(a, " ", "  ", -1)
			}
		default:
			b = strings.Replace(a, " ", "  ", -1)
		}
		out = append(out, Pair{Set: "rewordings", A: a, B: b, Same: true})
	}
	return out
}

// Split divides pairs in two halves by cluster (pairs that share a text or
// a bag of words are in one cluster, which goes wholly to one half),
// alternating clusters in order of first appearance: one half to choose a
// threshold on, the other to score it on.
func Split(pairs []Pair) (tune, held []Pair) {
	cl := clusters(pairs)
	order := map[int]int{}
	for i, p := range pairs {
		if _, ok := order[cl[i]]; !ok {
			order[cl[i]] = len(order)
		}
		if order[cl[i]]%4 < 2 {
			tune = append(tune, p)
		} else {
			held = append(held, p)
		}
	}
	return tune, held
}

// Pick chooses among o's candidates as a node with a judge does (see
// node's semantic lookup): the nearest one within radius that the guard
// accepts, else the nearest one within radius whose refusal a judge may
// settle (guard.Judgeable; judge true). ok is false when there is none.
// Without a judge a node uses only the first kind, within the threshold.
func Pick(o Outcome, radius float64) (c Candidate, judge, ok bool) {
	for _, c := range o.Candidates {
		if float64(c.Distance) <= radius && c.GuardOK {
			return c, false, true
		}
	}
	for _, c := range o.Candidates {
		if float64(c.Distance) <= radius && c.Diff&guard.Hard == 0 {
			return c, true, true
		}
	}
	return Candidate{}, false, false
}

// RadiusPoint is what a verification radius gives on a set of outcomes,
// with an exact judge: the candidates the judge is asked about (those
// within the radius that the threshold does not serve), how many of them
// are right and wrong, and the paraphrase hit rate.
type RadiusPoint struct {
	Radius    float64 `json:"radius"`
	Judged    int     `json:"judged"`
	Right     int     `json:"right"`
	Wrong     int     `json:"wrong"`
	Served    int     `json:"served"` // right hits served within the threshold, no judge
	Positives int     `json:"positives"`
	HitRate   float64 `json:"hit_rate"` // paraphrase queries that hit their right entry, exact judge
	// NoisyError is the share of wrong hits a judge wrong on JudgeError
	// of its answers would give: JudgeError·Wrong / (JudgeError·Wrong +
	// (1−JudgeError)·Right + Served).
	NoisyError float64 `json:"noisy_error"`
}

// Radii are the verification radii RadiusCurve is usually asked about.
var Radii = []float64{0.05, 0.10, 0.15, 0.20, 0.25, 0.30, 0.35, 0.40, 0.45, 0.50, 0.60}

// JudgeError is the share of wrong answers of the judge ChooseRadius
// plans for.
const JudgeError = 0.10

// RadiusCurve scores each radius on outs (threshold: the score threshold,
// within which a guard-accepted candidate is served without a judge).
func RadiusCurve(outs []Outcome, threshold float64, radii []float64) []RadiusPoint {
	var pts []RadiusPoint
	for _, r := range radii {
		p := RadiusPoint{Radius: r}
		hits := 0
		for _, o := range outs {
			if o.Positive {
				p.Positives++
			}
			c, judge, ok := Pick(o, max(r, threshold))
			if !ok {
				continue
			}
			if !judge && float64(c.Distance) <= threshold {
				if c.Verdict == Right {
					p.Served++
					if o.Positive {
						hits++
					}
				}
				continue
			}
			p.Judged++
			switch c.Verdict {
			case Right:
				p.Right++
				if o.Positive {
					hits++
				}
			case Wrong:
				p.Wrong++
			}
		}
		if p.Positives > 0 {
			p.HitRate = float64(hits) / float64(p.Positives)
		}
		e := JudgeError
		if d := e*float64(p.Wrong) + (1-e)*float64(p.Right) + float64(p.Served); d > 0 {
			p.NoisyError = e * float64(p.Wrong) / d
		}
		pts = append(pts, p)
	}
	return pts
}

// ChooseRadius walks out along pts (by increasing radius) while each step
// adds at least as many right candidates for the judge as wrong ones (past
// that, a judge call is more often a refusal than a hit) and a judge wrong
// on JudgeError of its answers keeps the share of wrong hits within
// maxError; it returns the last radius reached, 0 when the first fails.
func ChooseRadius(pts []RadiusPoint, maxError float64) float64 {
	chosen := 0.0
	var prev RadiusPoint
	for _, p := range pts {
		if p.Right-prev.Right < p.Wrong-prev.Wrong || p.NoisyError > maxError {
			break
		}
		chosen, prev = p.Radius, p
	}
	return chosen
}
