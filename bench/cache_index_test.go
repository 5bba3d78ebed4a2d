package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

func TestCacheIndexMeasuresBothAndSkipsCoderAboveItsCap(t *testing.T) {
	var out bytes.Buffer
	rep, err := CacheIndex(context.Background(), CacheIndexOptions{
		Sizes: []int{600, 300}, Dim: 16, Queries: 50, MaxCoder: 400, Seed: 1, Latent: 4, Data: DataRandom,
	}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rows) != 4 {
		t.Fatalf("%d rows, want 4 (2 sizes × 2 impls): %+v", len(rep.Rows), rep.Rows)
	}
	if r := rep.Rows[0]; r.Size != 300 || r.Impl != ImplHNSW {
		t.Fatalf("first row is %s at %d; want sizes ascending, hnsw first", r.Impl, r.Size)
	}
	for _, r := range rep.Rows {
		switch {
		case r.Impl == ImplCoder && r.Size == 600:
			if r.Skipped == "" {
				t.Fatalf("coder at 600 entries was measured despite MaxCoder 400")
			}
		case r.Skipped != "":
			t.Fatalf("%s at %d skipped: %s", r.Impl, r.Size, r.Skipped)
		case r.BuildSeconds <= 0 || r.P50K1Micros <= 0 || r.VectorBytesPerEntry != 64:
			t.Fatalf("%s at %d: figures missing: %+v", r.Impl, r.Size, r)
		case r.Impl == ImplHNSW && r.RecallAt1 < 0.95:
			t.Fatalf("hnsw at %d: recall@1 %.3f on a tiny set", r.Size, r.RecallAt1)
		}
	}
	if !strings.Contains(out.String(), "skipped") || !strings.Contains(out.String(), "recall@1") {
		t.Fatalf("table lacks the skipped row or the header:\n%s", out.String())
	}
	if _, err := json.Marshal(rep); err != nil {
		t.Fatalf("report does not marshal: %v", err)
	}
}

func TestCacheIndexRejectsUnknownImpl(t *testing.T) {
	if _, err := CacheIndex(context.Background(), CacheIndexOptions{Impls: []string{"faiss"}}, nil); err == nil {
		t.Fatal("unknown index name accepted")
	}
}

func TestCacheIndexOnEmbeddedPrompts(t *testing.T) {
	rep, err := CacheIndex(context.Background(), CacheIndexOptions{Sizes: []int{500}, Queries: 50, Impls: []string{ImplHNSW}, Seed: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := rep.Rows[0]
	if rep.Data != DataPrompts || rep.Dim != 384 || r.RecallAt1 < 0.95 {
		t.Fatalf("data %s dim %d recall %.3f", rep.Data, rep.Dim, r.RecallAt1)
	}
}

func TestCacheIndexRejectsUnknownBuild(t *testing.T) {
	if _, err := CacheIndex(context.Background(), CacheIndexOptions{Build: "bulk"}, nil); err == nil {
		t.Fatal("unknown build accepted")
	}
}

// TestCacheIndexBuildsAsMissesDo: with BuildMiss each vector is searched for
// before it is added, so every HNSW insert starts from that search; the
// report says how the index was built, and the graph is as good.
func TestCacheIndexBuildsAsMissesDo(t *testing.T) {
	var out bytes.Buffer
	rep, err := CacheIndex(context.Background(), CacheIndexOptions{Sizes: []int{500}, Queries: 50, Impls: []string{ImplHNSW}, Seed: 2, Build: BuildMiss}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if r := rep.Rows[0]; rep.Build != BuildMiss || r.RecallAt1 < 0.95 {
		t.Fatalf("build %s recall %.3f", rep.Build, r.RecallAt1)
	}
	if !strings.Contains(out.String(), "searched for, then added") {
		t.Fatalf("table does not say how the index was built:\n%s", out.String())
	}
}
