package api

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/llmgate/llmgate/identity"
	"github.com/llmgate/llmgate/internal/config"
	"github.com/llmgate/llmgate/telemetry"
)

// oidcIssuer is a minimal OIDC provider on loopback: discovery and one key.
func oidcIssuer(t *testing.T) (url string, mint func(claims jwt.MapClaims) string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			_ = json.NewEncoder(w).Encode(map[string]string{"issuer": srv.URL, "jwks_uri": srv.URL + "/keys"})
		case "/keys":
			_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL, func(over jwt.MapClaims) string {
		c := jwt.MapClaims{"iss": srv.URL, "aud": "api://llmgate", "exp": time.Now().Add(time.Hour).Unix(), "azp": "client-a"}
		for k, v := range over {
			c[k] = v
		}
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, c)
		tok.Header["kid"] = "k1"
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
}

func TestJWTConsumers(t *testing.T) {
	iss, mint := oidcIssuer(t)
	cfg := config.Config{Auth: config.Auth{JWT: []config.JWTIssuer{{Issuer: iss, Audience: "api://llmgate", UserClaim: "oid"}}}}
	cfg.ApplyDefaults()
	j, err := identity.NewJWT(identity.JWTOptions{Issuers: cfg.Auth.JWT, ClientIDs: map[string]string{"client-a": "team-a"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(j.Close)
	up := newUpstream(t, okChat("primary"))
	s := twoBackends(up, up)
	s.jwt, s.limits = j, true
	s.mutate = func(c *config.Config) {
		c.Consumers[0].CounterKey = config.CounterUser
		c.Consumers[0].TPM = 100000
	}
	var logs lineBuffer
	s.observer = telemetry.NewRequestLog(slog.New(slog.NewJSONHandler(&logs, nil)), 0)
	g := newGateway(t, s)

	tok := mint(jwt.MapClaims{"oid": "alice"})
	a := do(t, "POST", g.data.URL+"/v1/chat/completions", "", chatBody, "Authorization", "Bearer "+tok, "x-user-id", "mallory")
	if a.status != 200 {
		t.Fatalf("chat with a token: %d %s", a.status, a.body)
	}
	sent := up.lastReq.Load()
	if strings.Contains(sent.header.Get("Authorization"), tok) || sent.header.Get("api-key") != "upstream-key-1" {
		t.Fatalf("upstream got %v: the token was forwarded or the backend's key is missing", sent.header)
	}
	line := logs.waitLines(t, 1)[0]
	if line["consumer"] != "team-a" || line["credential"] != "jwt:"+iss || line["user"] != "alice" || strings.Contains(logs.buf.String(), tok) {
		t.Fatalf("request log: %v", line)
	}
	// The token's user, not the header a client can set, is what its limits count.
	admin := do(t, "GET", g.admin.URL+"/admin/quota", "", "")
	if strings.Contains(string(admin.body), "mallory") || !strings.Contains(string(admin.body), "alice") {
		t.Fatalf("the x-user-id header overrode the token's user: %s", admin.body)
	}

	refused := do(t, "POST", g.data.URL+"/v1/chat/completions", "", chatBody, "Authorization", "Bearer "+mint(jwt.MapClaims{"aud": "api://other"}))
	if refused.status != 401 || refused.errorCode(t) != "invalid_api_key" || !strings.Contains(string(refused.body), "audience") {
		t.Fatalf("wrong audience: %d %s", refused.status, refused.body)
	}
	if a := do(t, "GET", g.data.URL+"/v1/models", "", "", "Authorization", "Bearer "+tok); a.status != 200 {
		t.Fatalf("models with a token: %d %s", a.status, a.body)
	}
	// Keys keep working beside tokens.
	if a := do(t, "POST", g.data.URL+"/v1/chat/completions", keyB, chatBody); a.status != 200 {
		t.Fatalf("config key beside tokens: %d %s", a.status, a.body)
	}
	metrics := string(do(t, "GET", g.admin.URL+"/metrics", "", "").body)
	for _, want := range []string{
		`llmgate_authentications_total{credential="jwt",issuer="` + iss + `",result="ok"}`,
		`llmgate_authentications_total{credential="jwt",issuer="",result="refused"} 1`,
		`llmgate_authentications_total{credential="api_key",issuer="",result="ok"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
