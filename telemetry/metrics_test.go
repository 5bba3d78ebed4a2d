package telemetry

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/llmgate/llmgate/quota"
)

func TestMetricsLabelsStayBounded(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg, []string{"team-a"}, []string{"gpt-4o"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	m.Observe(ctx, &Request{Consumer: "team-a", Route: "gpt-4o", Status: 200, Cache: "hit", Saved: 40})
	m.Observe(ctx, &Request{Consumer: "team-a", Route: "made-up-model-1", Status: 404, Cache: "off"})
	m.Observe(ctx, &Request{Consumer: "team-a", Route: "made-up-model-2", Status: 404, Cache: "off"})
	m.Observe(ctx, &Request{Route: "gpt-4o", Status: 401, Cache: "off"})
	want := `
# HELP llmgate_consumer_requests_total Data-plane requests by consumer (empty: not authenticated), route, HTTP status and cache result.
# TYPE llmgate_consumer_requests_total counter
llmgate_consumer_requests_total{cache="hit",code="200",consumer="team-a",route="gpt-4o"} 1
llmgate_consumer_requests_total{cache="off",code="401",consumer="",route="gpt-4o"} 1
llmgate_consumer_requests_total{cache="off",code="404",consumer="team-a",route="other"} 2
# HELP llmgate_cache_tokens_saved_total Tokens the cache spared: the stored usage of each answer served from the cache, by consumer and route.
# TYPE llmgate_cache_tokens_saved_total counter
llmgate_cache_tokens_saved_total{consumer="team-a",route="gpt-4o"} 40
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "llmgate_consumer_requests_total", "llmgate_cache_tokens_saved_total"); err != nil {
		t.Error(err)
	}
}

type fakeLimits []quota.Status

func (f fakeLimits) List(context.Context) []quota.Status { return f }

func TestHeadroomGauges(t *testing.T) {
	reg := prometheus.NewRegistry()
	src := fakeLimits{
		{Consumer: "team-a", TPMLimit: 1000, TPMRemaining: 250, QuotaLimit: 5000, QuotaUsed: 4500, QuotaPeriod: "daily",
			Budget: &quota.Budget{LimitUSD: 50, UsedUSD: 12.5, RemainingUSD: 37.5, Period: "daily"}},
		{Consumer: "team-b", TPMRemaining: quota.Unlimited},                                                                    // no limits: no series
		{Consumer: "team-c", TPMRemaining: quota.Unlimited, Budget: &quota.Budget{LimitUSD: 2, UsedUSD: 2, Period: "monthly"}}, // a budget alone
	}
	if err := RegisterHeadroom(reg, src); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP llmgate_consumer_budget_limit_usd The consumer's money budget for its period, in US dollars.
# TYPE llmgate_consumer_budget_limit_usd gauge
llmgate_consumer_budget_limit_usd{consumer="team-a",period="daily"} 50
llmgate_consumer_budget_limit_usd{consumer="team-c",period="monthly"} 2
# HELP llmgate_consumer_budget_remaining_usd US dollars left of the consumer's money budget in the current period, cluster-wide.
# TYPE llmgate_consumer_budget_remaining_usd gauge
llmgate_consumer_budget_remaining_usd{consumer="team-a",period="daily"} 37.5
llmgate_consumer_budget_remaining_usd{consumer="team-c",period="monthly"} 0
# HELP llmgate_consumer_quota_limit_tokens The consumer's token quota for its period.
# TYPE llmgate_consumer_quota_limit_tokens gauge
llmgate_consumer_quota_limit_tokens{consumer="team-a",period="daily"} 5000
# HELP llmgate_consumer_quota_remaining_tokens Tokens left of the consumer's quota in the current period, cluster-wide.
# TYPE llmgate_consumer_quota_remaining_tokens gauge
llmgate_consumer_quota_remaining_tokens{consumer="team-a",period="daily"} 500
# HELP llmgate_consumer_tpm_limit The consumer's token-per-minute limit.
# TYPE llmgate_consumer_tpm_limit gauge
llmgate_consumer_tpm_limit{consumer="team-a"} 1000
# HELP llmgate_consumer_tpm_remaining Tokens left in the consumer's sliding minute, cluster-wide.
# TYPE llmgate_consumer_tpm_remaining gauge
llmgate_consumer_tpm_remaining{consumer="team-a"} 250
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}
