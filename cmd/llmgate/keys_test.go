package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// chatKey sends one small chat completion with key and returns the status and body.
func (n *clusterNode) chatKey(t *testing.T, key string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", "http://"+n.listen+"/v1/chat/completions",
		strings.NewReader(`{"model":"gpt-4o","messages":[{"role":"user","content":"key check"}],"max_tokens":5}`))
	req.Header.Set("api-key", key)
	req.Header.Set("x-llmgate-cache", "off")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s: %v", n.name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

type createdKey struct {
	ID     string `json:"id"`
	Key    string `json:"key"`
	Prefix string `json:"prefix"`
}

func (n *clusterNode) createKey(t *testing.T) createdKey {
	t.Helper()
	var k createdKey
	if code := n.adminDo(t, "POST", "/admin/consumers/team-a/keys", `{"description":"cluster test"}`, &k); code != 201 || k.Key == "" {
		t.Fatalf("%s: creating a key: %d", n.name, code)
	}
	return k
}

// within waits up to d for n to answer key with want, and returns how long it took.
func (n *clusterNode) within(t *testing.T, d time.Duration, key string, want int, what string) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		code, body := n.chatKey(t, key)
		if code == want {
			return time.Since(start)
		}
		if time.Since(start) > d {
			t.Fatalf("%s after %v: %s: got %d %s", n.name, d, what, code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestClusterRuntimeKeys: a key created on one node works on the other, a
// revocation on one is refused on the other within a second, and a node
// that was down when keys changed catches up when it returns.
func TestClusterRuntimeKeys(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes")
	}
	mockURL := startMock(t)
	a := newClusterNode(t, "gw-a", mockURL, 0)
	a.start(t)
	b := newClusterNode(t, "gw-b", mockURL, 0, a.gossip)
	b.start(t)
	waitFor(t, 30*time.Second, "joined", bothAlive(t, a, b))

	k1 := a.createKey(t)
	took := b.within(t, time.Second, k1.Key, 200, "a key created on a works on b")
	t.Logf("created on a, valid on b after %v", took)
	if code, body := a.chatKey(t, "sk-from-env"); code != 200 {
		t.Fatalf("the configuration's key beside run-time keys: %d %s", code, body)
	}

	if code := a.adminDo(t, "DELETE", "/admin/consumers/team-a/keys/"+k1.ID, "", nil); code != 204 {
		t.Fatalf("revoke on a: %d", code)
	}
	took = b.within(t, time.Second, k1.Key, 401, "a key revoked on a is refused on b")
	t.Logf("revoked on a, refused on b after %v", took)
	if code, body := b.chatKey(t, k1.Key); !strings.Contains(body, "revoked") || strings.Contains(body, k1.Key) {
		t.Fatalf("b's refusal: %d %s", code, body)
	}

	// b misses a create and a revoke while it is down.
	b.kill(t)
	k2, k3 := a.createKey(t), a.createKey(t)
	if code := a.adminDo(t, "DELETE", "/admin/consumers/team-a/keys/"+k2.ID, "", nil); code != 204 {
		t.Fatalf("revoke on a: %d", code)
	}
	b.start(t)
	waitFor(t, 30*time.Second, "rejoined", bothAlive(t, a, b))
	b.within(t, 5*time.Second, k3.Key, 200, "a key created while b was down works on b after it returns")
	b.within(t, 5*time.Second, k2.Key, 401, "a key revoked while b was down is refused on b after it returns")
	if code, _ := b.chatKey(t, k1.Key); code != 401 {
		t.Fatalf("the key revoked before b's restart: %d on b", code)
	}
	var list struct {
		Keys []struct {
			ID string `json:"id"`
		} `json:"keys"`
	}
	b.adminDo(t, "GET", "/admin/consumers/team-a/keys", "", &list)
	if len(list.Keys) != 1 || list.Keys[0].ID != k3.ID {
		t.Fatalf("b lists %+v, want only %s", list.Keys, k3.ID)
	}
}
