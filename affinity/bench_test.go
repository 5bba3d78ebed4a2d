package affinity

import (
	"context"
	"strconv"
	"testing"

	"github.com/llmgate/llmgate/internal/store"
)

// BenchmarkRemember is what a created response costs the node: its owner
// record persisted (Badger on disk, as a node runs) and queued for the cluster.
func BenchmarkRemember(b *testing.B) {
	db, err := store.Open(b.TempDir(), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	s := Open(Options{DB: db.DB})
	defer s.Close()
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if err := s.Remember(ctx, "resp_"+strconv.Itoa(i), Owner{Consumer: "team-a", Backend: "east"}); err != nil {
			b.Fatal(err)
		}
		if i%1000 == 0 {
			_, _ = s.Outgoing(ctx, false)
		}
	}
}
