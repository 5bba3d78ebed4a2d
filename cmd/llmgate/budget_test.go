package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMoneyBudgetRealProcess runs a node whose consumer has a budget of a
// tenth of a cent on a priced route: requests are served until it is spent,
// then refused with 403 quota_exceeded, and the admin API shows the budget.
func TestMoneyBudgetRealProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes")
	}
	mockURL := startMock(t)
	dir := t.TempDir()
	n := &clusterNode{name: "gw-b", dir: dir, listen: freeAddr(t), admin: freeAddr(t), gossip: freeAddr(t)}
	n.config = nodeConfig{name: n.name, mockURL: mockURL, listen: n.listen, admin: n.admin, gossip: n.gossip,
		consumer: ", quota: {usd: 0.001, period: daily}", route: ", price: {input_per_1m: 10, output_per_1m: 10}"}.write(t, dir)
	n.start(t)

	served, refused := 0, http.Header(nil)
	for i := 0; i < 200 && refused == nil; i++ {
		code, h, body := n.chat(t, fmt.Sprintf("spend the budget %d", i), 5)
		switch code {
		case http.StatusOK:
			served++
		case http.StatusForbidden:
			if !strings.Contains(body, "quota_exceeded") || h.Get("x-should-retry") != "false" || h.Get("Retry-After") == "" {
				t.Fatalf("refusal after %d served: %v %s", served, h, body)
			}
			refused = h
		default:
			t.Fatalf("request %d: %d %s", i, code, body)
		}
	}
	if refused == nil || served < 2 {
		t.Fatalf("%d served, refused %v: a $0.001 budget at $10 per million tokens holds a few small requests", served, refused != nil)
	}

	req, _ := http.NewRequest("GET", "http://"+n.admin+"/admin/quota/team-a", nil)
	req.Header.Set("Authorization", "Bearer admin-t")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		Consumer string `json:"consumer"`
		Budget   *struct {
			Limit     float64 `json:"limit_usd"`
			Used      float64 `json:"used_usd"`
			Remaining float64 `json:"remaining_usd"`
			Period    string  `json:"period"`
		} `json:"quota_usd"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || st.Consumer != "team-a" || st.Budget == nil {
		t.Fatalf("GET /admin/quota/team-a: %v %+v", err, st)
	}
	if b := st.Budget; b.Limit != 0.001 || b.Used <= 0 || b.Used > b.Limit || b.Period != "daily" {
		t.Fatalf("budget after %d served and a refusal: %+v", served, *b)
	}
}

// budgetStatus reads a node's view of team-a's money budget.
func (n *clusterNode) budgetStatus(t *testing.T) (limit, used float64) {
	t.Helper()
	var st struct {
		Budget *struct {
			Limit float64 `json:"limit_usd"`
			Used  float64 `json:"used_usd"`
		} `json:"quota_usd"`
	}
	if code := n.adminDo(t, "GET", "/admin/quota/team-a", "", &st); code != 200 || st.Budget == nil {
		t.Fatalf("%s: GET /admin/quota/team-a: %d %+v", n.name, code, st)
	}
	return st.Budget.Limit, st.Budget.Used
}

// TestMoneyBudgetAcrossTwoNodes spends a budget of a fifth of a cent from
// both nodes of a cluster in turn. Near its end each node's share of what is
// left is smaller than a request's cost while the whole remainder is not:
// the budget must still end, as a 403 on both nodes, after being spent to
// within a few requests' cost and not beyond about one, and never with an
// endless run of 429s. Both nodes then show the same spending, and their
// usage histories count the served requests and every refusal.
func TestMoneyBudgetAcrossTwoNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes")
	}
	mockURL := startMock(t)
	nodes := make([]*clusterNode, 2)
	for i, name := range []string{"gw-a", "gw-b"} {
		n := &clusterNode{name: name, dir: t.TempDir(), listen: freeAddr(t), admin: freeAddr(t), gossip: freeAddr(t)}
		var join []string
		if i > 0 {
			join = []string{nodes[0].gossip}
		}
		n.config = nodeConfig{name: name, mockURL: mockURL, listen: n.listen, admin: n.admin, gossip: n.gossip, join: join,
			consumer: ", quota: {usd: 0.002, period: daily}", route: ", price: {input_per_1m: 10, output_per_1m: 10}"}.write(t, n.dir)
		n.start(t)
		nodes[i] = n
	}
	waitFor(t, 30*time.Second, "joined", bothAlive(t, nodes...))

	// Each request costs about 20 tokens at $10 per million: $0.0002.
	const maxCost = 0.0003
	served, shareRefusals, budgetRefusals := 0, 0, 0
	var done [2]bool
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; !(done[0] && done[1]); i++ {
		if i >= 400 || time.Now().After(deadline) {
			t.Fatalf("after %d requests (%d served, %d refused by a node's share): the budget has not ended on both nodes (%v)", i, served, shareRefusals, done)
		}
		k := i % 2
		code, h, body := nodes[k].chat(t, fmt.Sprintf("spend the shared budget %d", i), 5)
		switch code {
		case http.StatusOK:
			served++
		case http.StatusTooManyRequests:
			// The node's part of what is left is in flight: a short wait.
			ms, err := strconv.Atoi(h.Get("Retry-After-Ms"))
			if err != nil || ms <= 0 || ms > 5000 || h.Get("x-should-retry") == "false" {
				t.Fatalf("429 from %s: %v %s", nodes[k].name, h, body)
			}
			shareRefusals++
			time.Sleep(time.Duration(ms) * time.Millisecond)
		case http.StatusForbidden:
			if !strings.Contains(body, "quota_exceeded") || h.Get("x-should-retry") != "false" {
				t.Fatalf("403 from %s: %v %s", nodes[k].name, h, body)
			}
			done[k] = true
			budgetRefusals++
		default:
			t.Fatalf("request %d to %s: %d %s", i, nodes[k].name, code, body)
		}
	}
	if served < 4 {
		t.Fatalf("only %d served from a budget of about ten requests", served)
	}
	var used [2]float64
	waitFor(t, 20*time.Second, "both nodes show the same spending", func() bool {
		for i, n := range nodes {
			_, used[i] = n.budgetStatus(t)
		}
		return used[0] == used[1]
	})
	// The history counts what the clients saw on both nodes: the served
	// requests and the refusals (the 429s and the 403s).
	for _, n := range nodes {
		var requests, refused int64
		deadline := time.Now().Add(10 * time.Second)
		for {
			requests, refused = n.usageServedAndRefused(t)
			if requests == int64(served) && refused == int64(shareRefusals+budgetRefusals) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s's usage history counts %d requests and %d refused; the clients saw %d served, %d refused by a node's share and %d by the budget",
					n.name, requests, refused, served, shareRefusals, budgetRefusals)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	limit, _ := nodes[0].budgetStatus(t)
	t.Logf("%d served, %d refused by a node's share; $%.6f of $%.6f used", served, shareRefusals, used[0], limit)
	if used[0] > limit+maxCost || used[0] < limit-3*maxCost {
		t.Fatalf("$%.6f of a budget of $%.6f used: want it spent to within three requests' cost and not beyond one", used[0], limit)
	}
}

// usageServedAndRefused sums the requests and the refusals of n's
// /admin/usage over the last day.
func (n *clusterNode) usageServedAndRefused(t *testing.T) (requests, refused int64) {
	t.Helper()
	var u struct {
		Rows []struct {
			Requests int64 `json:"requests"`
			Refused  int64 `json:"refused"`
		} `json:"rows"`
	}
	if code := n.adminDo(t, "GET", "/admin/usage?group_by=consumer", "", &u); code != 200 {
		t.Fatalf("%s: /admin/usage: %d", n.name, code)
	}
	for _, r := range u.Rows {
		requests += r.Requests
		refused += r.Refused
	}
	return requests, refused
}
