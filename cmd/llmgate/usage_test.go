package main

import (
	"fmt"
	"strconv"
	"testing"
	"time"
)

// usageTotals is /admin/usage summed over the last day, on one node.
func (n *clusterNode) usageTotals(t *testing.T) (requests, tokens int64) {
	t.Helper()
	var u struct {
		Rows []struct {
			Requests         int64 `json:"requests"`
			PromptTokens     int64 `json:"prompt_tokens"`
			CompletionTokens int64 `json:"completion_tokens"`
		} `json:"rows"`
	}
	if code := n.adminDo(t, "GET", "/admin/usage?group_by=consumer,route", "", &u); code != 200 {
		t.Fatalf("%s: /admin/usage: %d", n.name, code)
	}
	for _, r := range u.Rows {
		requests += r.Requests
		tokens += r.PromptTokens + r.CompletionTokens
	}
	return requests, tokens
}

// TestUsageHistoryAcrossTwoNodes: each node's /admin/usage equals the sum of
// x-llmgate-tokens-consumed over the requests sent to both, also after one
// node is killed with SIGKILL and restarted.
func TestUsageHistoryAcrossTwoNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes")
	}
	mockURL := startMock(t)
	a := newClusterNode(t, "gw-a", mockURL, 0)
	a.start(t)
	b := newClusterNode(t, "gw-b", mockURL, 0, a.gossip)
	b.start(t)
	waitFor(t, 30*time.Second, "joined", bothAlive(t, a, b))

	var requests, consumed int64
	send := func(round string, count int, nodes ...*clusterNode) {
		for i := range count {
			n := nodes[i%len(nodes)]
			code, h, body := n.chat(t, fmt.Sprintf("usage %s request %d", round, i), 20+i)
			if code != 200 {
				t.Fatalf("%s: %d %s", n.name, code, body)
			}
			c, err := strconv.ParseInt(h.Get("x-llmgate-tokens-consumed"), 10, 64)
			if err != nil {
				t.Fatalf("x-llmgate-tokens-consumed = %q", h.Get("x-llmgate-tokens-consumed"))
			}
			requests++
			consumed += c
		}
	}
	agree := func(when string) {
		t.Helper()
		for _, n := range []*clusterNode{a, b} {
			var r, tok int64
			ok := func() bool { r, tok = n.usageTotals(t); return r == requests && tok == consumed }
			deadline := time.Now().Add(20 * time.Second)
			for !ok() && time.Now().Before(deadline) {
				time.Sleep(100 * time.Millisecond)
			}
			if r != requests || tok != consumed {
				t.Fatalf("%s: %s has %d requests and %d tokens in /admin/usage; the clients were charged %d tokens for %d requests", when, n.name, r, tok, consumed, requests)
			}
		}
	}
	send("first", 20, a, b)
	agree("both up")

	// Past the history's write-behind (1 s), then b dies without a word.
	time.Sleep(1500 * time.Millisecond)
	b.kill(t)
	send("while b is down", 4, a)
	b.start(t)
	waitFor(t, 30*time.Second, "rejoined", bothAlive(t, a, b))
	send("after the restart", 10, a, b)
	agree("after b's kill -9 and restart")
}
