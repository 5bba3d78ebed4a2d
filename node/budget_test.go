package node

import (
	"context"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/config"
	"github.com/llmgate/llmgate/quota"
)

// budgetGateway is a gateway whose consumer team-a has a daily budget of
// usd dollars, on route gpt-4o priced $2.50/$10 per million tokens and route
// free without a price, with a clock the test moves.
func budgetGateway(t *testing.T, usd float64) (*Gateway, *quota.Limiter, *atomic.Int64) {
	t.Helper()
	var clock atomic.Int64
	clock.Store(time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()).UTC() }
	l, err := quota.Open(quota.Options{Now: now}, map[string]quota.Limits{
		"team-a":                   {},
		quota.BudgetName("team-a"): {QuotaTokens: int64(usd * quota.MicroUSD), Period: quota.Daily},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	cfg := &config.Config{
		Backends: []config.Backend{{Name: "b", Kind: "openai", URL: "http://127.0.0.1:1/v1"}},
		Routes: map[string]config.Route{
			"gpt-4o": {Pool: [][]string{{"b"}}, Price: config.Price{InputPer1M: 2.50, OutputPer1M: 10}},
			"free":   {Pool: [][]string{{"b"}}},
		},
		Consumers: []config.Consumer{{Name: "team-a", Keys: []string{"k"}, Quota: config.Quota{USD: usd, Period: "daily"}}},
	}
	cfg.ApplyDefaults()
	g, err := New(cfg, Options{Limiter: l, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return g, l, &clock
}

// spend admits call and settles it with prompt and completion tokens; it
// fails the test if the call is refused.
func spend(t *testing.T, g *Gateway, call *Call, prompt, completion int64) {
	t.Helper()
	a, e := g.admit(context.Background(), call)
	if e != nil {
		t.Fatalf("refused under budget: %d %s", e.Status, e.Message)
	}
	g.settle(context.Background(), &exchange{call: call, adm: a}, &usage{Prompt: prompt, Completion: completion, Total: prompt + completion})
}

func budgetUsed(t *testing.T, l *quota.Limiter) float64 {
	t.Helper()
	st, ok := l.Status(context.Background(), "team-a")
	if !ok || st.Budget == nil {
		t.Fatalf("team-a's status has no budget: %+v", st)
	}
	return st.Budget.UsedUSD
}

func TestMoneyBudget(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, g *Gateway, l *quota.Limiter, clock *atomic.Int64)
	}{
		{"under budget is admitted and charged the settled cost", func(t *testing.T, g *Gateway, l *quota.Limiter, _ *atomic.Int64) {
			spend(t, g, prompt500(t), 500, 100) // 500 × $2.50 + 100 × $10 per million = $0.00225
			if got := budgetUsed(t, l); got != 0.00225 {
				t.Fatalf("used %v USD, want 0.00225", got)
			}
		}},
		{"exhausted budget is a 403 until the period ends", func(t *testing.T, g *Gateway, l *quota.Limiter, _ *atomic.Int64) {
			spend(t, g, prompt500(t), 500, 300) // $0.00425 of $0.005; the next estimate (~$0.0033) does not fit
			_, e := g.admit(ctx, prompt500(t))
			if e == nil || e.Status != http.StatusForbidden || e.Code != "quota_exceeded" || e.Header.Get(HeaderShouldRetry) != "false" {
				t.Fatalf("over budget: %+v", e)
			}
			if ra, _ := strconv.Atoi(e.Header.Get("Retry-After")); ra != 12*3600 {
				t.Fatalf("Retry-After %q, want the 43200 s to midnight UTC", e.Header.Get("Retry-After"))
			}
			// The refused call's token reservation is released: the consumer's
			// token counter holds only the first call.
			if st, _ := l.Status(ctx, "team-a"); st.TPMUsed != 800 {
				t.Fatalf("tokens used %d after a refusal, want 800", st.TPMUsed)
			}
		}},
		{"period reset admits again", func(t *testing.T, g *Gateway, l *quota.Limiter, clock *atomic.Int64) {
			spend(t, g, prompt500(t), 500, 300)
			if _, e := g.admit(ctx, prompt500(t)); e == nil {
				t.Fatal("over budget admitted")
			}
			clock.Add(int64(12 * time.Hour)) // midnight UTC: a new daily period
			spend(t, g, prompt500(t), 500, 0)
			if got := budgetUsed(t, l); got != 0.00125 {
				t.Fatalf("used %v USD in the new period, want 0.00125", got)
			}
		}},
		{"route without price is not limited by money", func(t *testing.T, g *Gateway, l *quota.Limiter, _ *atomic.Int64) {
			spend(t, g, prompt500(t), 500, 300)
			call := prompt500(t)
			call.Route = "free"
			spend(t, g, call, 500, 300)
			if got := budgetUsed(t, l); got != 0.00425 {
				t.Fatalf("used %v USD, want 0.00425 (the free route costs nothing)", got)
			}
		}},
		{"request costing more than the whole budget can never be admitted", func(t *testing.T, g *Gateway, l *quota.Limiter, _ *atomic.Int64) {
			call := prompt500(t)
			n := int64(1000)
			call.Chat.MaxTokens = &n // ~$0.0113 estimated
			_, e := g.admit(ctx, call)
			if e == nil || e.Status != http.StatusTooManyRequests || e.Header.Get(HeaderShouldRetry) != "false" {
				t.Fatalf("a request over the whole budget: %+v", e)
			}
			if got := budgetUsed(t, l); got != 0 {
				t.Fatalf("a refused request charged %v USD", got)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, l, clock := budgetGateway(t, 0.005)
			tc.run(t, g, l, clock)
		})
	}
}
