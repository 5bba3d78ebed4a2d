package bench

import (
	"testing"
	"time"
)

func TestParseProcStat(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"123 (llmgate) S 1 123 123 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 100 1000 50", 3 * time.Second, true},
		{"7 (a b) c) R 1 7 7 0 -1 0 0 0 0 0 1 2 0 0", 30 * time.Millisecond, true},
		{"garbage", 0, false},
		{"1 (x) S 1 2", 0, false},
	} {
		got, err := parseProcStat(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseProcStat(%q) = %v, %v; want %v, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}
