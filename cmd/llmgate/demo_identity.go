package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
)

// demoClientID is the OAuth2 client id of team-a's application in the demo.
const demoClientID = "00000000-demo-4000-8000-team0000000a"

// demoIssuer is a small OpenID Connect provider on loopback, standing in for
// the company's identity provider: discovery, a key set, and tokens signed
// with its key.
type demoIssuer struct {
	url  string
	key  *rsa.PrivateKey
	stop func()
}

func startDemoIssuer() (*demoIssuer, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("demo issuer key: %w", err)
	}
	di := &demoIssuer{key: key}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": di.url, "jwks_uri": di.url + "/keys"})
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "demo-1", Algorithm: "RS256", Use: "sig"}}})
	})
	di.url, di.stop, err = serveLoopback(mux)
	if err != nil {
		return nil, fmt.Errorf("starting the demo OIDC issuer: %w", err)
	}
	return di, nil
}

// token mints an access token for the demo's audience, valid from now
// until ttl (negative: already expired).
func (di *demoIssuer) token(clientID, user string, ttl time.Duration) string {
	now := time.Now()
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"iss": di.url, "aud": "api://llmgate-demo", "azp": clientID, "oid": user,
		"iat": now.Add(-time.Hour).Unix(), "exp": now.Add(ttl).Unix(),
	})
	t.Header["kid"] = "demo-1"
	s, _ := t.SignedString(di.key)
	return s
}

// demoIdentitySteps show tokens and run-time keys: a token from the issuer,
// an expired one, and a run-time key created on gw-1, used on gw-2, then
// revoked on gw-1 and refused on gw-2.
func demoIdentitySteps(nodes []*runningNode, di *demoIssuer, chatBody string) ([]demoStep, error) {
	ctx := context.Background()
	nk, err := nodes[0].state.keys.Create(ctx, "team-b", time.Time{}, "demo")
	if err != nil {
		return nil, fmt.Errorf("demo: creating a run-time key: %w", err)
	}
	return []demoStep{
		{title: "JWT from the OIDC issuer (team-a's client)", node: 1, method: "POST", path: "/v1/chat/completions", body: chatBody,
			headers: []string{"Authorization", "Bearer " + di.token(demoClientID, "alice", time.Hour)}, wantStatus: 200},
		{title: "JWT expired", node: 1, method: "POST", path: "/v1/chat/completions", body: chatBody,
			headers: []string{"Authorization", "Bearer " + di.token(demoClientID, "alice", -time.Hour)}, wantStatus: 401},
		{title: "run-time key (made on gw-1) on gw-2", node: 1, method: "POST", path: "/v1/chat/completions", body: chatBody,
			key: nk.Key, wantStatus: 200},
		{title: "run-time key revoked on gw-1: refused on gw-2", node: 1, method: "POST", path: "/v1/chat/completions", body: chatBody,
			key: nk.Key, wantStatus: 401, before: func() {
				_ = nodes[0].state.keys.Revoke(ctx, "team-b", nk.ID)
				deadline := time.Now().Add(2 * time.Second)
				for time.Now().Before(deadline) {
					if _, err := nodes[1].state.keys.Authenticate(nk.Key); err != nil {
						return
					}
					time.Sleep(5 * time.Millisecond)
				}
			}},
	}, nil
}
