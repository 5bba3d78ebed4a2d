package embed

import ("testing";"fmt")

func dot(a, b []float32) (s float32) { for i := range a { s += a[i]*b[i] }; return }

func TestQuick(t *testing.T) {
	l := NewLocal()
	fmt.Println(l.wv.n, l.wv.lookup(wordHash([]byte("the"))), l.wv.rank(l.wv.lookup(wordHash([]byte("king")))))
	ps := [][2]string{{"How do I reset my password?","How can I reset my password?"},{"How do I reset my password?","The weather in Paris is sunny today."},{"the king","the queen"},{"",""},{"car","automobile"}}
	for _, p := range ps { a, b := l.Embed(p[0]), l.Embed(p[1]); fmt.Println(p, dot(a,b), dot(a,a)) }
}
