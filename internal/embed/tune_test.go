package embed

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
)

type pair struct{ a, b string; pos bool; src int }

func loadPairs(t *testing.T) []pair {
	var ps []pair
	f, _ := os.Open("/work/shared/data/paws_dev.tsv")
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	sc.Scan()
	for sc.Scan() {
		x := strings.Split(sc.Text(), "\t")
		ps = append(ps, pair{x[1], x[2], x[3] == "1", 0})
	}
	var g []struct{ Origin, Similar string }
	b, _ := os.ReadFile("/work/shared/data/gptcache_mock_data.json")
	json.Unmarshal(b, &g)
	for _, x := range g {
		ps = append(ps, pair{x.Origin, x.Similar, true, 1})
	}
	return ps
}

func auc(pos, neg []float32) float64 {
	// probability a positive distance < a negative distance
	sort.Slice(neg, func(i, j int) bool { return neg[i] < neg[j] })
	var s float64
	for _, p := range pos {
		s += float64(len(neg)-sort.Search(len(neg), func(i int) bool { return neg[i] > p })) / float64(len(neg))
	}
	return s / float64(len(pos))
}

func evalCfg(ps []pair, c config) string {
	l := newLocal(c)
	// cache side a of even pairs; query side b of all pairs
	type ent struct{ text string; v []float32 }
	var cache []ent
	idx := map[string]int{}
	for i, p := range ps {
		if i%2 == 0 {
			if _, ok := idx[p.a]; !ok {
				idx[p.a] = len(cache)
				cache = append(cache, ent{p.a, l.Embed(p.a)})
			}
		}
	}
	var posD, negD, pawsPos, pawsNeg []float32
	var gptTop1, gptN, pawsTop1, pawsN int
	type res struct{ d float32; ok bool; neg bool; paws0 bool }
	var rs []res
	for _, p := range ps {
		q := l.Embed(p.b)
		best, bd := -1, float32(9)
		for j, e := range cache {
			if d := 1 - dot(q, e.v); d < bd {
				best, bd = j, d
			}
		}
		own, cached := idx[p.a]
		right := cached && best == own
		if cached {
			qd := 1 - dot(q, cache[own].v)
			if p.src == 1 { gptN++; if right { gptTop1++ } }
			if p.src == 0 { if p.pos { pawsPos = append(pawsPos, qd); pawsN++; if right { pawsTop1++ } } else { pawsNeg = append(pawsNeg, qd) } }
			if p.pos { posD = append(posD, qd) }
			rs = append(rs, res{bd, right && p.pos, !p.pos, !p.pos})
		} else {
			negD = append(negD, bd)
			rs = append(rs, res{bd, false, true, false})
		}
	}
	// recall at precision>=0.97 ignoring paws label0
	sort.Slice(rs, func(i, j int) bool { return rs[i].d < rs[j].d })
	var good, bad, bestRec int
	var bestT float32
	npos := 0
	for _, r := range rs { if r.ok { npos++ } }
	for _, r := range rs {
		if r.paws0 { continue }
		if r.ok { good++ } else { bad++ }
		if float64(good)/float64(good+bad) >= 0.97 && good > bestRec { bestRec, bestT = good, r.d }
	}
	return fmt.Sprintf("gptTop1 %.3f pawsTop1 %.3f  AUC pos-vs-unrel %.3f  PAWS AUC %.3f  rec@P97(no paws0) %.3f at t=%.3f",
		float64(gptTop1)/float64(gptN), float64(pawsTop1)/float64(pawsN), auc(posD, negD), auc(pawsPos, pawsNeg), float64(bestRec)/float64(npos), bestT)
}

func TestTune(t *testing.T) {
	if os.Getenv("TUNE") == "" { t.Skip() }
	ps := loadPairs(t)
	base := defaultConfig
	hashed := base; hashed.hashDims, hashed.vecW = Dim, 0
	fmt.Println("default ", evalCfg(ps, base))
	fmt.Println("hashed  ", evalCfg(ps, hashed))
	for _, vw := range []float32{0.3, 0.4, 0.6, 0.7, 0.85} { c := base; c.vecW = vw; fmt.Println("vecW", vw, evalCfg(ps, c)) }
	for _, a := range []float32{10, 30, 300, 1000} { c := base; c.sifA = a; fmt.Println("sifA", a, evalCfg(ps, c)) }
	for _, x := range []float32{0, 0.3, 1.2} { c := base; c.bigramW = x; fmt.Println("bigram", x, evalCfg(ps, c)) }
	for _, x := range []float32{0, 0.5, 2} { c := base; c.charW = x; fmt.Println("char", x, evalCfg(ps, c)) }
}
