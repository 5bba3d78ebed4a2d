package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// responsesNode writes the configuration of a node with two backends on
// two mock processes (east: openai style, west: azure v1), one route over
// both, and consumers team-a and team-b.
func responsesNode(t *testing.T, name, east, west string, seeds ...string) *clusterNode {
	t.Helper()
	dir := t.TempDir()
	n := &clusterNode{name: name, dir: dir, listen: freeAddr(t), admin: freeAddr(t), gossip: freeAddr(t)}
	join := ""
	if len(seeds) > 0 {
		join = ", join: [" + strings.Join(seeds, ", ") + "]"
	}
	cfg := fmt.Sprintf(`node: {name: %s, data_dir: %s/data}
listen: %s
admin_listen: %s
cluster: {gossip: %s%s}
admin_token: ${TEST_ADMIN_TOKEN}
server: {drain_period: 10ms}
backends:
  - {name: east, kind: openai, url: %s/v1}
  - {name: west, kind: azure, api: v1, url: %s}
routes:
  gpt-4o: {pool: [[east, west]]}
consumers:
  - {name: team-a, keys: ["${TEST_TEAM_KEY}"]}
  - {name: team-b, keys: [sk-team-b]}
`, name, dir, n.listen, n.admin, n.gossip, join, east, west)
	n.config = filepath.Join(dir, "llmgate.yaml")
	if err := os.WriteFile(n.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return n
}

func call(t *testing.T, method, url, key, body string) (int, http.Header, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// TestResponsesAffinityAcrossNodes: a response created through one node
// is the creator's on every node, and its follow-ups reach the backend
// holding it from either node; the record survives a restart.
func TestResponsesAffinityAcrossNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes")
	}
	east, west := startMock(t), startMock(t)
	a := responsesNode(t, "gw-a", east, west)
	a.start(t)
	b := responsesNode(t, "gw-b", east, west, a.gossip)
	b.start(t)
	waitFor(t, 30*time.Second, "both nodes see each other", bothAlive(t, a, b))

	type created struct{ id, backend string }
	var ids []created
	for i := range 4 { // the route alternates between the two backends
		code, h, body := call(t, "POST", "http://"+a.listen+"/v1/responses", "sk-from-env", fmt.Sprintf(`{"model":"gpt-4o","input":"question %d"}`, i))
		var r struct{ ID string }
		if code != 200 || json.Unmarshal(body, &r) != nil || r.ID == "" {
			t.Fatalf("create on a: %d %s", code, body)
		}
		ids = append(ids, created{r.ID, h.Get("x-llmgate-backend")})
	}
	if ids[0].backend == ids[1].backend {
		t.Fatalf("both responses on %s: the test needs both backends", ids[0].backend)
	}
	for _, c := range ids {
		waitFor(t, 20*time.Second, "node b knows "+c.id, func() bool {
			code, _, _ := call(t, "GET", "http://"+b.listen+"/openai/v1/responses/"+c.id, "sk-from-env", "")
			return code == 200
		})
		code, h, body := call(t, "POST", "http://"+b.listen+"/v1/responses", "sk-from-env", `{"model":"gpt-4o","previous_response_id":"`+c.id+`","input":"more"}`)
		if code != 200 || h.Get("x-llmgate-backend") != c.backend {
			t.Fatalf("follow-up on b: %d from %q, want %s: %s", code, h.Get("x-llmgate-backend"), c.backend, body)
		}
		if code, _, body := call(t, "GET", "http://"+b.listen+"/v1/responses/"+c.id, "sk-team-b", ""); code != 404 {
			t.Fatalf("another consumer on b: %d %s", code, body)
		}
	}
	// Deleted through b: gone on a too.
	if code, _, body := call(t, "DELETE", "http://"+b.listen+"/v1/responses/"+ids[0].id, "sk-from-env", ""); code != 200 {
		t.Fatalf("delete on b: %d %s", code, body)
	}
	waitFor(t, 20*time.Second, "node a forgets the deleted id", func() bool {
		code, _, _ := call(t, "GET", "http://"+a.listen+"/v1/responses/"+ids[0].id, "sk-from-env", "")
		return code == 404
	})
	// Persisted: a restarted node still knows the owners.
	_ = a.proc.cmd.Process.Signal(syscall.SIGTERM)
	if err := a.proc.wait(t, 15*time.Second); err != nil {
		t.Fatalf("stop a: %v\n%s", err, a.proc.stderr)
	}
	a.start(t)
	if code, _, body := call(t, "GET", "http://"+a.listen+"/v1/responses/"+ids[1].id, "sk-from-env", ""); code != 200 {
		t.Fatalf("after a restart: %d %s", code, body)
	}
}
