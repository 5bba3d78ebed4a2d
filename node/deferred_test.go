package node

import (
	"context"
	"testing"

	"github.com/llmgate/llmgate/internal/config"
	"github.com/llmgate/llmgate/quota"
)

// deferGateway is a gateway whose consumer "free" has no limit, "capped" a
// TPM and "paying" a money budget, with an unmetered route "gpt-4o", a
// route "metered" whose backend has a TPM of its own and a route "pair"
// choosing between two backends.
func deferGateway(t *testing.T) (*Gateway, *quota.Limiter) {
	t.Helper()
	l, err := quota.Open(quota.Options{}, map[string]quota.Limits{
		"free":                     {},
		"capped":                   {TPM: 1 << 40},
		"paying":                   {},
		quota.BudgetName("paying"): {QuotaTokens: 1 << 40, Period: quota.Daily},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	cfg := &config.Config{
		Backends: []config.Backend{
			{Name: "b", Kind: "openai", URL: "http://127.0.0.1:1/v1"},
			{Name: "m", Kind: "openai", URL: "http://127.0.0.1:1/v1", TPM: 1 << 30},
			{Name: "b2", Kind: "openai", URL: "http://127.0.0.1:2/v1"},
		},
		Routes: map[string]config.Route{
			"gpt-4o":  {Pool: [][]string{{"b"}}, Price: config.Price{InputPer1M: 2.50, OutputPer1M: 10}},
			"metered": {Pool: [][]string{{"m"}}},
			"pair":    {Pool: [][]string{{"b", "b2"}}},
		},
		Consumers: []config.Consumer{
			{Name: "free", Keys: []string{"k1"}},
			{Name: "capped", Keys: []string{"k2"}, TPM: 1 << 40},
			{Name: "paying", Keys: []string{"k3"}, Quota: config.Quota{USD: 1000, Period: "daily"}},
		},
	}
	cfg.ApplyDefaults()
	g, err := New(cfg, Options{Limiter: l})
	if err != nil {
		t.Fatal(err)
	}
	return g, l
}

// TestAdmitDefersCountingOnlyWithoutLimits: the prompt is counted before
// forwarding unless nothing needs it then: no TPM, quota or budget on the
// consumer and no backend capacity on the route.
func TestAdmitDefersCountingOnlyWithoutLimits(t *testing.T) {
	g, l := deferGateway(t)
	for _, tc := range []struct {
		name, consumer, route string
		deferred              bool
	}{
		{"no limit on an unmetered route is deferred", "free", "gpt-4o", true},
		{"a TPM is counted", "capped", "gpt-4o", false},
		{"a money budget is counted", "paying", "gpt-4o", false},
		{"a metered route is counted", "free", "metered", false},
		{"a route choosing between backends is counted", "free", "pair", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			call := prompt500(t)
			call.Consumer = &Consumer{Name: tc.consumer, CounterKey: config.CounterConsumer}
			call.Route = tc.route
			a, e := g.admit(context.Background(), call)
			if e != nil {
				t.Fatal(e)
			}
			if a.deferred != tc.deferred || a.deferred != (a.prompt == 0) || !a.reserved {
				t.Fatalf("deferred %v, prompt %d, reserved %v; want deferred %v", a.deferred, a.prompt, a.reserved, tc.deferred)
			}
			g.settle(context.Background(), &exchange{call: call, adm: a}, nil)
		})
	}
	tpm := int64(1 << 40)
	if _, err := l.SetLimits(context.Background(), "free", &tpm, nil); err != nil {
		t.Fatal(err)
	}
	call := prompt500(t)
	call.Consumer = &Consumer{Name: "free", CounterKey: config.CounterConsumer}
	if a, _ := g.admit(context.Background(), call); a.deferred || a.prompt == 0 {
		t.Fatalf("a TPM set at run time: deferred %v, prompt %d", a.deferred, a.prompt)
	}
}

// TestDeferredSettlement: a deferred admission is settled to the reply's
// usage as reported; without usage it is charged the prompt, counted then,
// as an admission that counted it first would be.
func TestDeferredSettlement(t *testing.T) {
	g, l := deferGateway(t)
	ctx := context.Background()
	want, _ := g.estimate(prompt500(t))
	for _, tc := range []struct {
		name    string
		reached bool
		u       *usage
		charged int64
	}{
		{"the reply's usage, even below the estimate", true, &usage{Prompt: 7, Completion: 3, Total: 10}, 10},
		{"the reply's usage above the estimate", true, &usage{Prompt: 900, Completion: 100, Total: 1000}, 1000},
		{"no usage: the prompt estimate", true, nil, want},
		{"never sent: nothing", false, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			call := prompt500(t)
			call.Consumer = &Consumer{Name: "free", CounterKey: config.CounterConsumer}
			before, _ := l.Status(ctx, "free")
			a, e := g.admit(ctx, call)
			if e != nil || !a.deferred {
				t.Fatalf("admit: %v, deferred %v", e, a.deferred)
			}
			if got := g.settle(ctx, &exchange{call: call, adm: a, reached: tc.reached}, tc.u); got != tc.charged {
				t.Fatalf("charged %d, want %d", got, tc.charged)
			}
			after, _ := l.Status(ctx, "free")
			if after.TPMUsed-before.TPMUsed != tc.charged {
				t.Fatalf("tpm_used grew by %d, want %d", after.TPMUsed-before.TPMUsed, tc.charged)
			}
		})
	}
}
