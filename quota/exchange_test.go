package quota

import (
	"cmp"
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// day0 is the start of t0's day, the period of Daily limits in these tests.
var day0 = time.Date(2025, 6, 11, 0, 0, 0, 0, time.UTC).Unix()

func TestMergeUsageIsOrderFree(t *testing.T) {
	b0, b1 := bucketOf(t0), bucketOf(t0)+1
	// rec is n2's state after some of its operations: its totals in some
	// buckets and in the period.
	rec := func(period pn, buckets ...BucketUsage) Usage {
		return Usage{Origin: "n2", Consumer: "a", PeriodStart: day0, PeriodAdded: period.added, PeriodRemoved: period.removed, Buckets: buckets, Demand: -1}
	}
	bu := func(b int64, added, removed int64) BucketUsage {
		return BucketUsage{Bucket: b, Added: added, Removed: removed}
	}
	var (
		// Reserve 1024, settled to 300.
		reserved = rec(pn{1024, 0}, bu(b0, 1024, 0))
		settled  = rec(pn{1024, 724}, bu(b0, 1024, 724))
		// Then reserve 500 in the next bucket, settled to 600 (above).
		second = rec(pn{1524, 724}, bu(b1, 500, 0))
		over   = rec(pn{1624, 724}, bu(b1, 600, 0))
		// The settlement of the first reservation travels alone.
		refund = rec(pn{1024, 724}, bu(b0, 1024, 724))
	)
	tests := []struct {
		name     string
		delivery []Usage
		used     int64
	}{
		{"in order", []Usage{reserved, settled}, 300},
		{"refund first", []Usage{settled, reserved}, 300},
		{"duplicated and replayed", []Usage{reserved, settled, reserved, settled, reserved}, 300},
		{"two buckets in order", []Usage{reserved, settled, second, over}, 900},
		{"two buckets reversed", []Usage{over, second, settled, reserved}, 900},
		{"refund alone before its reservation", []Usage{refund, over, second, reserved}, 900},
		{"refund alone, replayed after everything", []Usage{reserved, second, over, refund, reserved, refund}, 900},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := open(t, newClock(t0.Add(2*time.Second)), map[string]Limits{"a": {TPM: 10000, QuotaTokens: 100000, Period: Daily}})
			for _, u := range tt.delivery {
				mergeUsage(t, l, u)
			}
			if st := status(t, l, "a"); st.TPMUsed != tt.used || st.QuotaUsed != tt.used || st.ByNode["n2"] != tt.used {
				t.Fatalf("used %d, quota %d, by node %v; want %d", st.TPMUsed, st.QuotaUsed, st.ByNode, tt.used)
			}
		})
	}
}

// TestMergeUsageMatchesTheOrigin runs random reservations and settlements on
// one node, collects everything it sends, and delivers it to another node
// shuffled, duplicated and replayed: the receiver must hold exactly the
// sender's own totals.
func TestMergeUsageMatchesTheOrigin(t *testing.T) {
	ctx := context.Background()
	lim := map[string]Limits{"a": {TPM: 1 << 40, QuotaTokens: 1 << 40, Period: Daily}}
	for seed := range uint64(5) {
		rng := rand.New(rand.NewPCG(seed, 11))
		c := newClock(t0)
		src, err := Open(Options{Now: c.now, Shards: 2, NodeName: "n2"}, lim)
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		var sent []Usage
		var open []Reservation
		for range 300 {
			c.add(time.Duration(rng.Int64N(100)) * time.Millisecond)
			key := []string{"", "a/user:x"}[rng.IntN(2)]
			if len(open) > 0 && rng.IntN(2) == 0 {
				i := rng.IntN(len(open))
				src.Settle(ctx, open[i], rng.Int64N(2*open[i].Tokens()+1))
				open = slices.Delete(open, i, i+1)
			} else {
				r, _ := reserve(t, src, "a", key, rng.Int64N(2000)+1)
				open = append(open, r)
			}
			full := rng.IntN(20) == 0
			us, _, err := src.Outgoing(ctx, full)
			if err != nil {
				t.Fatal(err)
			}
			// Packets are lost now and then; a full exchange repairs.
			if full || rng.IntN(10) != 0 {
				sent = append(sent, us...)
			}
		}
		us, _, err := src.Outgoing(ctx, true)
		if err != nil {
			t.Fatal(err)
		}
		sent = append(sent, us...)
		// Shuffled, every record once to three times.
		var delivery []Usage
		for _, u := range sent {
			for range 1 + rng.IntN(3) {
				delivery = append(delivery, u)
			}
		}
		rng.Shuffle(len(delivery), func(i, j int) { delivery[i], delivery[j] = delivery[j], delivery[i] })

		dst, err := Open(Options{Now: c.now, Shards: 3, NodeName: "n1"}, lim)
		if err != nil {
			t.Fatal(err)
		}
		defer dst.Close()
		for len(delivery) > 0 {
			n := min(len(delivery), 1+rng.IntN(8))
			mergeUsage(t, dst, delivery[:n]...)
			delivery = delivery[n:]
		}
		want, got := status(t, src, "a"), status(t, dst, "a")
		if got.ByNode["n2"] != want.ByNode["n2"] || got.QuotaUsed != want.QuotaUsed || got.TPMUsed != want.TPMUsed {
			t.Fatalf("seed %d: receiver holds used %d, quota %d; the origin has %d, %d", seed, got.TPMUsed, got.QuotaUsed, want.TPMUsed, want.QuotaUsed)
		}
		if len(got.Keys) != 1 || len(want.Keys) != 1 || got.Keys[0].TPMUsed != want.Keys[0].TPMUsed || got.Keys[0].QuotaUsed != want.Keys[0].QuotaUsed {
			t.Fatalf("seed %d: keys %+v, want %+v", seed, got.Keys, want.Keys)
		}
	}
}

func TestMergeUsagePeriods(t *testing.T) {
	c := newClock(time.Date(2025, 6, 11, 23, 59, 59, 0, time.UTC))
	l := open(t, c, map[string]Limits{"a": {QuotaTokens: 1000, Period: Daily}})
	next := day0 + 86400
	mergeUsage(t, l,
		Usage{Origin: "n2", Consumer: "a", PeriodStart: day0, PeriodAdded: 300},
		Usage{Origin: "n3", Consumer: "a", PeriodStart: day0 - 86400, PeriodAdded: 999}, // older: ignored
		Usage{Origin: "n4", Consumer: "a", PeriodStart: day0, PeriodAdded: 200},
		Usage{Origin: "n4", Consumer: "a", PeriodStart: next, PeriodAdded: 50},          // n4 rolled over first
		Usage{Origin: "n5", Consumer: "a", PeriodStart: next + 86400, PeriodAdded: 999}, // too far ahead
		Usage{Origin: "n6", Consumer: "zz", PeriodStart: day0, PeriodAdded: 999},        // not configured
	)
	if st := status(t, l, "a"); st.QuotaUsed != 300 {
		t.Fatalf("quota used %d, want 300 (n2; n4 now reports the next day)", st.QuotaUsed)
	}
	// An older record of n4 arriving late changes nothing.
	mergeUsage(t, l, Usage{Origin: "n4", Consumer: "a", PeriodStart: day0, PeriodAdded: 400})
	if st := status(t, l, "a"); st.QuotaUsed != 300 {
		t.Fatalf("quota used %d after a late record, want 300", st.QuotaUsed)
	}
	c.add(time.Second) // the next day
	if st := status(t, l, "a"); st.QuotaUsed != 50 {
		t.Fatalf("next day: quota used %d, want n4's 50", st.QuotaUsed)
	}
}

func TestOutgoing(t *testing.T) {
	ctx := context.Background()
	c := newClock(t0)
	l := open(t, c, map[string]Limits{"a": {TPM: 10000, QuotaTokens: 100000, Period: Daily}})
	outgoing := func(full bool) []Usage {
		t.Helper()
		us, _, err := l.Outgoing(ctx, full)
		if err != nil {
			t.Fatal(err)
		}
		return us
	}
	r, _ := reserve(t, l, "a", "", 1000)
	reserve(t, l, "zz", "", 5) // not configured: never sent
	b0 := bucketOf(t0)
	for round := range resendRounds {
		us := outgoing(false)
		if len(us) != 1 || us[0].Origin != "n1" || us[0].Consumer != "a" || us[0].PeriodStart != day0 || us[0].PeriodAdded != 1000 ||
			len(us[0].Buckets) != 1 || us[0].Buckets[0] != (BucketUsage{Bucket: b0, Added: 1000}) || us[0].Demand <= 0 {
			t.Fatalf("round %d: %+v", round, us)
		}
	}
	if us := outgoing(false); len(us) != 0 {
		t.Fatalf("nothing changed for %d rounds, still sent %+v", resendRounds, us)
	}
	// A settlement a few seconds later changes the reservation's bucket.
	c.add(3 * time.Second)
	l.Settle(ctx, r, 400)
	us := outgoing(false)
	if len(us) != 1 || len(us[0].Buckets) != 1 || us[0].Buckets[0] != (BucketUsage{Bucket: b0, Added: 1000, Removed: 600}) || us[0].PeriodRemoved != 600 {
		t.Fatalf("after settling: %+v", us)
	}
	for range resendRounds {
		outgoing(false)
	}
	// Demand decays on both sides alike: no need to send it again.
	c.add(5 * time.Second)
	if us := outgoing(false); len(us) != 0 {
		t.Fatalf("demand decayed as peers expect, still sent %+v", us)
	}
	// A full exchange carries every origin; relayed ones without demand.
	mergeUsage(t, l, Usage{Origin: "n2", Consumer: "a", Buckets: []BucketUsage{bucketAt(c.now(), 70, 10)}, PeriodStart: day0, PeriodAdded: 70, PeriodRemoved: 10, Demand: 5})
	us = outgoing(true)
	if len(us) != 2 || us[0].Origin != "n1" || us[1].Origin != "n2" || us[1].Demand != -1 ||
		len(us[1].Buckets) != 1 || us[1].Buckets[0].Added != 70 || us[1].Buckets[0].Removed != 10 || us[1].PeriodRemoved != 10 ||
		len(us[0].Buckets) != 1 || us[0].Buckets[0].Removed != 600 {
		t.Fatalf("full: %+v", us)
	}
	if st := status(t, l, "a"); st.ByNode["n1"] != 400 || st.ByNode["n2"] != 60 || st.TPMUsed != 460 {
		t.Fatalf("status: %+v", st)
	}
}

// TestOutgoingRepairsLostPackets: a receiver that misses some packets still
// ends with the sender's totals from the next ones.
func TestOutgoingRepairsLostPackets(t *testing.T) {
	ctx := context.Background()
	c := newClock(t0)
	lim := map[string]Limits{"a": {TPM: 1 << 30}}
	src := open(t, c, lim)
	dst, err := Open(Options{Now: c.now, NodeName: "n2"}, lim)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	for i := range 100 {
		c.add(30 * time.Millisecond)
		reserve(t, src, "a", "", 10)
		us, _, err := src.Outgoing(ctx, false)
		if err != nil {
			t.Fatal(err)
		}
		if i%resendRounds != 0 { // two of every three packets lost
			continue
		}
		mergeUsage(t, dst, us...)
	}
	for range resendRounds {
		us, _, _ := src.Outgoing(ctx, false)
		mergeUsage(t, dst, us...)
	}
	if got := status(t, dst, "a").ByNode["n1"]; got != 1000 {
		t.Fatalf("receiver holds %d of the sender's 1000 tokens", got)
	}
}

// sameUsages compares records after joining fragments, with buckets
// normalised.
func sameUsages(t *testing.T, got, want []Usage) {
	t.Helper()
	join := func(us []Usage) []Usage {
		var out []Usage
		for _, u := range us {
			u.Buckets = normalizeBuckets(u.Buckets)
			if n := len(out); n > 0 && out[n-1].Origin == u.Origin && out[n-1].Consumer == u.Consumer && out[n-1].Key == u.Key {
				out[n-1].Buckets = normalizeBuckets(append(out[n-1].Buckets, u.Buckets...))
				continue
			}
			if len(u.Buckets) == 0 {
				u.Buckets = nil
			}
			out = append(out, u)
		}
		return out
	}
	g, w := join(got), join(want)
	if len(g) != len(w) {
		t.Fatalf("%d records, want %d", len(g), len(w))
	}
	for i := range g {
		if !equalUsage(g[i], w[i]) {
			t.Fatalf("record %d:\n got %+v\nwant %+v", i, g[i], w[i])
		}
	}
}

func equalUsage(a, b Usage) bool {
	return a.Origin == b.Origin && a.Consumer == b.Consumer && a.Key == b.Key && a.PeriodStart == b.PeriodStart &&
		a.PeriodAdded == b.PeriodAdded && a.PeriodRemoved == b.PeriodRemoved && a.Demand == b.Demand && slices.Equal(a.Buckets, b.Buckets)
}

func decodeAll(t testing.TB, pkts [][]byte) []Usage {
	t.Helper()
	var out []Usage
	for _, p := range pkts {
		us, err := DecodeUsages(p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, us...)
	}
	return out
}

func randomUsages(rng *rand.Rand, n int) []Usage {
	name := func(max int) string { return strings.Repeat(string(rune('a'+rng.IntN(26))), rng.IntN(max+1)) }
	var us []Usage
	for range n {
		u := Usage{Origin: []string{"gw-1", "gw-2", "gw-3"}[rng.IntN(3)], Consumer: name(20), Key: name(40), Demand: rng.Int64N(100000) - 1}
		if rng.IntN(2) == 0 {
			u.PeriodStart, u.PeriodAdded, u.PeriodRemoved = day0, rng.Int64N(1<<40), rng.Int64N(1<<30)
		}
		b := bucketOf(t0) - 62
		for range rng.IntN(66) {
			b += 1 + rng.Int64N(2)
			u.Buckets = append(u.Buckets, BucketUsage{Bucket: b, Added: rng.Int64N(1 << 24), Removed: rng.Int64N(1 << 16)})
		}
		us = append(us, u)
	}
	slices.SortFunc(us, func(a, b Usage) int {
		return cmp.Or(cmp.Compare(a.Origin, b.Origin), cmp.Compare(a.Consumer, b.Consumer), cmp.Compare(a.Key, b.Key))
	})
	// Unique (origin, consumer, key), so that fragments can be joined back.
	return slices.CompactFunc(us, func(a, b Usage) bool { return a.Origin == b.Origin && a.Consumer == b.Consumer && a.Key == b.Key })
}

func TestEncodeUsagesRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, maxBytes := range []int{200, 1300, 64 << 10} {
		for range 20 {
			us := randomUsages(rng, rng.IntN(40))
			pkts := EncodeUsages(us, maxBytes)
			for _, p := range pkts {
				if len(p) > maxBytes {
					t.Fatalf("packet of %d bytes, max %d", len(p), maxBytes)
				}
			}
			sameUsages(t, decodeAll(t, pkts), us)
		}
	}
}

func TestEncodeUsagesLongRecord(t *testing.T) {
	u := Usage{
		Origin:      "gateway-node-" + strings.Repeat("x", 40),
		Consumer:    "team-" + strings.Repeat("c", 60),
		Key:         "team-c/route:" + strings.Repeat("k", 100),
		PeriodStart: day0, PeriodAdded: 1 << 36, PeriodRemoved: 1 << 30,
		Demand: 123456,
	}
	for i := range int64(61) {
		u.Buckets = append(u.Buckets, BucketUsage{Bucket: bucketOf(t0) - 60 + i, Added: 1<<20 + i, Removed: 1<<17 + i})
	}
	if pkts := EncodeUsages([]Usage{u}, 1300); len(pkts) != 1 || len(pkts[0]) > 1300 {
		t.Fatalf("a full minute of one counter takes %d packets at 1300 bytes", len(pkts))
	} else {
		t.Logf("61 buckets and %d bytes of names: %d bytes", len(u.Origin)+len(u.Consumer)+len(u.Key), len(pkts[0]))
	}
	// At 200 bytes, with names that leave room for some buckets, it splits.
	u.Origin, u.Consumer, u.Key = "gw-1", "team-"+strings.Repeat("c", 30), "team-c/route:"+strings.Repeat("k", 40)
	pkts := EncodeUsages([]Usage{u, u, u}, 200)
	for _, p := range pkts {
		if len(p) > 200 {
			t.Fatalf("packet of %d bytes, max 200", len(p))
		}
	}
	if len(pkts) < 6 {
		t.Fatalf("%d packets for 3 × 61 buckets at 200 bytes", len(pkts))
	}
	got := decodeAll(t, pkts)
	sameUsages(t, got, []Usage{u}) // the copies join into one
	var all []BucketUsage
	for _, g := range got {
		all = append(all, g.Buckets...)
	}
	if len(all) != 3*61 {
		t.Fatalf("%d buckets decoded, want %d", len(all), 3*61)
	}
	// Names too long for any packet still travel, one bucket per packet.
	tiny := EncodeUsages([]Usage{u}, 64)
	if len(tiny) != 61 {
		t.Fatalf("%d packets at 64 bytes, want one per bucket", len(tiny))
	}
	sameUsages(t, decodeAll(t, tiny), []Usage{u})
	// Nothing to send: no packet.
	if pkts := EncodeUsages(nil, 1300); len(pkts) != 0 {
		t.Fatalf("%d packets for nothing", len(pkts))
	}
}

func TestDecodeUsagesRejectsGarbage(t *testing.T) {
	valid := EncodeUsages([]Usage{{Origin: "n", Consumer: "a", PeriodStart: day0, PeriodAdded: 5, Demand: 3,
		Buckets: []BucketUsage{{Bucket: 100, Added: 1}, {Bucket: 102, Added: 2}}}}, 1300)[0]
	tests := []struct {
		name string
		p    []byte
	}{
		{"empty", nil},
		{"unknown version", append([]byte{9}, valid[1:]...)},
		{"back reference first", []byte{usagesVersion, 0}},
		{"name past the end", []byte{usagesVersion, 50, 'x'}},
		{"negative period start", []byte{usagesVersion, 2, 'n', 2, 'a', 0, 1}},
		{"demand below -1", []byte{usagesVersion, 2, 'n', 2, 'a', 0, 0, 3}},
		{"too many buckets", []byte{usagesVersion, 2, 'n', 2, 'a', 0, 0, 0, 100, 0, 0, 0}},
		{"bucket delta 0", []byte{usagesVersion, 2, 'n', 2, 'a', 0, 0, 0, 2, 2, 1, 0, 0, 1, 0}},
		{"negative bucket", []byte{usagesVersion, 2, 'n', 2, 'a', 0, 0, 0, 1, 1, 1, 0}},
		{"tokens over MaxTokens", append([]byte{usagesVersion, 2, 'n', 2, 'a', 0, 0, 0, 1, 2}, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0)},
	}
	for i := 2; i < len(valid); i++ {
		// Every cut inside the record is an error (the version alone is
		// a packet of no records).
		tests = append(tests, struct {
			name string
			p    []byte
		}{"truncated", valid[:i]})
	}
	for _, tt := range tests {
		if us, err := DecodeUsages(tt.p); err == nil || !errors.Is(err, errBadUsages) {
			t.Errorf("%s (% x): %+v, %v; want errBadUsages", tt.name, tt.p, us, err)
		}
	}
	if _, err := DecodeUsages(valid); err != nil {
		t.Fatal(err)
	}
}

func FuzzDecodeUsages(f *testing.F) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 5 {
		for _, p := range EncodeUsages(randomUsages(rng, 3), 300) {
			f.Add(p)
		}
	}
	f.Add([]byte{usagesVersion})
	f.Fuzz(func(t *testing.T, p []byte) {
		us, err := DecodeUsages(p)
		if err != nil {
			return
		}
		again := decodeAll(t, EncodeUsages(us, 1<<20))
		for i := range us {
			us[i].Buckets = normalizeBuckets(us[i].Buckets)
		}
		// Records without buckets stay records: compare one to one.
		if len(again) != len(us) {
			t.Fatalf("%d records re-decoded, want %d", len(again), len(us))
		}
		for i := range us {
			if len(us[i].Buckets) == 0 {
				us[i].Buckets = nil
			}
			if len(again[i].Buckets) == 0 {
				again[i].Buckets = nil
			}
			if !equalUsage(again[i], us[i]) {
				t.Fatalf("record %d: %+v, want %+v", i, again[i], us[i])
			}
		}
	})
}

func TestShareRefusesBeyondTheShare(t *testing.T) {
	c := newClock(t0)
	l := open(t, c, map[string]Limits{"a": {TPM: 10000}, "q": {TPM: 100000, QuotaTokens: 10000, Period: Daily}})
	l.SetPeers([]string{"n2", "n1", "n2", ""})
	// n2 asks for far more than this node: this node's share is small.
	mergeUsage(t, l, Usage{Origin: "n2", Consumer: "a", Demand: 100000}, Usage{Origin: "n2", Consumer: "q", Demand: 100000})
	for _, tt := range []struct{ consumer, reason string }{{"a", ReasonShare}, {"q", ReasonShare}} {
		_, d := reserve(t, l, tt.consumer, "", 2000)
		if d.Allowed || d.Reason != tt.reason || d.RetryAfter <= 0 || d.RetryAfter > 250*time.Millisecond {
			t.Fatalf("%s: %+v, want refused for %s within the peer lag", tt.consumer, d, tt.reason)
		}
		if st := status(t, l, tt.consumer); st.ShareRefusals != 1 || st.TPMUsed != 0 {
			t.Fatalf("%s: status %+v, want one share refusal", tt.consumer, st)
		}
	}
	// Alone again, the same request fits the window.
	l.SetPeers(nil)
	if _, d := reserve(t, l, "a", "", 2000); !d.Allowed {
		t.Fatalf("alone: %+v", d)
	}
}

// TestShareFollowsDemand: with an idle peer, a busy node gets nearly all of
// the remaining budget once its demand has reached the peer.
func TestShareFollowsDemand(t *testing.T) {
	ctx := context.Background()
	c := newClock(t0)
	l := open(t, c, map[string]Limits{"a": {TPM: 10000}})
	l.SetPeers([]string{"n2"})
	// Before its demand is published this node holds half of the budget.
	if _, d := reserve(t, l, "a", "", 6000); d.Allowed || d.Reason != ReasonShare {
		t.Fatalf("6000 of 10000 before any exchange: %+v, want a share refusal", d)
	}
	r, d := reserve(t, l, "a", "", 4000)
	if !d.Allowed {
		t.Fatalf("4000 of 10000: %+v", d)
	}
	l.Settle(ctx, r, 0) // a refund of tokens in flight frees them at once
	if _, _, err := l.Outgoing(ctx, false); err != nil {
		t.Fatal(err)
	}
	c.add(300 * time.Millisecond) // the peer has heard of this node's demand
	// With an idle peer the busy node's share is 5/6 (the floor keeps 1/6
	// for a newcomer): 8000 fits, 9000 would not.
	if _, d := reserve(t, l, "a", "", 9000); d.Allowed || d.Reason != ReasonShare {
		t.Fatalf("9000 of 10000 with an idle peer: %+v, want a share refusal", d)
	}
	if _, d := reserve(t, l, "a", "", 8000); !d.Allowed {
		t.Fatalf("8000 of 10000 with an idle peer: %+v", d)
	}
	// A dead peer's usage counts until it leaves the window.
	mergeUsage(t, l, Usage{Origin: "n3", Consumer: "a", Buckets: []BucketUsage{bucketAt(c.now(), 900, 0)}})
	if st := status(t, l, "a"); st.TPMUsed != 8900 || st.ByNode["n3"] != 900 || st.ByNode["n2"] != 0 {
		t.Fatalf("status %+v", st)
	}
	if _, d := reserve(t, l, "a", "", 1200); d.Allowed || d.Reason != ReasonTPM {
		t.Fatalf("past the window with a dead node's usage: %+v", d)
	}
}
