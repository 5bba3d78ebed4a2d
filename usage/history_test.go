package usage

import (
	"context"
	"encoding/binary"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/llmgate/llmgate/telemetry"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func memDB(t *testing.T) *badger.DB {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions("").WithInMemory(true).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func open(t *testing.T, db *badger.DB, node string, c *clock, prices map[string]Price) *History {
	t.Helper()
	h, err := Open(Options{DB: db, Node: node, Now: c.now, Prices: prices, FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

var t0 = time.Date(2026, 12, 6, 14, 10, 0, 0, time.UTC)

func served(at time.Time, consumer, route, user string, prompt, completion int64) *telemetry.Request {
	return &telemetry.Request{Time: at, Consumer: consumer, Route: route, User: user, Status: 200, Cache: "miss",
		PromptTokens: prompt, CompletionTokens: completion}
}

func query(t *testing.T, h *History, q Query) []Line {
	t.Helper()
	if q.Interval == 0 {
		q.Interval = time.Hour
	}
	if q.From.IsZero() {
		q.From, q.To = t0.Add(-48*time.Hour), t0.Add(time.Hour)
	}
	lines, err := h.Query(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	return lines
}

func total(lines []Line) Totals {
	var t Totals
	for _, l := range lines {
		t.add(l.Totals)
	}
	return t
}

// TestObserveCountsServedRequestsWithCost also counts refusals: each adds
// one to Refused of its consumer, route and hour, and nothing else.
func TestObserveCountsServedRequestsWithCost(t *testing.T) {
	c := &clock{t: t0}
	h := open(t, memDB(t), "gw-1", c, map[string]Price{"gpt-4o": {InputPer1M: 2.5, OutputPer1M: 10, CachedInputPer1M: 1.25}})
	ctx := context.Background()
	h.Observe(ctx, served(t0, "team-a", "gpt-4o", "alice", 1000, 500))
	r := served(t0.Add(time.Minute), "team-a", "gpt-4o", "bob", 1000, 0)
	r.CachedTokens = 400
	h.Observe(ctx, r)
	h.Observe(ctx, &telemetry.Request{Time: t0, Consumer: "team-a", Route: "gpt-4o", Status: 200, Cache: "hit", Saved: 42, SavedPrompt: 30})
	h.Observe(ctx, served(t0.Add(-time.Hour), "team-b", "gpt-4o-mini", "", 10, 10))
	// Refused: counted as such, with no tokens and no cost, even when the
	// refusal reports some; a route that is not one is not named.
	h.Observe(ctx, &telemetry.Request{Time: t0, Consumer: "team-a", Route: "gpt-4o", Status: 429, Refusal: "rate_limit_exceeded", PromptTokens: 99})
	h.Observe(ctx, &telemetry.Request{Time: t0, Consumer: "team-a", Route: "gpt-4o", Status: 403, Refusal: "quota_exceeded"})
	h.Observe(ctx, &telemetry.Request{Time: t0, Consumer: "team-a", Route: "made-up-by-a-client", Status: 404, Refusal: "model_not_found"})
	// Not counted at all: no consumer.
	h.Observe(ctx, &telemetry.Request{Time: t0, Status: 401, Refusal: "invalid_api_key"})

	lines := query(t, h, Query{GroupBy: []string{ByConsumer, ByRoute}})
	if len(lines) != 3 {
		t.Fatalf("lines = %+v, want team-b's earlier hour and team-a's two", lines)
	}
	b, unknown, a := lines[0], lines[1], lines[2]
	if unknown.Consumer != "team-a" || unknown.Route != "" || unknown.Totals != (Totals{Refused: 1}) {
		t.Errorf("team-a's refusal on no route = %+v, want one refused request under route \"\"", unknown)
	}
	if a.Refused != 2 {
		t.Errorf("team-a's gpt-4o line has %d refused, want 2", a.Refused)
	}
	if b.Consumer != "team-b" || !b.Start.Equal(t0.Truncate(time.Hour).Add(-time.Hour)) || b.Requests != 1 || b.CostNano != 0 {
		t.Errorf("team-b line = %+v, want one request in the previous hour, no price", b)
	}
	if a.Consumer != "team-a" || a.Route != "gpt-4o" || a.User != "" || a.Requests != 3 || a.Prompt != 2000 || a.Completion != 500 ||
		a.Cached != 400 || a.CacheHits != 1 || a.Saved != 42 {
		t.Errorf("team-a line = %+v", a)
	}
	// 1600 input at 2.50, 400 cached at 1.25, 500 output at 10 per million.
	want := (1600*2.5 + 400*1.25 + 500*10) / 1e6
	if math.Abs(a.CostUSD()-want) > 1e-9 {
		t.Errorf("cost = %v, want %v", a.CostUSD(), want)
	}
	// The hit spared 30 prompt and 12 completion tokens, priced uncached.
	if wantSaved := (30*2.5 + 12*10) / 1e6; math.Abs(a.SavedUSD()-wantSaved) > 1e-9 {
		t.Errorf("saved = %v, want %v", a.SavedUSD(), wantSaved)
	}
	byUser := query(t, h, Query{GroupBy: []string{ByUser}})
	users := map[string]int64{}
	for _, l := range byUser {
		users[l.User] += l.Requests
	}
	if users["alice"] != 1 || users["bob"] != 1 || users[""] != 2 {
		t.Errorf("requests by user = %v", users)
	}
	days := query(t, h, Query{Interval: 24 * time.Hour})
	if len(days) != 1 || days[0].Requests != 4 || days[0].Refused != 3 || !days[0].Start.Equal(time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("by day = %+v, want one line of 4 requests and 3 refused starting at midnight", days)
	}
}

// exchange hands from's news (or full state) to to, as the cluster would.
func exchange(t *testing.T, from, to *History, full bool) {
	t.Helper()
	rows, err := from.Outgoing(context.Background(), full)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range EncodeRows(rows, 1200) {
		got, err := DecodeRows(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := to.Merge(context.Background(), got); err != nil {
			t.Fatal(err)
		}
	}
}

func TestMergeIsIdempotentAndKeepsADeadNodesHistory(t *testing.T) {
	c := &clock{t: t0}
	a := open(t, memDB(t), "gw-a", c, nil)
	b := open(t, memDB(t), "gw-b", c, nil)
	ctx := context.Background()
	for i := range 5 {
		a.Observe(ctx, served(t0, "team-a", "gpt-4o", "", 10, int64(i)))
		b.Observe(ctx, served(t0, "team-a", "gpt-4o", "", 100, 1))
	}
	exchange(t, a, b, false)
	exchange(t, b, a, false)
	// Replayed, and an older state arriving late: nothing counts twice.
	old, _ := b.Outgoing(ctx, true)
	b.Observe(ctx, served(t0, "team-a", "gpt-4o", "", 100, 1))
	exchange(t, b, a, false)
	exchange(t, b, a, true)
	exchange(t, a, b, true)
	if err := a.Merge(ctx, old); err != nil {
		t.Fatal(err)
	}
	want := Totals{Requests: 11, Prompt: 5*10 + 6*100, Completion: 0 + 1 + 2 + 3 + 4 + 6}
	for name, h := range map[string]*History{"a": a, "b": b} {
		if got := total(query(t, h, Query{})); got != want {
			t.Errorf("node %s: totals = %+v, want %+v", name, got, want)
		}
	}
	// b dies; a still answers with b's part.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if got := total(query(t, a, Query{})); got != want {
		t.Errorf("after b's death: totals = %+v, want %+v", got, want)
	}
}

func TestRestartKeepsHistoryAndStartsANewOrigin(t *testing.T) {
	c := &clock{t: t0}
	db := memDB(t)
	h, err := Open(Options{DB: db, Node: "gw-1", Now: c.now, FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	h.Observe(context.Background(), served(t0, "team-a", "gpt-4o", "", 7, 3))
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	c.set(t0.Add(time.Second))
	h2 := open(t, db, "gw-1", c, nil)
	if h2.Origin() == h.Origin() {
		t.Fatalf("a restarted node reuses origin %q", h.Origin())
	}
	h2.Observe(context.Background(), served(t0.Add(time.Second), "team-a", "gpt-4o", "", 7, 3))
	if got := total(query(t, h2, Query{})); got.Requests != 2 || got.Prompt != 14 || got.Completion != 6 {
		t.Errorf("after restart: %+v, want both lives' requests", got)
	}
}

func TestLostCountsComeBackFromAPeer(t *testing.T) {
	// A node's last unwritten second is lost in a crash, but a peer that had
	// it hands it back.
	c := &clock{t: t0}
	dbA := memDB(t)
	a, err := Open(Options{DB: dbA, Node: "gw-a", Now: c.now, FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	b := open(t, memDB(t), "gw-b", c, nil)
	a.Observe(context.Background(), served(t0, "team-a", "gpt-4o", "", 5, 5))
	exchange(t, a, b, false)
	// Simulate the crash: a's rows never reached its disk; then a restarts
	// on the same database.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := dbA.DropPrefix([]byte(prefix)); err != nil {
		t.Fatal(err)
	}
	a2 := open(t, dbA, "gw-a", c, nil)
	if got := total(query(t, a2, Query{})); got.Requests != 0 {
		t.Fatalf("the crash was not simulated: %+v", got)
	}
	exchange(t, b, a2, true)
	if got := total(query(t, a2, Query{})); got.Requests != 1 || got.Prompt != 5 {
		t.Errorf("after the peer's full state: %+v, want the lost request back", got)
	}
}

func TestRetentionDeletesOldRows(t *testing.T) {
	c := &clock{t: t0}
	db := memDB(t)
	h, err := Open(Options{DB: db, Node: "gw-1", Now: c.now, Retention: 48 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	h.Observe(context.Background(), served(t0.Add(-47*time.Hour), "team-a", "gpt-4o", "", 1, 1))
	h.Observe(context.Background(), served(t0.Add(-10*time.Hour), "team-a", "gpt-4o", "", 1, 1))
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	c.set(t0.Add(2 * time.Hour)) // the first row is now past 48 hours
	h2, err := Open(Options{DB: db, Node: "gw-1", Now: c.now, Retention: 48 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Close()
	if got := total(query(t, h2, Query{From: t0.Add(-100 * time.Hour), To: t0.Add(3 * time.Hour)})); got.Requests != 1 {
		t.Errorf("requests = %d, want only the row within the retention", got.Requests)
	}
	// A peer's row past the retention is not taken either.
	_ = h2.Merge(context.Background(), []Row{{Key: Key{Hour: hourOf(t0.Add(-60 * time.Hour)), Origin: "x@1", Consumer: "team-a"}, Totals: Totals{Requests: 9}}})
	if got := total(query(t, h2, Query{From: t0.Add(-100 * time.Hour), To: t0.Add(3 * time.Hour)})); got.Requests != 1 {
		t.Errorf("requests = %d after merging an expired row", got.Requests)
	}
}

func TestFullExchangeCarriesOlderHoursInTurn(t *testing.T) {
	c := &clock{t: t0}
	a, err := Open(Options{DB: memDB(t), Node: "gw-a", Now: c.now, FlushInterval: time.Hour, FullChunkBytes: 200})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b := open(t, memDB(t), "gw-b", c, nil)
	for h := range 100 {
		a.Observe(context.Background(), served(t0.Add(-time.Duration(h)*time.Hour), "team-a", "gpt-4o", "", 1, 0))
	}
	rounds := 0
	for ; rounds < 200; rounds++ {
		exchange(t, a, b, true)
		if got := total(query(t, b, Query{From: t0.Add(-200 * time.Hour), To: t0.Add(time.Hour)})); got.Requests == 100 {
			break
		}
	}
	if rounds < 2 || rounds >= 200 {
		t.Errorf("b had all 100 hours after %d full exchanges; want several small ones, then all", rounds+1)
	}
}

func TestQueryValidation(t *testing.T) {
	for _, q := range []Query{
		{From: t0, To: t0.Add(time.Hour), Interval: time.Minute},
		{From: t0, To: t0, Interval: time.Hour},
		{From: t0, To: t0.Add(time.Hour), Interval: time.Hour, GroupBy: []string{"backend"}},
	} {
		if q.Validate() == nil {
			t.Errorf("%+v accepted", q)
		}
	}
}

func TestRowsRoundTrip(t *testing.T) {
	rows := []Row{
		{Key: Key{Hour: 3600, Origin: "gw-1@x", Consumer: "team-a", Route: "gpt-4o", User: "ünïcode"}, Totals: Totals{1, 2, 3, 4, 5, 6, 7, 8, 9}},
		{Key: Key{Hour: -7200, Origin: "o"}, Totals: Totals{Requests: 1 << 40}},
	}
	ps := EncodeRows(append(rows, rows...), 60)
	var got []Row
	for _, p := range ps {
		if len(p) > 60 && len(ps) > 1 {
			t.Errorf("a packet of %d bytes exceeds 60", len(p))
		}
		r, err := DecodeRows(p)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, r...)
	}
	if len(got) != 4 || got[0] != rows[0] || got[3] != rows[1] {
		t.Errorf("round trip = %+v", got)
	}
	k := rows[0].Key
	if back, err := parseDiskKey(prefix, diskKey(prefix, k)); err != nil || back != k {
		t.Errorf("disk key round trip = %+v, %v", back, err)
	}
}

// TestOlderEncodingsStillRead: a payload of the first version (eight
// counters a row, no count) from a node not yet upgraded, a row written to
// disk with fewer counters, and a payload from a newer node with counters
// this one does not know all read, the missing counters as 0.
func TestOlderEncodingsStillRead(t *testing.T) {
	row := Row{Key: Key{Hour: 3600, Origin: "gw-1@x", Consumer: "team-a", Route: "gpt-4o"}, Totals: Totals{1, 2, 3, 4, 5, 6, 7, 8, 0}}
	head := appendStrings(binary.AppendVarint(nil, row.Hour), row.Origin, row.Consumer, row.Route, row.User)
	var eight []byte
	for _, v := range []uint64{1, 2, 3, 4, 5, 6, 7, 8} {
		eight = binary.AppendUvarint(eight, v)
	}
	v1 := append(append([]byte{1}, head...), eight...)
	got, err := DecodeRows(append(v1, v1[1:]...))
	if err != nil || len(got) != 2 || got[0] != row || got[1] != row {
		t.Errorf("version 1 payload = %+v, %v; want twice %+v", got, err, row)
	}
	// Eleven counters, two of them unknown here.
	newer := append(append([]byte{2}, head...), 11)
	newer = append(newer, eight...)
	newer = binary.AppendUvarint(newer, 9)
	newer = binary.AppendUvarint(newer, 300)
	newer = binary.AppendUvarint(newer, 1<<20)
	row.Refused = 9
	if got, err := DecodeRows(append(newer, newer[1:]...)); err != nil || len(got) != 2 || got[0] != row || got[1] != row {
		t.Errorf("payload with unknown counters = %+v, %v; want twice %+v", got, err, row)
	}
	for _, tt := range []struct {
		name  string
		value []byte
		want  Totals
		ok    bool
	}{
		{"seven counters, before saved cost", eight[:7], Totals{1, 2, 3, 4, 5, 6, 7, 0, 0}, true},
		{"eight counters, before refusals", eight, Totals{1, 2, 3, 4, 5, 6, 7, 8, 0}, true},
		{"this version's", appendTotals(nil, Totals{1, 2, 3, 4, 5, 6, 7, 8, 9}), Totals{1, 2, 3, 4, 5, 6, 7, 8, 9}, true},
		{"empty", nil, Totals{}, false},
		{"cut inside a counter", []byte{1, 0x80}, Totals{}, false},
	} {
		got, err := readDiskTotals(tt.value)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("%s: %+v, %v; want %+v (ok %v)", tt.name, got, err, tt.want, tt.ok)
		}
	}
}

func FuzzDecodeRows(f *testing.F) {
	for _, p := range EncodeRows([]Row{{Key: Key{Hour: 3600, Origin: "a", Consumer: "b"}, Totals: Totals{Requests: 1}}}, 1000) {
		f.Add(p)
	}
	f.Add([]byte{1, 0xff})
	f.Fuzz(func(t *testing.T, p []byte) {
		rows, err := DecodeRows(p)
		if err != nil {
			return
		}
		// What decodes re-encodes to rows that decode the same.
		for _, q := range EncodeRows(rows, 1<<20) {
			again, err := DecodeRows(q)
			if err != nil || len(again) != len(rows) {
				t.Fatalf("re-encoded rows do not decode: %v", err)
			}
		}
	})
}

// TestSetConfigChangesPricesAndRetention: a reload's prices cost the
// requests observed after it (earlier costs stay), and its retention
// applies to what is taken from then on.
func TestSetConfigChangesPricesAndRetention(t *testing.T) {
	c := &clock{t: t0}
	h := open(t, memDB(t), "gw-1", c, map[string]Price{"gpt-4o": {InputPer1M: 1}})
	ctx := context.Background()
	h.Observe(ctx, served(t0, "team-a", "gpt-4o", "", 1000, 0))
	h.SetConfig(map[string]Price{"gpt-4o": {InputPer1M: 3}, "gpt-4o-mini": {OutputPer1M: 5}}, 24*time.Hour)
	h.Observe(ctx, served(t0, "team-a", "gpt-4o", "", 1000, 0))
	h.Observe(ctx, served(t0, "team-a", "gpt-4o-mini", "", 0, 1000))
	byRoute := map[string]float64{}
	for _, l := range query(t, h, Query{GroupBy: []string{ByRoute}}) {
		byRoute[l.Route] += l.CostUSD()
	}
	if want := (1000*1 + 1000*3) / 1e6; math.Abs(byRoute["gpt-4o"]-want) > 1e-12 {
		t.Errorf("gpt-4o cost = %v, want %v (the old price before, the new one after)", byRoute["gpt-4o"], want)
	}
	if want := 1000 * 5 / 1e6; math.Abs(byRoute["gpt-4o-mini"]-want) > 1e-12 {
		t.Errorf("gpt-4o-mini cost = %v, want %v (a price the reload added)", byRoute["gpt-4o-mini"], want)
	}
	// A peer's row 30 hours old was kept under 400 days, not under 24 hours.
	_ = h.Merge(ctx, []Row{{Key: Key{Hour: hourOf(t0.Add(-30 * time.Hour)), Origin: "x@1", Consumer: "team-a"}, Totals: Totals{Requests: 9}}})
	if got := total(query(t, h, Query{})); got.Requests != 3 {
		t.Errorf("requests = %d: a row past the new retention was taken", got.Requests)
	}
}
