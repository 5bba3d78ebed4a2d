package node

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/config"
	"github.com/llmgate/llmgate/internal/openai"
)

func TestBreaker(t *testing.T) {
	t0 := time.Unix(1000, 0)
	b := newBreaker(3, 10*time.Second)
	for i := range 2 {
		b.failure(t0)
		if open, _ := b.open(t0); open {
			t.Fatalf("opened after %d failures; threshold is 3", i+1)
		}
	}
	b.failure(t0)
	if open, until := b.open(t0); !open || !until.Equal(t0.Add(10*time.Second)) {
		t.Fatalf("after 3 failures want open until +10s, got open=%v until=%v", open, until)
	}
	// Failures while open (in-flight requests) do not escalate the backoff.
	b.failure(t0.Add(time.Second))
	if _, until := b.open(t0.Add(time.Second)); !until.Equal(t0.Add(10 * time.Second)) {
		t.Fatalf("a failure while open moved the deadline to %v", until)
	}
	// After the cooldown one more failure re-opens it for twice as long.
	t1 := t0.Add(11 * time.Second)
	if open, _ := b.open(t1); open {
		t.Fatal("still open after the cooldown")
	}
	b.failure(t1)
	if _, until := b.open(t1); !until.Equal(t1.Add(20 * time.Second)) {
		t.Fatalf("second opening until %v, want +20s", until.Sub(t1))
	}
	// One success closes it for good.
	b.success()
	t2 := t1.Add(21 * time.Second)
	b.failure(t2)
	if open, _ := b.open(t2); open {
		t.Fatal("a success must reset the failure count")
	}
}

func TestBreakerThrottled(t *testing.T) {
	t0 := time.Unix(1000, 0)
	b := newBreaker(3, 10*time.Second)
	b.throttled(t0, 1500*time.Millisecond)
	if open, until := b.open(t0); !open || until.Sub(t0) != 1500*time.Millisecond {
		t.Fatalf("a 429 with retry-after-ms must open exactly that long, got %v %v", open, until.Sub(t0))
	}
	b.throttled(t0, 500*time.Millisecond)
	if _, until := b.open(t0); until.Sub(t0) != 1500*time.Millisecond {
		t.Fatal("a shorter hint must not shorten the opening")
	}
	if open, _ := b.open(t0.Add(2 * time.Second)); open {
		t.Fatal("open past the hint")
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		h    http.Header
		want time.Duration
	}{
		{"none", http.Header{}, 0},
		{"ms wins", http.Header{"Retry-After-Ms": {"250"}, "Retry-After": {"3"}}, 250 * time.Millisecond},
		{"seconds", http.Header{"Retry-After": {"3"}}, 3 * time.Second},
		{"http date", http.Header{"Retry-After": {now.Add(5 * time.Second).Format(http.TimeFormat)}}, 5 * time.Second},
		{"garbage", http.Header{"Retry-After": {"soon"}}, 0},
		{"negative", http.Header{"Retry-After-Ms": {"-4"}}, 0},
		{"31 years is capped", http.Header{"Retry-After": {"999999999"}}, 5 * time.Minute},
		{"beyond Duration is capped", http.Header{"Retry-After-Ms": {"1e300"}}, 5 * time.Minute},
		{"a far date is capped", http.Header{"Retry-After": {now.AddDate(30, 0, 0).Format(http.TimeFormat)}}, 5 * time.Minute},
	}
	for _, tc := range tests {
		if got := retryAfter(tc.h, now, 5*time.Minute); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestGroupSpreadsByWeight(t *testing.T) {
	a := &backend{name: "a", weight: 3}
	b := &backend{name: "b", weight: 1}
	g := newGroup([]*backend{a, b})
	first := map[string]int{}
	for range 400 {
		order := g.order(nil)
		if len(order) != 2 || order[0] == order[1] {
			t.Fatalf("order must list each backend once: %v", order)
		}
		first[order[0].name]++
	}
	if first["a"] != 300 || first["b"] != 100 {
		t.Fatalf("weights 3:1 must give 300:100 first picks, got %v", first)
	}
}

func TestWithModel(t *testing.T) {
	tests := []struct{ body, model, want string }{
		{`{"messages":[]}`, "gpt-4o", `{"model":"gpt-4o","messages":[]}`},
		{`{}`, "m", `{"model":"m"}`},
		{` {"a":1}`, "m", ` {"model":"m","a":1}`},
		{`{"model":"other"}`, "m", `{"model":"m"}`},
	}
	for _, tc := range tests {
		if got := string(withModel([]byte(tc.body), tc.model)); got != tc.want {
			t.Errorf("withModel(%s, %s) = %s, want %s", tc.body, tc.model, got, tc.want)
		}
	}
}

func TestNewRequest(t *testing.T) {
	up := config.Upstream{BreakerFailures: 1, BreakerCooldown: time.Second}
	call := &Call{Op: openai.OpChat, Route: "gpt-4o", Body: []byte(`{"messages":[]}`), APIVersion: "2025-01-01", RequestID: "rid"}
	tests := []struct {
		name    string
		backend config.Backend
		url     string
		auth    [2]string
		body    string
	}{
		{"azure uses the client's api-version", config.Backend{Name: "e", Kind: "azure", URL: "http://h:1/", APIKey: "ak"},
			"http://h:1/openai/deployments/gpt-4o/chat/completions?api-version=2025-01-01", [2]string{"Api-Key", "ak"}, `{"messages":[]}`},
		{"azure backend version wins", config.Backend{Name: "e", Kind: "azure", URL: "http://h:1", APIVersion: "2024-06-01"},
			"http://h:1/openai/deployments/gpt-4o/chat/completions?api-version=2024-06-01", [2]string{}, `{"messages":[]}`},
		{"openai bearer and model", config.Backend{Name: "o", Kind: "openai", URL: "http://h:2/v1", APIKey: "sk"},
			"http://h:2/v1/chat/completions", [2]string{"Authorization", "Bearer sk"}, `{"model":"gpt-4o","messages":[]}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := newBackend(tc.backend, up).newRequest(context.Background(), call, "2024-10-21")
			if err != nil {
				t.Fatal(err)
			}
			if req.URL.String() != tc.url {
				t.Errorf("URL %s, want %s", req.URL, tc.url)
			}
			if tc.auth[0] != "" && req.Header.Get(tc.auth[0]) != tc.auth[1] {
				t.Errorf("header %s = %q, want %q", tc.auth[0], req.Header.Get(tc.auth[0]), tc.auth[1])
			}
			body, _ := io.ReadAll(req.Body)
			if string(body) != tc.body {
				t.Errorf("body %s, want %s", body, tc.body)
			}
		})
	}
}
