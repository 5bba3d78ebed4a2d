package quota

import (
	"context"
	"strings"
	"time"
)

// A consumer's money budget is a counter of its own in the limiter, under
// the name BudgetName(consumer), whose unit is the micro-dollar: its period
// quota is the budget, and it is reserved, settled, persisted and exchanged
// between nodes exactly as token counters are. Consumer names cannot contain
// '/', so a budget's name never collides with a consumer's; the admin
// listing shows a budget inside its consumer's Status, never on its own.

// budgetSuffix ends every budget's counter name.
const budgetSuffix = "/usd"

// MicroUSD is one US dollar in the budget counters' unit.
const MicroUSD = 1_000_000

// BudgetName is the name under which consumer's money budget is counted:
// configure Limits{QuotaTokens: dollars * MicroUSD, Period: …} for it and
// reserve and settle costs in micro-dollars under it.
func BudgetName(consumer string) string { return consumer + budgetSuffix }

// isBudget reports whether name is a budget's counter, not a consumer.
func isBudget(name string) bool { return strings.HasSuffix(name, budgetSuffix) }

// Budget is a consumer's money budget as the admin API shows it.
type Budget struct {
	LimitUSD     float64    `json:"limit_usd"`
	UsedUSD      float64    `json:"used_usd"`
	RemainingUSD float64    `json:"remaining_usd"`
	Period       string     `json:"period"`
	ResetsAt     *time.Time `json:"resets_at"`
}

// budgetOf returns the Budget of consumer from its budget counter's Status,
// or nil when the consumer has no budget.
func budgetOf(s Status) *Budget {
	if s.QuotaLimit <= 0 {
		return nil
	}
	return &Budget{
		LimitUSD:     float64(s.QuotaLimit) / MicroUSD,
		UsedUSD:      float64(s.QuotaUsed) / MicroUSD,
		RemainingUSD: float64(max(s.QuotaLimit-s.QuotaUsed, 0)) / MicroUSD,
		Period:       s.QuotaPeriod,
		ResetsAt:     s.QuotaResetsAt,
	}
}

// withBudget adds consumer's budget, if it has one, to st.
func (l *Limiter) withBudget(ctx context.Context, st *Status) {
	name := BudgetName(st.Consumer)
	if _, ok := l.configured()[name]; !ok {
		return
	}
	all, err := l.collect(ctx, name)
	if err != nil {
		return
	}
	st.Budget = budgetOf(l.status(name, all.limits[name], all.views, l.now()))
}
