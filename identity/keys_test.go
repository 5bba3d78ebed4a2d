package identity

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/store"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func openKeys(t *testing.T, opts KeyOptions) *Keys {
	t.Helper()
	if opts.Consumers == nil {
		opts.Consumers = []string{"team-a", "team-b"}
	}
	k, err := OpenKeys(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k.Close() })
	return k
}

func refusal(t *testing.T, err error) string {
	t.Helper()
	var r *Refusal
	if !errors.As(err, &r) {
		t.Fatalf("want a refusal, got %v", err)
	}
	return r.Reason
}

func TestKeyLifecycle(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	k := openKeys(t, KeyOptions{Now: clk.now})

	nk, err := k.Create(ctx, "team-a", time.Time{}, "ci pipeline")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(nk.Key, nk.Prefix) || !strings.HasPrefix(nk.Prefix, KeyPrefix) || len(nk.Prefix) >= len(nk.Key)/2 {
		t.Fatalf("prefix %q is not a short start of key %q", nk.Prefix, nk.Key)
	}
	if nk.ExpiresAt != nil {
		t.Fatalf("a key created without expiry has expires_at %v", nk.ExpiresAt)
	}
	p, err := k.Authenticate(nk.Key)
	if err != nil || p.Consumer != "team-a" || p.Kind != KindRuntimeKey || p.KeyID != nk.ID {
		t.Fatalf("Authenticate(new key) = %+v, %v", p, err)
	}

	list, err := k.List(ctx, "team-a")
	if err != nil || len(list) != 1 || list[0].ID != nk.ID || list[0].Description != "ci pipeline" || list[0].Prefix != nk.Prefix {
		t.Fatalf("List = %+v, %v", list, err)
	}
	if other, _ := k.List(ctx, "team-b"); len(other) != 0 {
		t.Fatalf("team-b lists team-a's key: %+v", other)
	}

	if err := k.Revoke(ctx, "team-b", nk.ID); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("revoking through another consumer: %v, want ErrUnknownKey", err)
	}
	if err := k.Revoke(ctx, "team-a", nk.ID); err != nil {
		t.Fatal(err)
	}
	if err := k.Revoke(ctx, "team-a", nk.ID); err != nil {
		t.Fatalf("revoking twice: %v", err)
	}
	if msg := refusal(t, func() error { _, err := k.Authenticate(nk.Key); return err }()); !strings.Contains(msg, "revoked") || strings.Contains(msg, nk.Key) {
		t.Fatalf("refusal of a revoked key: %q", msg)
	}
	if list, _ := k.List(ctx, "team-a"); len(list) != 0 {
		t.Fatalf("a revoked key is still listed: %+v", list)
	}
}

func TestKeyAuthentication(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	k := openKeys(t, KeyOptions{Now: clk.now})
	expiring, err := k.Create(ctx, "team-a", clk.now().Add(time.Hour), "")
	if err != nil {
		t.Fatal(err)
	}
	good, err := k.Create(ctx, "team-b", time.Time{}, "")
	if err != nil {
		t.Fatal(err)
	}
	last := "A"
	if strings.HasSuffix(good.Key, "A") {
		last = "B"
	}
	wrongSecret := good.Key[:len(good.Key)-1] + last
	otherID := KeyPrefix + "0123456789abcdef" + good.Key[len(KeyPrefix)+idLen:]

	for _, tc := range []struct {
		name, key string
		mine      bool
	}{
		{"a config-style key is not a run-time key", "sk-team-a", false},
		{"a key of an unknown id is not ours", otherID, false},
		{"a truncated key is not ours", good.Key[:len(good.Key)-1], false},
		{"a wrong secret for a known id is refused", wrongSecret, true},
		{"an empty key is not ours", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := k.Authenticate(tc.key)
			if tc.mine {
				refusal(t, err)
			} else if !errors.Is(err, ErrNotMine) {
				t.Fatalf("got %v, want ErrNotMine", err)
			}
		})
	}

	if _, err := k.Authenticate(expiring.Key); err != nil {
		t.Fatalf("before expiry: %v", err)
	}
	clk.add(time.Hour)
	if msg := refusal(t, func() error { _, err := k.Authenticate(expiring.Key); return err }()); !strings.Contains(msg, "expired") {
		t.Fatalf("refusal of an expired key: %q", msg)
	}
}

func TestKeyCreateRefusesBadInput(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	k := openKeys(t, KeyOptions{Now: clk.now})
	for _, tc := range []struct {
		name     string
		consumer string
		exp      time.Time
		desc     string
		want     error
	}{
		{"unknown consumer", "team-z", time.Time{}, "", ErrUnknownConsumer},
		{"expiry in the past", "team-a", clk.now().Add(-time.Second), "", ErrInvalid},
		{"expiry now", "team-a", clk.now(), "", ErrInvalid},
		{"description too long", "team-a", time.Time{}, strings.Repeat("x", MaxDescription+1), ErrInvalid},
		{"description not UTF-8", "team-a", time.Time{}, "\xff", ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := k.Create(ctx, tc.consumer, tc.exp, tc.desc); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	if list, _ := k.List(ctx, "team-a"); len(list) != 0 {
		t.Fatalf("refused creates left keys: %+v", list)
	}
}

func TestKeysSurviveRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	k, err := OpenKeys(KeyOptions{DB: db.DB, Consumers: []string{"team-a"}})
	if err != nil {
		t.Fatal(err)
	}
	kept, _ := k.Create(ctx, "team-a", time.Time{}, "kept")
	revoked, _ := k.Create(ctx, "team-a", time.Time{}, "revoked")
	if err := k.Revoke(ctx, "team-a", revoked.ID); err != nil {
		t.Fatal(err)
	}
	_ = k.Close()
	_ = db.Close()

	db, err = store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	k = openKeys(t, KeyOptions{DB: db.DB, Consumers: []string{"team-a"}})
	if _, err := k.Authenticate(kept.Key); err != nil {
		t.Fatalf("kept key after restart: %v", err)
	}
	refusal(t, func() error { _, err := k.Authenticate(revoked.Key); return err }())
}

// exchange hands every payload of from's Outgoing to to's Merge.
func exchange(t *testing.T, from, to *Keys, full bool) {
	t.Helper()
	ctx := context.Background()
	pls, err := from.Outgoing(ctx, full)
	if err != nil {
		t.Fatal(err)
	}
	for _, pl := range pls {
		if err := to.Merge(ctx, pl); err != nil {
			t.Fatal(err)
		}
	}
}

func TestKeyReplication(t *testing.T) {
	ctx := context.Background()
	a, b, c := openKeys(t, KeyOptions{}), openKeys(t, KeyOptions{}), openKeys(t, KeyOptions{})

	nk, _ := a.Create(ctx, "team-a", time.Time{}, "")
	exchange(t, a, b, false)
	if _, err := b.Authenticate(nk.Key); err != nil {
		t.Fatalf("replicated key on b: %v", err)
	}
	if pls, _ := a.Outgoing(ctx, false); len(pls) != 0 {
		t.Fatalf("news handed out twice: %d payloads", len(pls))
	}

	// b revokes; a also revokes later. Whatever order the news arrives
	// in, and however often, every node ends revoked at b's time.
	if err := b.Revoke(ctx, "team-a", nk.ID); err != nil {
		t.Fatal(err)
	}
	bNews, _ := b.Outgoing(ctx, false)
	if err := a.Revoke(ctx, "team-a", nk.ID); err != nil {
		t.Fatal(err)
	}
	for _, pl := range append(bNews, bNews...) {
		if err := a.Merge(ctx, pl); err != nil {
			t.Fatal(err)
		}
	}
	refusal(t, func() error { _, err := a.Authenticate(nk.Key); return err }())

	// c missed everything: a full exchange catches it up.
	exchange(t, a, c, true)
	refusal(t, func() error { _, err := c.Authenticate(nk.Key); return err }())
	ra, rb, rc := (*a.snap.Load())[nk.ID], (*b.snap.Load())[nk.ID], (*c.snap.Load())[nk.ID]
	if !ra.RevokedAt.Equal(rb.RevokedAt) || !rb.RevokedAt.Equal(rc.RevokedAt) {
		t.Fatalf("revocation times differ: %v %v %v", ra.RevokedAt, rb.RevokedAt, rc.RevokedAt)
	}

	// A stale copy (not revoked) never un-revokes.
	stale, _ := encodeRecords([]*record{{ID: ra.ID, Consumer: ra.Consumer, Prefix: ra.Prefix, Salt: ra.Salt, Hash: ra.Hash, CreatedAt: ra.CreatedAt}})
	if err := c.Merge(ctx, stale); err != nil {
		t.Fatal(err)
	}
	refusal(t, func() error { _, err := c.Authenticate(nk.Key); return err }())
}

func TestKeyMergeRefusesMalformed(t *testing.T) {
	ctx := context.Background()
	k := openKeys(t, KeyOptions{})
	for _, tc := range []struct{ name, payload string }{
		{"not JSON", `{"v":1,"keys":[`},
		{"unknown version", `{"v":2,"keys":[]}`},
		{"null record", `{"v":1,"keys":[null]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := k.Merge(ctx, []byte(tc.payload)); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	// Well-formed JSON, bad records: skipped, nothing stored.
	bad := `{"v":1,"keys":[{"id":"XYZ","consumer":"team-a"},{"id":"0123456789abcdef","consumer":"team-a","prefix":"sk-lg-01234567","salt":"AAAA","hash":"AAAA","created_at":"2026-01-01T00:00:00Z"}]}`
	if err := k.Merge(ctx, []byte(bad)); err != nil {
		t.Fatal(err)
	}
	if n := len(*k.snap.Load()); n != 0 {
		t.Fatalf("%d malformed records stored", n)
	}
}

func FuzzDecodeRecords(f *testing.F) {
	k, err := OpenKeys(KeyOptions{Consumers: []string{"team-a"}})
	if err != nil {
		f.Fatal(err)
	}
	defer k.Close()
	_, _ = k.Create(context.Background(), "team-a", time.Time{}, "seed")
	pls, _ := k.Outgoing(context.Background(), true)
	for _, pl := range pls {
		f.Add(pl)
	}
	f.Add([]byte(`{"v":1,"keys":[null]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		rs, err := decodeRecords(b)
		if err != nil {
			return
		}
		for _, r := range rs {
			if r.check() != nil {
				continue
			}
			// A well-formed record round-trips.
			again, err := encodeRecords([]*record{r})
			if err != nil {
				t.Fatal(err)
			}
			back, err := decodeRecords(again)
			if err != nil || len(back) != 1 || back[0].ID != r.ID || back[0].check() != nil {
				t.Fatalf("round trip of %+v: %+v, %v", r, back, err)
			}
		}
	})
}
