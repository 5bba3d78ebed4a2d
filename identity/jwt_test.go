package identity

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/llmgate/llmgate/internal/config"
)

// testIssuer is an OIDC provider on loopback: discovery, a JWKS that can
// rotate, go down or go slow, and signing keys to mint tokens with.
type testIssuer struct {
	*httptest.Server
	mu      sync.Mutex
	keys    map[string]crypto.Signer // kid -> private key, as published
	fetches atomic.Int64             // JWKS fetches
	down    atomic.Bool              // JWKS answers 500
	slow    atomic.Int64             // JWKS waits this many ns first
	minted  atomic.Int64             // tokens minted: each gets its own jti
}

func newTestIssuer(t testing.TB) *testIssuer {
	t.Helper()
	ti := &testIssuer{keys: map[string]crypto.Signer{}}
	ti.rotate(t, "k1", rsaKey(t))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": ti.URL, "jwks_uri": ti.URL + "/keys"})
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) {
		ti.fetches.Add(1)
		if d := time.Duration(ti.slow.Load()); d > 0 {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		if ti.down.Load() {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		ti.mu.Lock()
		var set jose.JSONWebKeySet
		for kid, k := range ti.keys {
			alg := "RS256"
			if _, ok := k.(*ecdsa.PrivateKey); ok {
				alg = "ES256"
			}
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.Public(), KeyID: kid, Algorithm: alg, Use: "sig"})
		}
		ti.mu.Unlock()
		_ = json.NewEncoder(w).Encode(set)
	})
	ti.Server = httptest.NewServer(mux)
	t.Cleanup(ti.Close)
	return ti
}

func rsaKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// rotate publishes key under kid in place of all others.
func (ti *testIssuer) rotate(t testing.TB, kid string, key crypto.Signer) {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	ti.keys = map[string]crypto.Signer{kid: key}
}

func (ti *testIssuer) key(kid string) crypto.Signer {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	return ti.keys[kid]
}

// mint signs claims (iss, aud, exp, azp filled in unless set) with kid's key.
func (ti *testIssuer) mint(t testing.TB, kid string, over jwt.MapClaims) string {
	t.Helper()
	now := time.Now()
	c := jwt.MapClaims{"iss": ti.URL, "aud": "api://llmgate", "exp": now.Add(time.Hour).Unix(), "iat": now.Unix(),
		"azp": "client-a", "oid": "user-1", "jti": fmt.Sprint(ti.minted.Add(1))}
	for k, v := range over {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	key := ti.key(kid)
	method := jwt.SigningMethod(jwt.SigningMethodRS256)
	if _, ok := key.(*ecdsa.PrivateKey); ok {
		method = jwt.SigningMethodES256
	}
	tok := jwt.NewWithClaims(method, c)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func issuerConfig(iss string, mut func(*config.JWTIssuer)) config.JWTIssuer {
	ic := config.JWTIssuer{Issuer: iss, Audience: "api://llmgate", UserClaim: "oid",
		FetchTimeout: 300 * time.Millisecond, MinRefreshInterval: time.Hour}
	if mut != nil {
		mut(&ic)
	}
	cfg := config.Config{Auth: config.Auth{JWT: []config.JWTIssuer{ic}}}
	cfg.ApplyDefaults()
	return cfg.Auth.JWT[0]
}

func newJWT(t *testing.T, ics ...config.JWTIssuer) *JWT {
	t.Helper()
	j, err := NewJWT(JWTOptions{Issuers: ics, ClientIDs: map[string]string{"client-a": "team-a", "app-b": "team-b"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(j.Close)
	return j
}

func TestJWTAccepts(t *testing.T) {
	ti := newTestIssuer(t)
	j := newJWT(t, issuerConfig(ti.URL, func(ic *config.JWTIssuer) { ic.MinRefreshInterval = time.Millisecond }))
	p, err := j.Authenticate(context.Background(), ti.mint(t, "k1", nil))
	if err != nil || p.Consumer != "team-a" || p.Kind != KindJWT || p.Issuer != ti.URL || p.User != "user-1" {
		t.Fatalf("valid token: %+v, %v", p, err)
	}
	if _, err := j.Authenticate(context.Background(), "sk-team-a"); !errors.Is(err, ErrNotMine) {
		t.Fatalf("a key is not a token: %v", err)
	}
	// Within the clock skew (60 s), an expired token still passes.
	if _, err := j.Authenticate(context.Background(), ti.mint(t, "k1", jwt.MapClaims{"exp": time.Now().Add(-20 * time.Second).Unix()})); err != nil {
		t.Fatalf("expired within the skew: %v", err)
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ti.rotate(t, "e1", ec)
	if _, err := j.Authenticate(context.Background(), ti.mint(t, "e1", nil)); err != nil {
		t.Fatalf("ES256 token after rotation: %v", err)
	}
}

func TestJWTRefusesBadTokens(t *testing.T) {
	ti := newTestIssuer(t)
	other := newTestIssuer(t)
	j := newJWT(t, issuerConfig(ti.URL, nil))
	now := time.Now()
	pubDER, _ := x509.MarshalPKIXPublicKey(ti.key("k1").Public())
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	sign := func(m jwt.SigningMethod, key any, claims jwt.MapClaims) string {
		tok := jwt.NewWithClaims(m, claims)
		tok.Header["kid"] = "k1"
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	good := jwt.MapClaims{"iss": ti.URL, "aud": "api://llmgate", "exp": now.Add(time.Hour).Unix(), "azp": "client-a"}
	for _, tc := range []struct {
		name, token, want string
	}{
		{"expired", ti.mint(t, "k1", jwt.MapClaims{"exp": now.Add(-2 * time.Minute).Unix()}), "expired"},
		{"not yet valid (nbf)", ti.mint(t, "k1", jwt.MapClaims{"nbf": now.Add(5 * time.Minute).Unix()}), "not valid yet"},
		{"issued in the future (iat)", ti.mint(t, "k1", jwt.MapClaims{"iat": now.Add(5 * time.Minute).Unix()}), "not valid yet"},
		{"no exp", ti.mint(t, "k1", jwt.MapClaims{"exp": nil}), "required claim"},
		{"wrong issuer", other.mint(t, "k1", nil), "issuer"},
		{"right issuer, signed by another issuer's key", func() string {
			c := jwt.NewWithClaims(jwt.SigningMethodRS256, good)
			c.Header["kid"] = "k1"
			s, _ := c.SignedString(other.key("k1"))
			return s
		}(), "signature"},
		{"wrong audience", ti.mint(t, "k1", jwt.MapClaims{"aud": "api://other"}), "audience"},
		{"no audience", ti.mint(t, "k1", jwt.MapClaims{"aud": nil}), "required claim"},
		{"alg none", sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, good), "algorithm"},
		{"HS256 signed with the public key", sign(jwt.SigningMethodHS256, pubPEM, good), "algorithm"},
		{"unknown client", ti.mint(t, "k1", jwt.MapClaims{"azp": "client-z"}), "not a consumer"},
		{"no client claim", ti.mint(t, "k1", jwt.MapClaims{"azp": nil}), "no azp claim"},
		{"tampered payload", func() string {
			parts := strings.Split(ti.mint(t, "k1", nil), ".")
			parts[1] = parts[1][:len(parts[1])-2] + "xx"
			return strings.Join(parts, ".")
		}(), ""},
		{"malformed", "eyJhbGciOiJSUzI1NiJ9.not-json.sig", "malformed"},
		{"oversized", "eyJ" + strings.Repeat("a", MaxTokenBytes) + ".a.b", "larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := j.Authenticate(context.Background(), tc.token)
			msg := refusal(t, err)
			if !strings.Contains(msg, tc.want) {
				t.Fatalf("refusal %q does not say %q", msg, tc.want)
			}
			if strings.Contains(msg, tc.token) {
				t.Fatal("the refusal contains the token")
			}
		})
	}
}

func TestJWTKeyRotation(t *testing.T) {
	ti := newTestIssuer(t)
	j := newJWT(t, issuerConfig(ti.URL, func(ic *config.JWTIssuer) { ic.MinRefreshInterval = 200 * time.Millisecond }))
	ctx := context.Background()
	if _, err := j.Authenticate(ctx, ti.mint(t, "k1", nil)); err != nil {
		t.Fatal(err)
	}
	before := ti.fetches.Load()

	// The issuer rotates to k2: the first k2 token triggers a fetch and passes.
	old := ti.key("k1")
	ti.rotate(t, "k2", rsaKey(t))
	time.Sleep(250 * time.Millisecond) // past min_refresh_interval since the start-up fetch
	if _, err := j.Authenticate(ctx, ti.mint(t, "k2", nil)); err != nil {
		t.Fatalf("token of a rotated key: %v", err)
	}
	if got := ti.fetches.Load() - before; got != 1 {
		t.Fatalf("%d fetches for one rotation", got)
	}
	// A retired key no longer verifies once the set was refetched.
	ti.mu.Lock()
	ti.keys["k1"] = old
	ti.mu.Unlock()
	tok := ti.mint(t, "k1", nil)
	ti.rotate(t, "k2", ti.key("k2"))
	_, err := j.Authenticate(ctx, tok)
	refusal(t, err)

	// Tokens naming unknown kids do not hammer the issuer: one fetch per
	// min_refresh_interval, however many arrive.
	before = ti.fetches.Load()
	forged := ti.mint(t, "k2", nil)
	forged = strings.Replace(forged, strings.Split(forged, ".")[0], strings.Split(jwtHeader(t, "nope"), ".")[0], 1)
	for range 50 {
		_, err := j.Authenticate(ctx, forged)
		refusal(t, err)
	}
	if got := ti.fetches.Load() - before; got > 1 {
		t.Fatalf("50 unknown-kid tokens caused %d fetches", got)
	}
}

// jwtHeader returns a token whose header names kid (its signature is junk).
func jwtHeader(t *testing.T, kid string) string {
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{})
	tok.Header["kid"] = kid
	s, err := tok.SigningString()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestJWTIssuerDownOrSlow(t *testing.T) {
	ctx := context.Background()
	t.Run("cached keys keep working while the JWKS is down or slow", func(t *testing.T) {
		ti := newTestIssuer(t)
		j := newJWT(t, issuerConfig(ti.URL, func(ic *config.JWTIssuer) {
			ic.RefreshInterval, ic.MinRefreshInterval = time.Millisecond, time.Millisecond
		}))
		if _, err := j.Authenticate(ctx, ti.mint(t, "k1", nil)); err != nil {
			t.Fatal(err)
		}
		for _, mode := range []string{"down", "slow"} {
			if mode == "down" {
				ti.down.Store(true)
			} else {
				ti.down.Store(false)
				ti.slow.Store(int64(2 * time.Second))
			}
			for range 5 {
				start := time.Now()
				if _, err := j.Authenticate(ctx, ti.mint(t, "k1", nil)); err != nil {
					t.Fatalf("JWKS %s: cached key refused: %v", mode, err)
				}
				// The slow JWKS answers after 2s: a check that waited for it
				// would take that long; a loaded machine stays far below.
				if d := time.Since(start); d > time.Second {
					t.Fatalf("JWKS %s: a cached key took %v", mode, d)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
	})
	for _, mode := range []string{"down", "slow"} {
		t.Run("cold start with the JWKS "+mode+" fails closed, quickly", func(t *testing.T) {
			ti := newTestIssuer(t)
			if mode == "down" {
				ti.down.Store(true)
			} else {
				ti.slow.Store(int64(5 * time.Second))
			}
			j := newJWT(t, issuerConfig(ti.URL, func(ic *config.JWTIssuer) { ic.MinRefreshInterval = 50 * time.Millisecond }))
			for i := range 3 {
				start := time.Now()
				_, err := j.Authenticate(ctx, ti.mint(t, "k1", nil))
				if msg := refusal(t, err); !strings.Contains(msg, "unavailable") {
					t.Fatalf("refusal %q", msg)
				}
				// fetch_timeout is 300ms and the slow JWKS answers after 5s:
				// a request that waited for it would take far longer than this.
				if d := time.Since(start); d > 2500*time.Millisecond {
					t.Fatalf("request %d waited %v", i, d)
				}
			}
			// The issuer comes back: tokens pass without a restart.
			ti.down.Store(false)
			ti.slow.Store(0)
			waitUntil(t, 3*time.Second, func() bool {
				_, err := j.Authenticate(ctx, ti.mint(t, "k1", nil))
				return err == nil
			})
		})
	}
}

func waitUntil(t *testing.T, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v", d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestJWTEntraIssuerForms(t *testing.T) {
	ti := newTestIssuer(t) // serves the keys; the tokens name Entra issuers
	const tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	v2 := "https://login.microsoftonline.com/" + tenant + "/v2.0"
	v1 := "https://sts.windows.net/" + tenant + "/"
	j := newJWT(t, issuerConfig(v2, func(ic *config.JWTIssuer) {
		ic.JWKSURL = ti.URL + "/keys"
		ic.Audiences = []string{"00000000-1111-2222-3333-444444444444"}
	}))
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		claims jwt.MapClaims
		want   string // consumer, or "" for a refusal
	}{
		{"v2 token (azp)", jwt.MapClaims{"iss": v2, "aud": "00000000-1111-2222-3333-444444444444", "azp": "app-b"}, "team-b"},
		{"v1 token (appid, App ID URI audience)", jwt.MapClaims{"iss": v1, "azp": nil, "appid": "app-b"}, "team-b"},
		{"other tenant", jwt.MapClaims{"iss": "https://sts.windows.net/00000000-0000-0000-0000-000000000000/"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := j.Authenticate(ctx, ti.mint(t, "k1", tc.claims))
			if tc.want == "" {
				refusal(t, err)
				return
			}
			if err != nil || p.Consumer != tc.want || p.Issuer != v2 {
				t.Fatalf("%+v, %v", p, err)
			}
		})
	}
}

func TestJWTDiscoveryIssuerMismatch(t *testing.T) {
	ti := newTestIssuer(t)
	// Configured with a trailing path the discovery document does not name.
	j := newJWT(t, issuerConfig(ti.URL+"/tenant", nil))
	_, err := j.Authenticate(context.Background(), ti.mint(t, "k1", jwt.MapClaims{"iss": ti.URL + "/tenant"}))
	if msg := refusal(t, err); !strings.Contains(msg, "unavailable") {
		t.Fatalf("a discovery document for another issuer was trusted: %q", msg)
	}
}

// BenchmarkJWTWarm is one token's validation with its key cached (RS256,
// 2048-bit): the cost JWT adds to a request.
func BenchmarkJWTWarm(b *testing.B) {
	ti := newTestIssuer(b)
	j, err := NewJWT(JWTOptions{Issuers: []config.JWTIssuer{issuerConfig(ti.URL, nil)}, ClientIDs: map[string]string{"client-a": "team-a"}})
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	tok := ti.mint(b, "k1", nil)
	if _, err := j.Authenticate(context.Background(), tok); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := j.Authenticate(context.Background(), tok); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzJWTAuthenticate: any credential gets ErrNotMine, a principal or a
// refusal that does not echo it; nothing panics.
func FuzzJWTAuthenticate(f *testing.F) {
	ti := newTestIssuer(f)
	j, err := NewJWT(JWTOptions{Issuers: []config.JWTIssuer{issuerConfig(ti.URL, nil)}, ClientIDs: map[string]string{"client-a": "team-a"}})
	if err != nil {
		f.Fatal(err)
	}
	defer j.Close()
	f.Add(ti.mint(f, "k1", nil))
	f.Add("eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0.")
	f.Add("eyJ.a.b")
	f.Fuzz(func(t *testing.T, tok string) {
		_, err := j.Authenticate(context.Background(), tok)
		var r *Refusal
		if err != nil && !errors.Is(err, ErrNotMine) && !errors.As(err, &r) {
			t.Fatalf("unexpected error kind %T: %v", err, err)
		}
		if r != nil && len(tok) > 8 && strings.Contains(r.Reason, tok) {
			t.Fatal("the refusal echoes the token")
		}
	})
}

// TestJWTPreviousSharesKeySets: a JWT built by a reload with an unchanged
// issuer uses the key set already fetched (no fetch), applies its own
// audiences and client ids at once, and keeps the keys when the old one
// closes; an issuer whose key settings changed gets its own key set.
func TestJWTPreviousSharesKeySets(t *testing.T) {
	ti := newTestIssuer(t)
	ctx := context.Background()
	// An unknown kid may be fetched at once (the default waits 10s).
	fast := func(more func(*config.JWTIssuer)) func(*config.JWTIssuer) {
		return func(ic *config.JWTIssuer) {
			ic.MinRefreshInterval = time.Millisecond
			if more != nil {
				more(ic)
			}
		}
	}
	old, err := NewJWT(JWTOptions{Issuers: []config.JWTIssuer{issuerConfig(ti.URL, fast(nil))}, ClientIDs: map[string]string{"client-a": "team-a"}})
	if err != nil {
		t.Fatal(err)
	}
	tokA := ti.mint(t, "k1", nil)
	if _, err := old.Authenticate(ctx, tokA); err != nil {
		t.Fatal(err)
	}
	fetched := ti.fetches.Load()

	// The audience and the client ids change; the key set does not.
	next, err := NewJWT(JWTOptions{Previous: old,
		Issuers:   []config.JWTIssuer{issuerConfig(ti.URL, fast(func(ic *config.JWTIssuer) { ic.Audience = "api://other" }))},
		ClientIDs: map[string]string{"client-b": "team-b"}})
	if err != nil {
		t.Fatal(err)
	}
	tokB := ti.mint(t, "k1", jwt.MapClaims{"aud": "api://other", "azp": "client-b"})
	if p, err := next.Authenticate(ctx, tokB); err != nil || p.Consumer != "team-b" {
		t.Fatalf("the new audience and client id: %+v %v", p, err)
	}
	if _, err := next.Authenticate(ctx, tokA); err == nil {
		t.Fatal("a token for the old audience passed the reloaded authenticator")
	}
	if _, err := old.Authenticate(ctx, tokA); err != nil {
		t.Fatalf("the previous authenticator must keep working until it closes: %v", err)
	}
	if got := ti.fetches.Load(); got != fetched {
		t.Fatalf("an unchanged issuer's keys were fetched again: %d fetches, want %d", got, fetched)
	}

	// The old one closes; the shared key set still fetches for the new one
	// (a rotated key is found through an unknown kid).
	old.Close()
	ti.rotate(t, "k2", rsaKey(t))
	if _, err := next.Authenticate(ctx, ti.mint(t, "k2", jwt.MapClaims{"aud": "api://other", "azp": "client-b"})); err != nil {
		t.Fatalf("after the previous authenticator closed, a rotated key: %v", err)
	}

	// Another jwks_url: a key set of its own, fetched at once.
	before := ti.fetches.Load()
	third, err := NewJWT(JWTOptions{Previous: next,
		Issuers:   []config.JWTIssuer{issuerConfig(ti.URL, fast(func(ic *config.JWTIssuer) { ic.JWKSURL = ti.URL + "/keys" }))},
		ClientIDs: map[string]string{"client-a": "team-a"}})
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 5*time.Second, func() bool { return ti.fetches.Load() > before })
	next.Close()
	if _, err := third.Authenticate(ctx, ti.mint(t, "k2", nil)); err != nil {
		t.Fatalf("the issuer with a new jwks_url: %v", err)
	}
	third.Close()
	third.Close() // twice is harmless
}
