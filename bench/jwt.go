package bench

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
)

// jwtClient is the client id the jwt feature's consumer is mapped from.
const jwtClient = "bench-client"

// benchIssuer is an OpenID Connect provider on loopback for the jwt
// feature: discovery and one RS256 key, and a token signed with it that
// every request of the run presents (clients reuse a token for its life).
type benchIssuer struct {
	url, token string
	stop       func()
}

func startBenchIssuer() (*benchIssuer, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bench issuer: %w", err)
	}
	url := "http://" + ln.Addr().String()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": url, "jwks_uri": url + "/keys"})
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "bench-1", Algorithm: "RS256", Use: "sig"}}})
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"iss": url, "aud": "api://llmgate-bench", "azp": jwtClient,
		"iat": time.Now().Unix(), "exp": time.Now().Add(2 * time.Hour).Unix()})
	t.Header["kid"] = "bench-1"
	token, err := t.SignedString(key)
	if err != nil {
		_ = srv.Close()
		return nil, err
	}
	return &benchIssuer{url: url, token: token, stop: func() { _ = srv.Close() }}, nil
}

// jwtConfig is the keys config of a benchmarked node with the issuer added
// and the consumer mapped from jwtClient.
func jwtConfig(cfg, issuerURL string) string {
	cfg = strings.Replace(cfg, "keys: ["+overheadKey+"]}", "keys: ["+overheadKey+"], client_ids: ["+jwtClient+"]}", 1)
	return cfg + "auth: {jwt: [{issuer: \"" + issuerURL + "\", audience: \"api://llmgate-bench\"}]}\n"
}
