package quota

import (
	"context"
	"testing"
	"time"
)

// TestUnlimitedReserveAsksNoShard: a counter without any limit is reserved
// for without its shard (no id from it), until a limit is set at run time;
// a counter with a limit always goes to its shard.
func TestUnlimitedReserveAsksNoShard(t *testing.T) {
	ctx := context.Background()
	l := open(t, newClock(t0), map[string]Limits{"u": {}, "a": {TPM: 100}})
	for _, consumer := range []string{"u", "stranger"} {
		r, d := reserve(t, l, consumer, "", 1<<30)
		if r.id != 0 || r.unmetered == nil || d != (Decision{Allowed: true}) {
			t.Fatalf("%s: reservation %+v, decision %+v; want unmetered, allowed without a limit", consumer, r, d)
		}
		if d, err := l.Headroom(ctx, consumer, ""); err != nil || d != (Decision{Allowed: true}) {
			t.Fatalf("%s: headroom %+v, %v; want allowed without a limit", consumer, d, err)
		}
	}
	if r, _ := reserve(t, l, "a", "", 10); r.id == 0 || r.unmetered != nil {
		t.Fatalf("limited consumer: reservation %+v made without its shard", r)
	}

	tpm := int64(50)
	if _, err := l.SetLimits(ctx, "u", &tpm, nil); err != nil {
		t.Fatal(err)
	}
	r, d := reserve(t, l, "u", "", 40)
	if r.unmetered != nil || !d.Allowed || d.Limit != 50 || d.Remaining != 10 {
		t.Fatalf("after a TPM was set: %+v, %+v; want a shard reservation leaving 10", r, d)
	}
	if _, d := reserve(t, l, "u", "", 11); d.Allowed || d.Reason != ReasonTPM {
		t.Fatalf("over the new limit: %+v, want refused", d)
	}
	if d, err := l.Headroom(ctx, "u", ""); err != nil || d.Limit != 50 || d.Remaining != 10 {
		t.Fatalf("headroom after a TPM was set: %+v, %v", d, err)
	}
	tpm = 0
	if _, err := l.SetLimits(ctx, "u", &tpm, nil); err != nil {
		t.Fatal(err)
	}
	if r, _ := reserve(t, l, "u", "", 1<<30); r.unmetered == nil {
		t.Fatal("limit removed: reservation still asked the shard")
	}

	// A reload that gives the consumer a quota, and one that takes it away.
	if err := l.SetConfig(ctx, map[string]Limits{"u": {QuotaTokens: 1000, Period: Daily}}); err != nil {
		t.Fatal(err)
	}
	if _, d := reserve(t, l, "u", "", 1001); d.Allowed || d.Reason != ReasonTooLarge {
		t.Fatalf("after a reload set a quota: %+v, want too large", d)
	}
	if err := l.SetConfig(ctx, map[string]Limits{"u": {}}); err != nil {
		t.Fatal(err)
	}
	if r, _ := reserve(t, l, "u", "", 1001); r.unmetered == nil {
		t.Fatal("after a reload removed the quota: reservation still asked the shard")
	}

	done, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := l.Reserve(done, "u", "", 1); err == nil {
		t.Fatal("Reserve with a done context succeeded")
	}
	l.Close()
	if _, _, err := l.Reserve(ctx, "u", "", 1); err == nil {
		t.Fatal("Reserve after Close succeeded")
	}
}

// TestUnmeteredUsageShowsAsReserveAndSettle: settling a reservation made
// without the shard leaves the counters as a Reserve and a Settle would
// have: the tokens in the reservation's bucket (they leave the window 60 s
// after the reservation, not the settlement), under its counter key, once.
func TestUnmeteredUsageShowsAsReserveAndSettle(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		key    string
		settle func(l *Limiter, r Reservation)
		want   int64
	}{
		{"SettleAsync", "", func(l *Limiter, r Reservation) { l.SettleAsync(r, 70) }, 70},
		{"Settle", "", func(l *Limiter, r Reservation) {
			if d := l.Settle(ctx, r, 70); !d.Allowed || d.Limit != 0 {
				t.Fatalf("Settle: %+v", d)
			}
		}, 70},
		{"only the first of two settlements counts", "", func(l *Limiter, r Reservation) {
			copy := r
			l.SettleAsync(r, 70)
			l.SettleAsync(copy, 900)
			l.Settle(ctx, r, 5)
		}, 70},
		{"zero tokens", "", func(l *Limiter, r Reservation) { l.SettleAsync(r, 0) }, 0},
		{"a counter key", "u/user:bob", func(l *Limiter, r Reservation) { l.SettleAsync(r, 70) }, 70},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock(t0.Add(500 * time.Millisecond))
			l := open(t, c, map[string]Limits{"u": {}})
			r, _ := reserve(t, l, "u", tc.key, 1000)
			if st := status(t, l, "u"); st.TPMUsed != 0 {
				t.Fatalf("before settling: used %d", st.TPMUsed) // an unmetered estimate is not charged
			}
			c.add(3 * time.Second) // settled in a later bucket
			tc.settle(l, r)
			used := func() int64 {
				st := status(t, l, "u")
				if tc.key == "" {
					if st.ByNode["n1"] != st.TPMUsed {
						t.Fatalf("by node %v, used %d", st.ByNode, st.TPMUsed)
					}
					return st.TPMUsed
				}
				if len(st.Keys) != 1 || st.Keys[0].Key != tc.key || st.TPMUsed != 0 {
					t.Fatalf("keys %+v, consumer's own used %d", st.Keys, st.TPMUsed)
				}
				return st.Keys[0].TPMUsed
			}
			if got := used(); got != tc.want {
				t.Fatalf("used %d, want %d", got, tc.want)
			}
			us, _, err := l.Outgoing(ctx, false)
			if err != nil {
				t.Fatal(err)
			}
			var sent int64
			for _, u := range us {
				for _, b := range u.Buckets {
					if u.Consumer == "u" && u.Key == tc.key && b.Bucket == bucketOf(t0) {
						sent += b.Added - b.Removed
					}
				}
			}
			if sent != tc.want {
				t.Fatalf("peers told %d tokens in the reservation's bucket, want %d: %+v", sent, tc.want, us)
			}
			c.set(t0.Add(61*time.Second + 100*time.Millisecond)) // the window (61 buckets) has left the reservation's, not the settlement's
			if got := used(); got != 0 {
				t.Fatalf("61 s after the reservation: used %d, want 0 (charged to the reservation's second)", got)
			}
		})
	}
}
