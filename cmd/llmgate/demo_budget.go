package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// demoBudgetDrive spends team-d's money budget from both nodes in turn:
// each request is charged its cost at gpt-4o's price until the budget is
// spent, then each node answers 403 quota_exceeded. Short 429s (this node's
// part of what is left is in flight) are retried as told. The rows show
// the budget left as the node's GET /admin/quota/team-d reports it. It
// returns how many nodes refused for the budget.
func demoBudgetDrive(ctx context.Context, nodes []*runningNode, send func(demoStep) demoRow, record func(demoRow)) int {
	const body = `{"model":"gpt-4o","max_tokens":24,"messages":[{"role":"user","content":"Draft the weekly status report"}]}`
	refused := map[int]bool{}
	served := 0
	for i := 0; i < 40 && ctx.Err() == nil && len(refused) < len(nodes); i++ {
		n := i % len(nodes)
		if refused[n] {
			continue
		}
		s := demoStep{title: fmt.Sprintf("team-d spends its $%g daily budget", demoBudget), node: n, method: "POST",
			path: "/v1/chat/completions", body: body, key: demoKeyD, wantStatus: http.StatusOK, headers: []string{"x-llmgate-cache", "off"}}
		row := send(s)
		switch row.status {
		case http.StatusTooManyRequests:
			if ms, err := strconv.Atoi(row.header.Get("retry-after-ms")); err == nil && ms <= 1000 {
				time.Sleep(time.Duration(ms) * time.Millisecond)
				continue
			}
		case http.StatusForbidden:
			s.title = fmt.Sprintf("team-d's budget is spent (%d served): 403", served)
			s.wantStatus = http.StatusForbidden
			row.ok = strings.Contains(row.detail, "quota_exceeded") && row.header.Get("x-should-retry") == "false"
			refused[n] = true
		case http.StatusOK:
			served++
		}
		row.step = s
		if left, err := demoBudgetLeft(ctx, nodes[n]); err == nil {
			row.quota = fmt.Sprintf("$%.6f left", left)
		}
		record(row)
	}
	return len(refused)
}

// demoBudgetLeft reads team-d's budget left from n's admin API (loopback:
// the demo sets no admin token).
func demoBudgetLeft(ctx context.Context, n *runningNode) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+n.adminAddr+"/admin/quota/team-d", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var st struct {
		Budget *struct {
			Remaining float64 `json:"remaining_usd"`
		} `json:"quota_usd"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || st.Budget == nil {
		return 0, fmt.Errorf("GET /admin/quota/team-d: %d, no quota_usd (%v)", resp.StatusCode, err)
	}
	return st.Budget.Remaining, nil
}

// demoBudgetGauge returns the line of n's /metrics that holds team-d's
// budget left, as Prometheus scrapes it; false if there is none.
func demoBudgetGauge(ctx context.Context, n *runningNode) (string, bool) {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+n.adminAddr+"/metrics", nil)
	if err != nil {
		return err.Error(), false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err.Error(), false
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, `llmgate_consumer_budget_remaining_usd{consumer="team-d"`) {
			return n.cfg.Node.Name + "'s /metrics: " + line, true
		}
	}
	return "llmgate_consumer_budget_remaining_usd for team-d is missing from " + n.cfg.Node.Name + "'s /metrics", false
}
