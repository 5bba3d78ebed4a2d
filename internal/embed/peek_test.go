package embed

import ("fmt";"os";"sort";"testing")

func TestPeek(t *testing.T) {
	if os.Getenv("PEEK") == "" { t.Skip() }
	ps := loadPairs(t)
	l := NewLocal()
	type ent struct{ text string; v []float32 }
	var cache []ent
	idx := map[string]int{}
	for i, p := range ps { if i%2 == 0 { if _, ok := idx[p.a]; !ok { idx[p.a] = len(cache); cache = append(cache, ent{p.a, l.Embed(p.a)}) } } }
	var ds []float32
	shown := 0
	for i, p := range ps {
		if _, ok := idx[p.a]; ok || i%2 == 0 { continue }
		q := l.Embed(p.b)
		best, bd := -1, float32(9)
		for j, e := range cache { if d := 1 - dot(q, e.v); d < bd { best, bd = j, d } }
		ds = append(ds, bd)
		if bd < 0.15 && shown < 8 { shown++; fmt.Printf("%.3f src%d\n  Q %s\n  C %s\n", bd, p.src, p.b, cache[best].text) }
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	for _, q := range []float64{0.01, 0.05, 0.1, 0.25, 0.5} { fmt.Println(q, ds[int(q*float64(len(ds)))]) }
	fmt.Println(len(ds))
}
