package api

import (
	"encoding/csv"
	"encoding/json"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/llmgate/llmgate/usage"
)

func TestAdminUsageJSONAndCSV(t *testing.T) {
	up := newUpstream(t, okChat("east")) // usage 5 + 3
	s := twoBackends(up, up)
	s.history = map[string]usage.Price{"gpt-4o": {InputPer1M: 2.5, OutputPer1M: 10}}
	g := newGateway(t, s)
	for i := range 3 {
		key := []string{keyA, keyA, keyB}[i]
		if a := do(t, "POST", g.data.URL+"/v1/chat/completions", key, chatBody, "x-user-id", "u1"); a.status != 200 {
			t.Fatalf("%d %s", a.status, a.body)
		}
	}
	do(t, "POST", g.data.URL+"/v1/chat/completions", "sk-nobody", chatBody) // no consumer: not counted
	// Refused: counted in refused, under no route for a name that is none.
	if a := do(t, "POST", g.data.URL+"/v1/chat/completions", keyA, `{"model":"gpt-9","messages":[{"role":"user","content":"hi"}]}`, "x-user-id", "u1"); a.status != 404 {
		t.Fatalf("unknown model: %d %s", a.status, a.body)
	}

	get := func(query, accept string) answer {
		return do(t, "GET", g.admin.URL+"/admin/usage"+query, "", "", "Accept", accept)
	}
	type row struct {
		Start            string   `json:"start"`
		Consumer         *string  `json:"consumer"`
		Route            *string  `json:"route"`
		User             *string  `json:"user"`
		Requests         int64    `json:"requests"`
		PromptTokens     int64    `json:"prompt_tokens"`
		CompletionTokens int64    `json:"completion_tokens"`
		CacheHits        *int64   `json:"cache_hits"`
		CostUSD          *float64 `json:"cost_usd"`
		Refused          *int64   `json:"refused"`
	}
	var got struct{ Rows []row }
	// The observer runs after the answer: wait until all three are counted.
	deadline := time.Now().Add(5 * time.Second)
	for {
		a := get("", "")
		if a.status != 200 {
			t.Fatalf("/admin/usage: %d %s", a.status, a.body)
		}
		got.Rows = nil
		if err := json.Unmarshal(a.body, &got); err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, r := range got.Rows {
			n += r.Requests
			if r.Refused != nil {
				n += *r.Refused
			}
		}
		if n == 4 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(got.Rows) != 3 {
		t.Fatalf("rows = %+v, want team-a's refusal, team-a's and team-b's (grouped by consumer and route)", got.Rows)
	}
	if r := got.Rows[0]; r.Consumer == nil || *r.Consumer != "team-a" || r.Route == nil || *r.Route != "" || r.Requests != 0 ||
		r.Refused == nil || *r.Refused != 1 || r.CostUSD == nil || *r.CostUSD != 0 {
		t.Fatalf("team-a's refusal row = %+v, want one refused request under route \"\"", r)
	}
	ra := got.Rows[1]
	if ra.Consumer == nil || *ra.Consumer != "team-a" || ra.Route == nil || *ra.Route != "gpt-4o" || ra.User != nil ||
		ra.Requests != 2 || ra.PromptTokens != 10 || ra.CompletionTokens != 6 || ra.CacheHits == nil || ra.CostUSD == nil ||
		ra.Refused == nil || *ra.Refused != 0 {
		t.Fatalf("team-a row = %+v", ra)
	}
	if want := (10*2.5 + 6*10) / 1e6; math.Abs(*ra.CostUSD-want) > 1e-12 {
		t.Errorf("cost_usd = %v, want %v", *ra.CostUSD, want)
	}
	if _, err := time.Parse(time.RFC3339, ra.Start); err != nil || !strings.HasSuffix(ra.Start, ":00:00Z") {
		t.Errorf("start = %q, want an RFC 3339 hour", ra.Start)
	}

	// Grouped by user only, by day, as CSV.
	a := get("?interval=day&group_by=user&from="+time.Now().Add(-48*time.Hour).UTC().Format(time.RFC3339), "text/csv")
	if a.status != 200 || !strings.HasPrefix(a.header.Get("Content-Type"), "text/csv") {
		t.Fatalf("CSV: %d %s %s", a.status, a.header.Get("Content-Type"), a.body)
	}
	recs, err := csv.NewReader(strings.NewReader(string(a.body))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	wantHeader := "start,user,requests,prompt_tokens,completion_tokens,cached_tokens,cache_hits,tokens_saved,cost_usd,saved_usd,refused"
	if len(recs) != 2 || strings.Join(recs[0], ",") != wantHeader {
		t.Fatalf("CSV = %q, want the header %q and one line", recs, wantHeader)
	}
	if l := recs[1]; l[1] != "u1" || l[2] != "3" || l[3] != "15" || l[4] != "9" || l[10] != "1" || !strings.HasSuffix(l[0], "T00:00:00Z") {
		t.Errorf("CSV line = %q, want u1's day: 3 requests, 15 prompt and 9 completion tokens, 1 refused", l)
	}

	for _, bad := range []string{"?interval=minute", "?from=yesterday", "?group_by=backend", "?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z"} {
		if a := get(bad, ""); a.status != http.StatusBadRequest || a.errorCode(t) != "invalid_request_error" {
			t.Errorf("%s: %d %s, want 400", bad, a.status, a.body)
		}
	}
}

func TestAdminUsageAbsentIs404(t *testing.T) {
	up := newUpstream(t, okChat("east"))
	g := newGateway(t, twoBackends(up, up))
	if a := do(t, "GET", g.admin.URL+"/admin/usage", "", ""); a.status != http.StatusNotFound {
		t.Errorf("/admin/usage without a history: %d", a.status)
	}
}

func TestAdminUsageSavedUSDPricesTheSparedCall(t *testing.T) {
	up := newUpstream(t, okChat("east")) // usage 5 + 3
	s := twoBackends(up, up)
	s.cache = true
	s.history = map[string]usage.Price{"gpt-4o": {InputPer1M: 2.5, OutputPer1M: 10}}
	g := newGateway(t, s)
	hits := 0
	deadline := time.Now().Add(5 * time.Second)
	for hits == 0 && time.Now().Before(deadline) {
		a := do(t, "POST", g.data.URL+"/v1/chat/completions", keyA, chatBody)
		if a.status != 200 {
			t.Fatalf("%d %s", a.status, a.body)
		}
		if a.header.Get("x-llmgate-cache") == "hit" {
			hits++
		}
	}
	if hits == 0 {
		t.Fatal("the repeated prompt never hit the cache")
	}
	var got struct {
		Rows []struct {
			CacheHits   int64    `json:"cache_hits"`
			TokensSaved int64    `json:"tokens_saved"`
			SavedUSD    *float64 `json:"saved_usd"`
		}
	}
	deadline = time.Now().Add(5 * time.Second)
	for {
		a := do(t, "GET", g.admin.URL+"/admin/usage", "", "")
		got.Rows = nil
		if err := json.Unmarshal(a.body, &got); err != nil {
			t.Fatal(err)
		}
		if (len(got.Rows) == 1 && got.Rows[0].CacheHits == 1) || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(got.Rows) != 1 || got.Rows[0].CacheHits != 1 || got.Rows[0].TokensSaved != 8 || got.Rows[0].SavedUSD == nil {
		t.Fatalf("rows = %+v, want one row with the hit and its 8 spared tokens", got.Rows)
	}
	// The spared call: 5 prompt tokens at 2.50 and 3 completion tokens at 10 per million.
	if want := (5*2.5 + 3*10) / 1e6; math.Abs(*got.Rows[0].SavedUSD-want) > 1e-12 {
		t.Errorf("saved_usd = %v, want %v", *got.Rows[0].SavedUSD, want)
	}
}
