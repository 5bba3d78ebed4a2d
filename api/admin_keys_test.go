package api

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/llmgate/llmgate/telemetry"
)

func TestRuntimeKeys(t *testing.T) {
	up := newUpstream(t, okChat("primary"))
	s := twoBackends(up, up)
	s.keys = true
	var logs lineBuffer
	s.observer = telemetry.NewRequestLog(slog.New(slog.NewJSONHandler(&logs, nil)), 0)
	g := newGateway(t, s)
	keysURL := g.admin.URL + "/admin/consumers/team-a/keys"

	created := do(t, "POST", keysURL, "", `{"description":"nightly batch","expires_at":"2099-01-01T00:00:00Z"}`)
	if created.status != 201 {
		t.Fatalf("create: %d %s", created.status, created.body)
	}
	var nk struct {
		ID        string     `json:"id"`
		Key       string     `json:"key"`
		Prefix    string     `json:"prefix"`
		ExpiresAt *time.Time `json:"expires_at"`
	}
	if err := json.Unmarshal(created.body, &nk); err != nil || nk.ID == "" || nk.Key == "" || nk.Prefix == "" || nk.ExpiresAt == nil {
		t.Fatalf("create answer %s: %v", created.body, err)
	}
	if !strings.HasPrefix(nk.Key, nk.Prefix) {
		t.Fatalf("prefix %q does not start key %q", nk.Prefix, nk.Key)
	}

	// The new key works in every header clients use, as team-a.
	for _, h := range []string{"api-key", "Authorization", "Ocp-Apim-Subscription-Key"} {
		v := nk.Key
		if h == "Authorization" {
			v = "Bearer " + nk.Key
		}
		if a := do(t, "POST", g.data.URL+"/v1/chat/completions", "", chatBody, h, v); a.status != 200 {
			t.Fatalf("chat with the run-time key in %s: %d %s", h, a.status, a.body)
		}
	}
	if line := logs.waitLines(t, 3)[2]; line["credential"] != "runtime_key" || line["consumer"] != "team-a" || strings.Contains(logs.buf.String(), nk.Key) {
		t.Fatalf("request log of a run-time key: %v", line)
	}
	if got := up.lastReq.Load().header; strings.Contains(strings.Join(got.Values("Authorization"), " ")+got.Get("api-key"), nk.Key) {
		t.Fatal("the consumer's run-time key was forwarded upstream")
	}

	listed := do(t, "GET", keysURL, "", "")
	if listed.status != 200 || strings.Contains(string(listed.body), nk.Key) || strings.Contains(string(listed.body), nk.Key[len(nk.Prefix):]) {
		t.Fatalf("list: %d %s", listed.status, listed.body)
	}
	var list struct {
		Keys []struct {
			ID, Prefix, Description string
			CreatedAt               time.Time  `json:"created_at"`
			ExpiresAt               *time.Time `json:"expires_at"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(listed.body, &list); err != nil || len(list.Keys) != 1 || list.Keys[0].ID != nk.ID ||
		list.Keys[0].Description != "nightly batch" || list.Keys[0].CreatedAt.IsZero() || list.Keys[0].ExpiresAt == nil {
		t.Fatalf("list %s: %v", listed.body, err)
	}
	if other := do(t, "GET", g.admin.URL+"/admin/consumers/team-b/keys", "", ""); other.status != 200 || strings.Contains(string(other.body), nk.ID) {
		t.Fatalf("team-b's list: %d %s", other.status, other.body)
	}
	// A key created without a body has no expiry.
	if a := do(t, "POST", keysURL, "", ""); a.status != 201 || !strings.Contains(string(a.body), `"expires_at":null`) {
		t.Fatalf("create without a body: %d %s", a.status, a.body)
	}

	if a := do(t, "DELETE", keysURL+"/"+nk.ID, "", ""); a.status != 204 {
		t.Fatalf("revoke: %d %s", a.status, a.body)
	}
	refused := do(t, "POST", g.data.URL+"/v1/chat/completions", nk.Key, chatBody)
	if refused.status != 401 || refused.errorCode(t) != "invalid_api_key" || !strings.Contains(string(refused.body), "revoked") || strings.Contains(string(refused.body), nk.Key) {
		t.Fatalf("revoked key: %d %s", refused.status, refused.body)
	}
	// The configuration's keys keep working beside run-time ones.
	if a := do(t, "POST", g.data.URL+"/v1/chat/completions", keyA, chatBody); a.status != 200 {
		t.Fatalf("config key: %d %s", a.status, a.body)
	}
}

func TestRuntimeKeyBadInput(t *testing.T) {
	up := newUpstream(t, okChat("primary"))
	s := twoBackends(up, up)
	s.keys = true
	g := newGateway(t, s)
	keysURL := g.admin.URL + "/admin/consumers/team-a/keys"
	for _, tc := range []struct {
		name, method, url, body string
		status                  int
	}{
		{"unknown consumer is 404", "POST", g.admin.URL + "/admin/consumers/nobody/keys", `{}`, 404},
		{"unknown consumer list is 404", "GET", g.admin.URL + "/admin/consumers/nobody/keys", ``, 404},
		{"unknown key revoke is 404", "DELETE", keysURL + "/0123456789abcdef", ``, 404},
		{"malformed JSON is 400", "POST", keysURL, `{"description":`, 400},
		{"unknown field is 400", "POST", keysURL, `{"key":"sk-choose-my-own"}`, 400},
		{"expires_at not RFC 3339 is 400", "POST", keysURL, `{"expires_at":"tomorrow"}`, 400},
		{"expires_at in the past is 400", "POST", keysURL, `{"expires_at":"2001-01-01T00:00:00Z"}`, 400},
		{"description of the wrong type is 400", "POST", keysURL, `{"description":7}`, 400},
		{"oversized body is 400", "POST", keysURL, `{"description":"` + strings.Repeat("x", 20<<10) + `"}`, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := do(t, tc.method, tc.url, "", tc.body)
			if a.status != tc.status {
				t.Fatalf("%d %s", a.status, a.body)
			}
			a.errorCode(t)
		})
	}
	if a := do(t, "GET", keysURL, "", ""); a.status != 200 || string(a.body) != "{\"keys\":[]}\n" {
		t.Fatalf("refused requests created keys: %s", a.body)
	}
	// A made-up run-time key is an unknown key, not a crash.
	if a := do(t, "POST", g.data.URL+"/v1/chat/completions", "sk-lg-0123456789abcdef"+strings.Repeat("A", 43), chatBody); a.status != 401 {
		t.Fatalf("made-up key: %d %s", a.status, a.body)
	}
}

func TestRuntimeKeyRoutesOff(t *testing.T) {
	up := newUpstream(t, okChat("primary"))
	g := newGateway(t, twoBackends(up, up))
	if a := do(t, "POST", g.admin.URL+"/admin/consumers/team-a/keys", "", `{}`); a.status != 404 {
		t.Fatalf("without run-time keys: %d %s", a.status, a.body)
	}
}
