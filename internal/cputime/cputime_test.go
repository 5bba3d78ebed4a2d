//go:build unix

package cputime

import (
	"testing"
	"time"
)

func TestProcessGrowsWithWork(t *testing.T) {
	before := Process()
	if before <= 0 {
		t.Fatalf("Process() = %v before any work, want > 0", before)
	}
	// Spin until the process has used 20 ms more CPU, or fail after 5 s.
	deadline := time.Now().Add(5 * time.Second)
	x := 0
	for Process()-before < 20*time.Millisecond {
		for i := range 1_000_000 {
			x += i
		}
		if time.Now().After(deadline) {
			t.Fatalf("Process() grew %v in 5 s of spinning, want >= 20ms", Process()-before)
		}
	}
	_ = x
}
