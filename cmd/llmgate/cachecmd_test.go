package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCacheCalibrate(t *testing.T) {
	dir := t.TempDir()
	pairs := filepath.Join(dir, "pairs.tsv")
	var b strings.Builder
	b.WriteString("a\tb\tlabel\n")
	for _, p := range [][3]string{
		{"How do I reverse a list in Python?", "how do I reverse a list in python", "1"},
		{"What is the capital of France?", "what is the capital of France", "1"},
		{"Explain the borrow checker in Rust", "explain the borrow checker in Rust.", "1"},
		{"How do I add a user to a group?", "How do I remove a user from a group?", "0"},
		{"print(7 + 3)", "print(7 - 3)", "0"},
		{"Write a poem about a mango tree", "Write a poem about a banana tree", "0"},
		{"Sort a list in Go", "sort a list in Go!", "1"},
		{"Is C++ hard?", "Is C# hard?", "0"},
	} {
		b.WriteString(p[0] + "\t" + p[1] + "\t" + p[2] + "\n")
	}
	if err := os.WriteFile(pairs, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "llmgate.yaml")
	if err := os.WriteFile(cfg, []byte("cache:\n  enabled: true\n  score_threshold: 0.5 # tuned\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	err := run(t.Context(), []string{"cache", "calibrate", "--pairs", pairs, "--config", cfg, "--target-precision", "0.99", "--write"}, &out, &errb)
	if err != nil {
		t.Fatalf("calibrate: %v\n%s%s", err, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "held-out half") || !strings.Contains(out.String(), "wrote cache.score_threshold") {
		t.Fatalf("report lacks the held-out scores or the write:\n%s", out.String())
	}
	got, _ := os.ReadFile(cfg)
	if strings.Contains(string(got), "0.5 # tuned") || !strings.Contains(string(got), "# tuned") {
		t.Errorf("config not rewritten in place: %s", got)
	}
	for _, bad := range [][]string{
		{"cache", "calibrate", "--pairs", filepath.Join(dir, "absent.tsv")},
		{"cache", "calibrate", "--target-precision", "1.5"},
		{"cache", "calibrate", "--write"},
		{"cache", "frobnicate"},
	} {
		if err := run(t.Context(), bad, &out, &errb); err == nil {
			t.Errorf("%v: no error", bad)
		}
	}
}
