package quota

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

func TestApplyLimitsLastWriterWins(t *testing.T) {
	tpm := func(v, at int64, origin string) LimitRecord {
		return LimitRecord{Consumer: "a", TPM: ptrTo(v), TPMAt: at, TPMOrigin: origin}
	}
	quota := func(v, at int64, origin string) LimitRecord {
		return LimitRecord{Consumer: "a", QuotaTokens: ptrTo(v), QuotaAt: at, QuotaOrigin: origin}
	}
	tests := []struct {
		name       string
		recs       []LimitRecord
		tpm, quota int64
	}{
		{"newer wins", []LimitRecord{tpm(500, 100, "n2"), tpm(300, 200, "n3")}, 300, 5000},
		{"older loses", []LimitRecord{tpm(300, 200, "n3"), tpm(500, 100, "n2")}, 300, 5000},
		{"tie: greater origin", []LimitRecord{tpm(400, 100, "n2"), tpm(600, 100, "n3")}, 600, 5000},
		{"tie: greater origin, reversed", []LimitRecord{tpm(600, 100, "n3"), tpm(400, 100, "n2")}, 600, 5000},
		{"fields are independent", []LimitRecord{tpm(700, 300, "n2"), quota(900, 100, "n3"), {Consumer: "a", TPM: ptrTo(1), TPMAt: 200, QuotaTokens: ptrTo(2), QuotaAt: 200}}, 700, 2},
		{"duplicates", []LimitRecord{tpm(700, 300, "n2"), tpm(700, 300, "n2")}, 700, 5000},
		{"negative values ignored", []LimitRecord{tpm(-5, 300, "n2"), quota(-1, 300, "n2")}, 1000, 5000},
		{"unknown consumer ignored", []LimitRecord{{Consumer: "zz", TPM: ptrTo(5), TPMAt: 300}}, 1000, 5000},
		{"version 0 still beats the configuration", []LimitRecord{tpm(50, 0, "")}, 50, 5000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := open(t, newClock(t0), map[string]Limits{"a": {TPM: 1000, QuotaTokens: 5000, Period: Daily}})
			if err := l.ApplyLimits(context.Background(), tt.recs); err != nil {
				t.Fatal(err)
			}
			if st := status(t, l, "a"); st.TPMLimit != tt.tpm || st.QuotaLimit != tt.quota {
				t.Fatalf("tpm %d quota %d, want %d, %d", st.TPMLimit, st.QuotaLimit, tt.tpm, tt.quota)
			}
			// Every shard applies it.
			for _, key := range []string{"", "k1", "k2", "k3", "k4"} {
				if d, _ := l.Headroom(context.Background(), "a", key); d.Limit != tt.tpm {
					t.Fatalf("key %q: limit %d, want %d", key, d.Limit, tt.tpm)
				}
			}
		})
	}
}

func TestApplyLimitsRespectsThisNodesConfiguration(t *testing.T) {
	l := open(t, newClock(t0), map[string]Limits{"b": {TPM: 100}})
	// b has no period here: the quota cannot apply, the TPM can.
	err := l.ApplyLimits(context.Background(), []LimitRecord{{Consumer: "b", TPM: ptrTo(70), TPMAt: 5, QuotaTokens: ptrTo(10), QuotaAt: 5}})
	if err != nil {
		t.Fatal(err)
	}
	if st := status(t, l, "b"); st.TPMLimit != 70 || st.QuotaLimit != 0 {
		t.Fatalf("status %+v", st)
	}
}

func TestSetLimitsIsSentAndWins(t *testing.T) {
	ctx := context.Background()
	c := newClock(t0)
	l := open(t, c, map[string]Limits{"a": {TPM: 1000, QuotaTokens: 5000, Period: Daily}, "b": {TPM: 5}})
	// A peer's change stamped an hour ahead of this node's clock.
	future := t0.Add(time.Hour).UnixNano()
	if err := l.ApplyLimits(ctx, []LimitRecord{{Consumer: "a", TPM: ptrTo(200), TPMAt: future, TPMOrigin: "n9"}}); err != nil {
		t.Fatal(err)
	}
	if _, recs, _ := l.Outgoing(ctx, false); len(recs) != 0 {
		t.Fatalf("a peer's change is not this node's to send: %+v", recs)
	}
	if _, err := l.SetLimits(ctx, "a", ptrTo(300), nil); err != nil {
		t.Fatal(err)
	}
	for round := range resendRounds {
		_, recs, err := l.Outgoing(ctx, false)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 1 || recs[0].Consumer != "a" || *recs[0].TPM != 300 || recs[0].TPMAt != future+1 || recs[0].TPMOrigin != "n1" || recs[0].QuotaTokens != nil {
			t.Fatalf("round %d: %+v", round, recs)
		}
	}
	if _, recs, _ := l.Outgoing(ctx, false); len(recs) != 0 {
		t.Fatalf("still sent after %d rounds: %+v", resendRounds, recs)
	}
	if _, recs, _ := l.Outgoing(ctx, true); len(recs) != 1 || *recs[0].TPM != 300 {
		t.Fatalf("full: %+v", recs)
	}
	// The record a peer receives makes the same change there.
	peer, err := Open(Options{Now: c.now, NodeName: "n2"}, map[string]Limits{"a": {TPM: 1000, QuotaTokens: 5000, Period: Daily}})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	_, recs, _ := l.Outgoing(ctx, true)
	decoded, err := DecodeLimitRecords(EncodeLimitRecords(recs))
	if err != nil {
		t.Fatal(err)
	}
	if err := peer.ApplyLimits(ctx, decoded); err != nil {
		t.Fatal(err)
	}
	if st := status(t, peer, "a"); st.TPMLimit != 300 || st.QuotaLimit != 5000 {
		t.Fatalf("peer: %+v", st)
	}
}

func TestApplyLimitsPersists(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	c := newClock(t0)
	db := openDB(t, dir)
	l := openWithDB(t, db, c, persistLimits, time.Hour)
	recs := []LimitRecord{{Consumer: "a", TPM: ptrTo(50), TPMAt: 7, TPMOrigin: "n2", QuotaTokens: ptrTo(70), QuotaAt: 9, QuotaOrigin: "n3"}}
	if err := l.ApplyLimits(ctx, recs); err != nil {
		t.Fatal(err)
	}
	l.Close()
	db.Close()

	_, l = reopen(t, dir, c, map[string]Limits{"a": {TPM: 9999, QuotaTokens: 9999, Period: Daily}})
	if st := status(t, l, "a"); st.TPMLimit != 50 || st.QuotaLimit != 70 {
		t.Fatalf("after restart: %+v", st)
	}
	// The versions survive: an older change still loses.
	if err := l.ApplyLimits(ctx, []LimitRecord{{Consumer: "a", TPM: ptrTo(1), TPMAt: 6, TPMOrigin: "n9"}}); err != nil {
		t.Fatal(err)
	}
	_, got, _ := l.Outgoing(ctx, true)
	if len(got) != 1 || *got[0].TPM != 50 || got[0].TPMAt != 7 || got[0].TPMOrigin != "n2" || *got[0].QuotaTokens != 70 || got[0].QuotaAt != 9 {
		t.Fatalf("records after restart: %+v", got)
	}
}

func TestLimitsWithoutVersionsLoadAsVersionZero(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, t.TempDir())
	defer db.Close()
	err := db.Update(func(txn *badger.Txn) error {
		return txn.Set([]byte(prefixLimits+"a"), []byte(`{"tpm":50}`))
	})
	if err != nil {
		t.Fatal(err)
	}
	l := openWithDB(t, db, newClock(t0), persistLimits, time.Hour)
	defer l.Close()
	_, recs, _ := l.Outgoing(ctx, true)
	if len(recs) != 1 || *recs[0].TPM != 50 || recs[0].TPMAt != 0 || recs[0].QuotaTokens != nil {
		t.Fatalf("records: %+v", recs)
	}
	if err := l.ApplyLimits(ctx, []LimitRecord{{Consumer: "a", TPM: ptrTo(60), TPMAt: 1, TPMOrigin: "n2"}}); err != nil {
		t.Fatal(err)
	}
	if st := status(t, l, "a"); st.TPMLimit != 60 {
		t.Fatalf("tpm %d, want the versioned change", st.TPMLimit)
	}
}

func TestApplyLimitsAfterClose(t *testing.T) {
	l := open(t, newClock(t0), map[string]Limits{"a": {}})
	l.Close()
	if err := l.ApplyLimits(context.Background(), []LimitRecord{{Consumer: "a", TPM: ptrTo(1)}}); !errors.Is(err, ErrClosed) {
		t.Fatalf("err = %v, want ErrClosed", err)
	}
	if _, err := l.SetLimits(context.Background(), "a", ptrTo(1), nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("SetLimits after Close: err = %v, want ErrClosed", err)
	}
	l.SetPeers([]string{"x"}) // no-op, no hang
	if _, _, err := l.Outgoing(context.Background(), false); !errors.Is(err, ErrClosed) {
		t.Fatalf("Outgoing after Close: err = %v", err)
	}
	if err := l.MergeUsage(context.Background(), []Usage{{Origin: "x", Consumer: "a"}}); !errors.Is(err, ErrClosed) {
		t.Fatalf("MergeUsage after Close: err = %v", err)
	}
}

func TestLimitRecordsRoundTrip(t *testing.T) {
	recs := []LimitRecord{
		{Consumer: "a", TPM: ptrTo(100), TPMAt: 1700000000000000000, TPMOrigin: "gw-1"},
		{Consumer: "b", QuotaTokens: ptrTo(1 << 50), QuotaAt: -5, QuotaOrigin: ""},
		{Consumer: "", TPM: ptrTo(0), QuotaTokens: ptrTo(7), TPMAt: 3, QuotaAt: 4, TPMOrigin: "x", QuotaOrigin: "y"},
		{Consumer: "c"},
	}
	got, err := DecodeLimitRecords(EncodeLimitRecords(recs))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(recs) {
		t.Fatalf("%d records, want %d", len(got), len(recs))
	}
	for i := range recs {
		if !equalRecord(got[i], recs[i]) {
			t.Fatalf("record %d: %+v, want %+v", i, got[i], recs[i])
		}
	}
	for _, bad := range [][]byte{nil, {2, 0}, {1, 5}, {1, 1, 1, 'a', 4}, {1, 1, 1, 'a', 1, 5}, append(EncodeLimitRecords(recs), 0)} {
		if _, err := DecodeLimitRecords(bad); !errors.Is(err, errBadLimitRecords) {
			t.Errorf("% x: err = %v, want errBadLimitRecords", bad, err)
		}
	}
}

func equalRecord(a, b LimitRecord) bool {
	eq := func(x, y *int64) bool { return x == nil && y == nil || x != nil && y != nil && *x == *y }
	return a.Consumer == b.Consumer && eq(a.TPM, b.TPM) && eq(a.QuotaTokens, b.QuotaTokens) &&
		a.TPMAt == b.TPMAt && a.QuotaAt == b.QuotaAt && a.TPMOrigin == b.TPMOrigin && a.QuotaOrigin == b.QuotaOrigin
}

func FuzzDecodeLimitRecords(f *testing.F) {
	f.Add(EncodeLimitRecords([]LimitRecord{{Consumer: "a", TPM: ptrTo(100), TPMAt: 17, TPMOrigin: "gw-1"}, {Consumer: "b", QuotaTokens: ptrTo(5)}}))
	f.Add([]byte{limitRecordsVersion, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		recs, err := DecodeLimitRecords(b)
		if err != nil {
			return
		}
		again, err := DecodeLimitRecords(EncodeLimitRecords(recs))
		if err != nil {
			t.Fatalf("re-decoding: %v", err)
		}
		if len(again) != len(recs) {
			t.Fatalf("%d records, want %d", len(again), len(recs))
		}
		for i := range recs {
			if !equalRecord(again[i], recs[i]) {
				t.Fatalf("record %d: %+v, want %+v", i, again[i], recs[i])
			}
		}
	})
}

func TestSetConfigKeepsRunTimeChangesAndUsage(t *testing.T) {
	ctx := context.Background()
	c := newClock(t0)
	l := open(t, c, map[string]Limits{"a": {TPM: 1000, QuotaTokens: 5000, Period: Daily}, "b": {TPM: 500}})
	if _, err := l.SetLimits(ctx, "a", ptrTo(300), nil); err != nil {
		t.Fatal(err)
	}
	reserve(t, l, "a", "", 100)
	// The file changes a's TPM and quota, drops b and adds d.
	err := l.SetConfig(ctx, map[string]Limits{"a": {TPM: 2000, QuotaTokens: 9000, Period: Daily}, "d": {TPM: 50}})
	if err != nil {
		t.Fatal(err)
	}
	st := status(t, l, "a")
	if st.TPMLimit != 300 {
		t.Errorf("a's run-time TPM must keep precedence over the file: tpm_limit %d, want 300", st.TPMLimit)
	}
	if st.QuotaLimit != 9000 {
		t.Errorf("a's quota, never changed at run time, must follow the file: %d, want 9000", st.QuotaLimit)
	}
	if st.TPMUsed != 100 {
		t.Errorf("usage must survive a reload: tpm_used %d, want 100", st.TPMUsed)
	}
	if st := status(t, l, "d"); st.TPMLimit != 50 {
		t.Errorf("a new consumer gets its limits: %d", st.TPMLimit)
	}
	if _, ok := l.Status(ctx, "b"); ok {
		t.Error("a removed consumer is still listed")
	}
	if _, err := l.SetLimits(ctx, "b", ptrTo(1), nil); !errors.Is(err, ErrUnknownConsumer) {
		t.Errorf("changing a removed consumer's limits: %v, want ErrUnknownConsumer", err)
	}
	if _, d := reserve(t, l, "d", "", 60); d.Allowed {
		t.Error("d's new TPM of 50 is not enforced")
	}
	// Invalid limits change nothing.
	if err := l.SetConfig(ctx, map[string]Limits{"a": {TPM: -1}}); !errors.Is(err, ErrInvalidLimits) {
		t.Fatalf("invalid limits: %v", err)
	}
	if st := status(t, l, "d"); st.TPMLimit != 50 {
		t.Errorf("a refused SetConfig changed the limits: d has %d", st.TPMLimit)
	}
}
