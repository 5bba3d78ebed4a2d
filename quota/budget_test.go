package quota

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestBudgetShowsInsideItsConsumer(t *testing.T) {
	ctx := context.Background()
	l := open(t, newClock(t0), map[string]Limits{
		"team-a":             {TPM: 1000},
		BudgetName("team-a"): {QuotaTokens: 50 * MicroUSD, Period: Monthly},
		"team-b":             {},
	})
	res, d, err := l.Reserve(ctx, BudgetName("team-a"), "", 2_500_000)
	if err != nil || !d.Allowed {
		t.Fatalf("reserving $2.50 of $50: %v %+v", err, d)
	}
	l.Settle(ctx, res, 1_250_000)

	st, ok := l.Status(ctx, "team-a")
	if !ok || st.Budget == nil {
		t.Fatalf("team-a's status has no budget: %+v", st)
	}
	if b := *st.Budget; b.LimitUSD != 50 || b.UsedUSD != 1.25 || b.RemainingUSD != 48.75 || b.Period != "monthly" || b.ResetsAt == nil {
		t.Fatalf("budget %+v, want 50 / 1.25 used / 48.75 left, monthly", b)
	}
	raw, _ := json.Marshal(st)
	for _, field := range []string{`"quota_usd":{"limit_usd":50,"used_usd":1.25,"remaining_usd":48.75,"period":"monthly"`, `"tpm_limit":1000`, `"quota_limit":0`} {
		if !strings.Contains(string(raw), field) {
			t.Errorf("status JSON lacks %s: %s", field, raw)
		}
	}
	if st, _ := l.Status(ctx, "team-b"); st.Budget != nil {
		t.Errorf("a consumer without a budget shows one: %+v", st.Budget)
	}

	list := l.List(ctx)
	if len(list) != 2 || list[0].Consumer != "team-a" || list[1].Consumer != "team-b" {
		t.Fatalf("the listing shows budget counters as consumers: %+v", list)
	}
	if list[0].Budget == nil || list[0].Budget.UsedUSD != 1.25 {
		t.Fatalf("the listing's team-a has budget %+v, want 1.25 used", list[0].Budget)
	}

	if _, ok := l.Status(ctx, BudgetName("team-a")); ok {
		t.Error("a budget counter answers as a consumer of its own")
	}
	zero := int64(0)
	if _, err := l.SetLimits(ctx, BudgetName("team-a"), nil, &zero); !errors.Is(err, ErrUnknownConsumer) {
		t.Errorf("run-time limits on a budget counter: %v, want ErrUnknownConsumer", err)
	}
}
