package affinity

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"strconv"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/cputime"
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

// BenchmarkRememberPaced is what a created response costs the node's CPU
// when creations arrive at a steady rate, as they do under load: the
// Remember call and the writer's share (its batches, Badger's write and
// memtable), as the process's CPU time per record (cpu-ns/record, noisy on
// a shared machine) and the records per write transaction, for the
// writer's gathering window and a shorter one (delay). The batches are as
// large as the rate and the window make them, which a tight loop
// (BenchmarkRemember) does not show. "idle" paces the same loop without
// creating anything: the process's floor (timers, Badger's own tickers),
// to subtract.
func BenchmarkRememberPaced(b *testing.B) {
	for _, rate := range []int{500, 2500} {
		for _, delay := range []time.Duration{0, 2 * time.Millisecond, writeDelay} {
			name := strconv.Itoa(rate) + "/s/idle"
			if delay > 0 {
				name = strconv.Itoa(rate) + "/s/delay=" + delay.String()
			}
			b.Run(name, func(b *testing.B) {
				db, err := store.Open(b.TempDir(), store.Options{})
				if err != nil {
					b.Fatal(err)
				}
				defer db.Close()
				s := Open(Options{DB: db.DB, writeDelay: delay})
				defer s.Close()
				ctx := context.Background()
				every := time.Second / time.Duration(rate)
				i := 0
				cpu0 := cputime.Process()
				start := time.Now()
				for b.Loop() {
					i++
					if delay > 0 {
						if err := s.Remember(ctx, "resp_"+strconv.Itoa(i), Owner{Consumer: "team-a", Backend: "east"}); err != nil {
							b.Fatal(err)
						}
						if i%1000 == 0 {
							_, _ = s.Outgoing(ctx, false)
						}
					}
					if d := time.Until(start.Add(time.Duration(i) * every)); d > 0 {
						time.Sleep(d)
					}
				}
				if err := s.flush(ctx); err != nil {
					b.Fatal(err)
				}
				if delay > 0 {
					b.ReportMetric(float64(i)/float64(max(s.writes.Load(), 1)), "records/write")
				}
				if cpu := cputime.Process() - cpu0; cpu > 0 {
					b.ReportMetric(float64(cpu.Nanoseconds())/float64(i), "cpu-ns/record")
				}
			})
		}
	}
}

// BenchmarkWriteBatch is the writer's work for one batch of new owner
// records (Badger on disk): the first-owner check and the write, for the
// batch sizes the writer sees at 500/s (5 records) and 2,500/s (20), on a
// store already holding 20,000 records, with ids as OpenAI and Azure make
// them (ids=timed: resp_, the creation's Unix time and its fraction in 12
// hex digits, then random hex) and ids in no order (ids=random: a backend
// whose ids are random). ns/record is per record, and cpu-ns/record the
// process's CPU time per record (noisy on a shared machine).
func BenchmarkWriteBatch(b *testing.B) {
	for _, ids := range []string{"timed", "random"} {
		for _, size := range []int{1, 5, 20} {
			b.Run("ids="+ids+"/records="+strconv.Itoa(size), func(b *testing.B) {
				db, err := store.Open(b.TempDir(), store.Options{})
				if err != nil {
					b.Fatal(err)
				}
				defer db.Close()
				s := Open(Options{DB: db.DB})
				defer s.Close()
				ctx := context.Background()
				newID := randomID
				if ids == "timed" {
					newID = timedID
				}
				// The ids are made as if created at 2,500/s (a busy node): a
				// tight loop makes far more in a second than a node does.
				created := time.Now()
				batch := func() []record {
					now := time.Now()
					rs := make([]record, size)
					for j := range rs {
						created = created.Add(time.Second / 2500)
						rs[j] = record{ID: newID(created), Owner: Owner{Consumer: "team-a", Backend: "east"},
							At: now.UnixMilli(), Expires: now.Add(time.Hour).UnixMilli()}
					}
					return rs
				}
				for n := 0; n < 20000; n += size {
					if err := s.apply(ctx, batch(), false); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportAllocs()
				cpu0 := cputime.Process()
				for b.Loop() {
					if err := s.apply(ctx, batch(), false); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*size), "ns/record")
				if cpu := cputime.Process() - cpu0; cpu > 0 {
					// Badger's flushes and compactions included.
					b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*size), "cpu-ns/record")
				}
			})
		}
	}
}

// timedID is a response id as OpenAI and Azure make them: resp_, the
// creation's Unix time in 8 hex digits, the second's fraction (in
// 65,536ths) in 4, then 36 random hex digits.
func timedID(now time.Time) string {
	var b [24]byte
	binary.BigEndian.PutUint32(b[:4], uint32(now.Unix()))
	binary.BigEndian.PutUint16(b[4:6], uint16(uint64(now.Nanosecond())<<16/1e9))
	_, _ = rand.Read(b[6:])
	return "resp_" + hex.EncodeToString(b[:])
}

// randomID is a response id in no order: resp_ and 48 random hex digits.
func randomID(time.Time) string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return "resp_" + hex.EncodeToString(b[:])
}
