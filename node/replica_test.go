package node

import (
	"context"
	"testing"
	"time"

	"github.com/llmgate/llmgate/affinity"
	"github.com/llmgate/llmgate/internal/store"
)

func TestSharedStateCarriesOwnersOnlyWithPeers(t *testing.T) {
	ctx := context.Background()
	db, err := store.Open("", store.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	owners := affinity.Open(affinity.Options{DB: db.DB})
	t.Cleanup(func() { _ = owners.Close(); _ = db.Close() })
	l, _ := oneRouteNode(t)
	st := SharedState{Quota: QuotaExchange{Limiter: l}, Owners: owners}
	ownerPayloads := func(id string) int {
		t.Helper()
		if err := owners.Remember(ctx, id, affinity.Owner{Consumer: "team-a", Backend: "b"}); err != nil {
			t.Fatal(err)
		}
		// The writer hands a record to the news once persisted (within
		// its 10 ms gathering window): Lookup finds it before that.
		var n int
		for range 200 {
			_, reliable, err := st.Outgoing(ctx, false, 1200)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range reliable {
				if len(p) > 0 && p[0] == tagOwners {
					n++
				}
			}
			if n > 0 {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		return n
	}
	st.SetPeers(nil)
	if n := ownerPayloads("resp_alone"); n != 0 {
		t.Fatalf("alone, %d owner payloads", n)
	}
	st.SetPeers([]string{"node-b"})
	if n := ownerPayloads("resp_with_peer"); n == 0 {
		t.Fatal("with a live peer, no owner payload")
	}
}
