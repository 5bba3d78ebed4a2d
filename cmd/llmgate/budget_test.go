package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
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
