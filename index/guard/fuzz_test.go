package guard

import "testing"

// FuzzCheck: Check and Differences never panic, refuse or accept a pair the
// same way whichever side is the query, and agree with each other.
func FuzzCheck(f *testing.F) {
	for _, s := range [][2]string{
		{"Who is Barack Obama?\nHow old is he?", "Who is Donald Trump?\nHow old is he?"},
		{"twenty-one thousand and 5 million", "21,000 and 5,000,000"},
		{"Don't use `rm -rf /` on https://example.com/x", `"quoted" can't bob@example.com`},
		{"3.5.1 v2 GPT-4o 11th -5 1,000.25", "''  `` ’ … ünïcödé ÄÖÜ"},
		{"", "\xff\xfe"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		ok1, r1 := Check(a, b)
		ok2, r2 := Check(b, a)
		if ok1 != ok2 || r1 != r2 {
			t.Errorf("Check(a, b) = %v %q, Check(b, a) = %v %q", ok1, r1, ok2, r2)
		}
		if d1, d2 := Differences(a, b), Differences(b, a); d1 != d2 || (d1 == 0) != ok1 {
			t.Errorf("Differences(a, b) = %b, Differences(b, a) = %b, Check = %v", d1, d2, ok1)
		}
		if ok, r := Check(a, a); !ok {
			t.Errorf("a text refused against itself: %q", r)
		}
	})
}
