package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// clusterNode is one real node process of a test cluster.
type clusterNode struct {
	name, dir, config     string
	listen, admin, gossip string
	proc                  *proc
}

// newClusterNode writes a node's configuration: consumer team-a (TPM tpm)
// and the cache on, gossiping on a free port and joining seeds.
func newClusterNode(t *testing.T, name, mockURL string, tpm int, seeds ...string) *clusterNode {
	t.Helper()
	dir := t.TempDir()
	n := &clusterNode{name: name, dir: dir, listen: freeAddr(t), admin: freeAddr(t), gossip: freeAddr(t)}
	n.config = nodeConfig{name: name, mockURL: mockURL, listen: n.listen, admin: n.admin, gossip: n.gossip, join: seeds,
		consumer: fmt.Sprintf(", tpm: %d", tpm), extra: "cache: {enabled: true, store_wait: 1s}\n"}.write(t, dir)
	return n
}

func (n *clusterNode) start(t *testing.T) {
	t.Helper()
	n.proc = start(t, "serve", "--config", n.config)
	waitReady(t, "http://"+n.listen+"/readyz")
}

func (n *clusterNode) kill(t *testing.T) {
	t.Helper()
	_ = n.proc.cmd.Process.Signal(syscall.SIGKILL)
	_ = n.proc.wait(t, 10*time.Second)
}

// chat sends one chat completion and returns status, headers and body.
func (n *clusterNode) chat(t *testing.T, prompt string, maxTokens int) (int, http.Header, string) {
	t.Helper()
	body := fmt.Sprintf(`{"model":"gpt-4o","messages":[{"role":"user","content":%q}],"max_tokens":%d}`, prompt, maxTokens)
	req, _ := http.NewRequest("POST", "http://"+n.listen+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer sk-from-env")
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", n.name, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header, string(b)
}

// staysFast sends five small requests to n, which must all be answered 200
// within 3s in all: a peer in trouble (when) must not slow n down.
func (n *clusterNode) staysFast(t *testing.T, when string) {
	t.Helper()
	start := time.Now()
	for i := range 5 {
		if code, _, body := n.chat(t, fmt.Sprintf("%s %d", when, i), 10); code != 200 {
			t.Fatalf("%s %s: %d %s", n.name, when, code, body)
		}
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("%s's requests took %v %s", n.name, took, when)
	}
}

// adminDo calls an admin route with the token and decodes a JSON answer into out.
func (n *clusterNode) adminDo(t *testing.T, method, path, body string, out any) int {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+n.admin+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer admin-t")
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", n.name, path, err)
	}
	defer resp.Body.Close()
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: %v", n.name, path, err)
		}
	}
	return resp.StatusCode
}

func (n *clusterNode) members(t *testing.T) map[string]string {
	t.Helper()
	var c struct {
		Node    string `json:"node"`
		Members []struct{ Name, Addr, State string }
	}
	n.adminDo(t, "GET", "/admin/cluster", "", &c)
	out := map[string]string{}
	for _, m := range c.Members {
		out[m.Name] = m.State
	}
	return out
}

func waitFor(t *testing.T, within time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func bothAlive(t *testing.T, nodes ...*clusterNode) func() bool {
	return func() bool {
		for _, n := range nodes {
			alive := 0
			for _, s := range n.members(t) {
				if s == "alive" {
					alive++
				}
			}
			if alive != len(nodes) {
				return false
			}
		}
		return true
	}
}

// TestClusterJoinInEitherOrder starts the joining node before its seed: it
// serves alone, then joins once the seed is up.
func TestClusterJoinInEitherOrder(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes")
	}
	mockURL := startMock(t)
	// a names no seed: the cluster forms only if b keeps trying a.
	a := newClusterNode(t, "gw-a", mockURL, 0)
	b := newClusterNode(t, "gw-b", mockURL, 0, a.gossip)
	b.start(t)
	if code, _, _ := b.chat(t, "alone", 5); code != 200 {
		t.Fatalf("a node whose seed is down must serve alone: %d", code)
	}
	if m := b.members(t); len(m) != 1 || m["gw-b"] != "alive" {
		t.Fatalf("alone: %v", m)
	}
	a.start(t)
	waitFor(t, 30*time.Second, "both nodes see two alive members", bothAlive(t, a, b))
}

// TestClusterSharesQuotaAndCache is the two-node story: one limit over both
// nodes, replicated stores and deletes, a kill -9 that the survivor rides
// out, and a restart that catches up on what was missed.
func TestClusterSharesQuotaAndCache(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes")
	}
	const tpm = 3000
	mockURL := startMock(t)
	a := newClusterNode(t, "gw-a", mockURL, tpm)
	a.start(t)
	b := newClusterNode(t, "gw-b", mockURL, tpm, a.gossip)
	b.start(t)
	waitFor(t, 30*time.Second, "joined", bothAlive(t, a, b))

	// One consumer on both nodes at once is held to its single TPM: each
	// request reserves prompt + max_tokens (about 110), alternating nodes.
	// Short refusals (a node's share of what remains is in flight) are
	// retried as told; the run ends at the first refusal by the window.
	admitted, shareRefusals := 0, 0
	for i := 0; i < 200; i++ {
		n := []*clusterNode{a, b}[i%2]
		code, h, body := n.chat(t, fmt.Sprintf("quota request %d", i), 100)
		if code == 200 {
			var used int
			fmt.Sscan(h.Get("x-llmgate-tokens-consumed"), &used)
			admitted += used
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if code != 429 || h.Get("Retry-After") == "" {
			t.Fatalf("%s: %d %v %s", n.name, code, h, body)
		}
		var ms int
		fmt.Sscan(h.Get("retry-after-ms"), &ms)
		if ms > 1000 {
			break // the cluster's window is full
		}
		shareRefusals++
		time.Sleep(time.Duration(ms) * time.Millisecond)
	}
	if admitted > tpm || admitted < tpm*8/10 {
		t.Fatalf("two nodes admitted %d tokens for a TPM of %d before the window refused (%d short share refusals on the way)", admitted, tpm, shareRefusals)
	}
	t.Logf("admitted %d of %d tokens over two nodes; %d short share refusals", admitted, tpm, shareRefusals)
	var st struct {
		TPMUsed int64            `json:"tpm_used"`
		ByNode  map[string]int64 `json:"by_node"`
	}
	waitFor(t, 20*time.Second, "b's quota view shows both nodes", func() bool {
		b.adminDo(t, "GET", "/admin/quota/team-a", "", &st)
		return st.ByNode["gw-a"] > 0 && st.ByNode["gw-b"] > 0
	})

	// A limit change on one node applies on both.
	if code := a.adminDo(t, "PUT", "/admin/quota/team-a", `{"tpm": 100000}`, nil); code != 200 {
		t.Fatalf("PUT limits: %d", code)
	}
	var lim struct {
		TPMLimit int64 `json:"tpm_limit"`
	}
	waitFor(t, 20*time.Second, "the new limit reaches b", func() bool {
		b.adminDo(t, "GET", "/admin/quota/team-a", "", &lim)
		return lim.TPMLimit == 100000
	})

	// A store on a is a hit on b, without a model call on b.
	prompt := "Name three rivers that flow through Central Europe."
	if code, h, _ := a.chat(t, prompt, 30); code != 200 || h.Get("x-llmgate-cache") != "miss" {
		t.Fatalf("first call on a: %d %v", code, h)
	}
	waitFor(t, 20*time.Second, "a's entry is a hit on b", func() bool {
		_, h, _ := b.chat(t, prompt, 30)
		return h.Get("x-llmgate-cache") == "hit"
	})
	var list struct {
		Entries []struct{ ID, Prompt string } `json:"entries"`
	}
	b.adminDo(t, "GET", "/admin/cache/entries?limit=1000", "", &list)
	var id string
	for _, e := range list.Entries {
		if e.Prompt == prompt {
			if id != "" {
				t.Fatalf("b holds the prompt twice (a second store, not the replica): %+v", list.Entries)
			}
			id = e.ID
		}
	}
	if id == "" {
		t.Fatalf("b does not list the replicated entry: %+v", list.Entries)
	}
	// A delete on b is gone on a.
	if code := b.adminDo(t, "DELETE", "/admin/cache/entries/"+id, "", nil); code != 204 {
		t.Fatalf("delete: %d", code)
	}
	waitFor(t, 20*time.Second, "the delete reaches a", func() bool {
		return a.adminDo(t, "GET", "/admin/cache/entries/"+id, "", nil) == 404
	})

	// b hangs (SIGSTOP): a's requests, which replicate to b and gossip to it,
	// stay fast.
	_ = b.proc.cmd.Process.Signal(syscall.SIGSTOP)
	a.staysFast(t, "while b hangs")
	_ = b.proc.cmd.Process.Signal(syscall.SIGCONT)

	// kill -9 b: a keeps serving at once and keeps counting b's usage.
	b.kill(t)
	a.staysFast(t, "after b died")
	a.adminDo(t, "GET", "/admin/quota/team-a", "", &st)
	if st.ByNode["gw-b"] == 0 {
		t.Fatalf("a forgot the dead node's recent usage: %v", st.ByNode)
	}
	waitFor(t, 30*time.Second, "a sees b dead", func() bool { return a.members(t)["gw-b"] == "dead" })

	// While b is down, a stores entries; b restarts under the same name and
	// data directory, rejoins and catches up.
	var missed []string
	for i := range 20 {
		p := fmt.Sprintf("While gw-b was down, question number %d about rivers.", i)
		if code, _, _ := a.chat(t, p, 10); code != 200 {
			t.Fatal(code)
		}
		missed = append(missed, p)
	}
	b.start(t)
	waitFor(t, 20*time.Second, "b rejoined", bothAlive(t, a, b))
	var sa, sb struct {
		Entries int64 `json:"entries"`
	}
	waitFor(t, 20*time.Second, "b caught up on the 25 entries it missed", func() bool {
		a.adminDo(t, "GET", "/admin/cache/stats", "", &sa)
		b.adminDo(t, "GET", "/admin/cache/stats", "", &sb)
		return sa.Entries == sb.Entries
	})
	if _, h, _ := b.chat(t, missed[7], 10); h.Get("x-llmgate-cache") != "hit" {
		t.Fatalf("a missed entry is not a hit on b after catch-up: %v", h)
	}
	// The deleted entry did not come back with the catch-up.
	if code := b.adminDo(t, "GET", "/admin/cache/entries/"+id, "", nil); code != 404 {
		t.Fatalf("deleted entry resurrected on b: %d", code)
	}
}
