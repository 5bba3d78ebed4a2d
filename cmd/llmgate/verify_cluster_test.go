package main

import (
	"fmt"
	"testing"
	"time"
)

// TestClusterSharesVerdicts runs two real nodes with verified matching (the
// mock upstream is the judge): the verdicts node a's judge gives are
// replicated to node b, whose learned threshold then vouches for a
// candidate without asking its own judge.
func TestClusterSharesVerdicts(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes")
	}
	mockURL := startMock(t)
	// max_error_rate 0.1: 25 "yes" verdicts put the Wilson bound of the
	// "no" share under it (0.01 would need about 270). A judge call past its
	// timeout is a miss: a loaded test machine gets 20s, not the default 2s.
	const verify = "cache: {enabled: true, store_wait: 1s, verify: {route: gpt-4o, max_error_rate: 0.1, audit_rate: 0.000001, timeout: 20s}}\n"
	node := func(name string, seeds ...string) *clusterNode {
		dir := t.TempDir()
		n := &clusterNode{name: name, dir: dir, listen: freeAddr(t), admin: freeAddr(t), gossip: freeAddr(t)}
		n.config = nodeConfig{name: name, mockURL: mockURL, listen: n.listen, admin: n.admin, gossip: n.gossip, join: seeds, extra: verify}.write(t, dir)
		return n
	}
	a := node("gw-a")
	a.start(t)
	b := node("gw-b", a.gossip)
	b.start(t)
	waitFor(t, 30*time.Second, "joined", bothAlive(t, a, b))

	type stats struct {
		Entries int `json:"entries"`
		Verify  struct {
			Judged     int                `json:"judged"`
			Confirmed  int                `json:"confirmed"`
			Thresholds map[string]float32 `json:"thresholds"`
		} `json:"verify"`
	}
	stored := func(i int) string {
		return fmt.Sprintf("How do I rotate the API key of the Azure OpenAI resource number %d?", i)
	}
	asked := func(i int) string {
		return fmt.Sprintf("How would I rotate the API key of the Azure OpenAI resource number %d?", i)
	}
	// On a: 25 near misses the judge (the mock: same words once fillers
	// such as "do" / "would" are dropped) confirms.
	const n = 25
	for i := range n {
		if code, _, _ := a.chat(t, stored(i), 20); code != 200 {
			t.Fatalf("store %d: %d", i, code)
		}
	}
	// An answer is stored in the background once store_wait has passed: on
	// a loaded machine the last ones may still be on their way when the near
	// misses start, which would make a near miss a plain miss.
	waitFor(t, 20*time.Second, "a holds every stored answer", func() bool {
		var st stats
		a.adminDo(t, "GET", "/admin/cache/stats", "", &st)
		return st.Entries >= n
	})
	for i := range n {
		code, h, _ := a.chat(t, asked(i), 20)
		if code != 200 || h.Get("x-llmgate-cache-tier") != "verified" {
			t.Fatalf("near miss %d on a: %d cache %q tier %q distance %s, want a verified hit", i, code,
				h.Get("x-llmgate-cache"), h.Get("x-llmgate-cache-tier"), h.Get("x-llmgate-cache-distance"))
		}
	}
	var sa stats
	a.adminDo(t, "GET", "/admin/cache/stats", "", &sa)
	if sa.Verify.Confirmed < n || len(sa.Verify.Thresholds) == 0 {
		t.Fatalf("a: %+v, want %d confirmed and a learned threshold", sa.Verify, n)
	}
	// b never called its judge, yet learns the same threshold from a's
	// replicated verdicts.
	var sb stats
	waitFor(t, 30*time.Second, "a's verdicts reach b's thresholds", func() bool {
		b.adminDo(t, "GET", "/admin/cache/stats", "", &sb)
		return len(sb.Verify.Thresholds) > 0
	})
	for k, th := range sa.Verify.Thresholds {
		if sb.Verify.Thresholds[k] != th {
			t.Errorf("threshold %q: a %v, b %v", k, th, sb.Verify.Thresholds[k])
		}
	}
	// And applies it: the first near miss, asked on b, is served at once
	// (tier semantic: vouched by the learned threshold), b's judge unasked.
	waitFor(t, 20*time.Second, "a's entry reaches b", func() bool {
		var list struct {
			Entries []struct{ Prompt string } `json:"entries"`
		}
		b.adminDo(t, "GET", "/admin/cache/entries?limit=1000", "", &list)
		for _, e := range list.Entries {
			if e.Prompt == stored(0) {
				return true
			}
		}
		return false
	})
	code, h, _ := b.chat(t, asked(0), 20)
	if code != 200 || h.Get("x-llmgate-cache") != "hit" || h.Get("x-llmgate-cache-tier") != "semantic" {
		t.Fatalf("near miss on b: %d cache %q tier %q distance %s, want a semantic hit vouched by a's verdicts", code,
			h.Get("x-llmgate-cache"), h.Get("x-llmgate-cache-tier"), h.Get("x-llmgate-cache-distance"))
	}
	b.adminDo(t, "GET", "/admin/cache/stats", "", &sb)
	if sb.Verify.Judged != 0 {
		t.Errorf("b's judge gave %d verdicts, want none", sb.Verify.Judged)
	}
}
