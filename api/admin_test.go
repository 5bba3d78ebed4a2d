package api

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/llmgate/llmgate/internal/config"
)

func TestAdminToken(t *testing.T) {
	east := newUpstream(t, okChat("east"))
	s := twoBackends(east, east)
	s.mutate = func(c *config.Config) { c.AdminToken = "admin-secret" }
	g := newGateway(t, s)
	for _, tc := range []struct {
		name, auth string
		want       int
	}{
		{"no token", "", 401},
		{"wrong token", "Bearer nope", 401},
		{"consumer key is not an admin token", "Bearer " + keyA, 401},
		{"right token", "Bearer admin-secret", 200},
	} {
		a := do(t, "GET", g.admin.URL+"/admin/cluster", "", "", "Authorization", tc.auth)
		if a.status != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, a.status, tc.want)
		}
	}
}

func TestAdminOpenOnLoopbackWithoutToken(t *testing.T) {
	east := newUpstream(t, okChat("east"))
	g := newGateway(t, twoBackends(east, east))
	a := do(t, "GET", g.admin.URL+"/admin/cluster", "", "")
	if a.status != 200 {
		t.Fatalf("loopback admin without a token: %d", a.status)
	}
	var c struct {
		Node    string `json:"node"`
		Members []struct{ Name, Addr, State string }
	}
	if err := json.Unmarshal(a.body, &c); err != nil || c.Node != "gw-test" || len(c.Members) != 1 || c.Members[0].State != "alive" {
		t.Fatalf("/admin/cluster: %v %s", err, a.body)
	}
	if !loopback("127.0.0.1:5555") || !loopback("[::1]:80") || loopback("10.1.2.3:80") || loopback("garbage") {
		t.Fatal("loopback classification is wrong")
	}
}

func TestMetricsExposeRequestsAndOverhead(t *testing.T) {
	east := newUpstream(t, okChat("east"))
	g := newGateway(t, twoBackends(east, east))
	do(t, "POST", g.data.URL+"/v1/chat/completions", keyA, chatBody)
	do(t, "POST", g.data.URL+"/v1/chat/completions", "sk-wrong", chatBody)
	body := string(do(t, "GET", g.admin.URL+"/metrics", "", "").body)
	for _, want := range []string{
		`llmgate_requests_total{backend="primary",code="200",op="chat",route="gpt-4o"} 1`,
		`llmgate_requests_total{backend="",code="401",op="chat",route="unknown"} 1`,
		`llmgate_gateway_overhead_seconds_count{op="chat"} 1`,
		`llmgate_upstream_duration_seconds_count{backend="primary"} 1`,
		`llmgate_backend_attempts_total{backend="primary",result="200"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s\n%s", want, grep(body, "llmgate_"))
		}
	}
}
