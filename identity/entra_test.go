package identity

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llmgate/llmgate/internal/config"
)

const (
	testTenant = "11111111-2222-3333-4444-555555555555"
	testClient = "66666666-7777-8888-9999-000000000000"
	testSecret = "s3cr3t-value-never-shown"
)

// fakeAuthority is a Microsoft Entra ID authority on loopback (TLS, its own
// CA): the tenant's OIDC metadata MSAL reads and a token endpoint.
type fakeAuthority struct {
	*httptest.Server
	tokens   atomic.Int64 // token requests
	fail     atomic.Bool  // answer 401 with an AADSTS error (echoing the secret, as a hostile endpoint might)
	expires  atomic.Int64 // expires_in of issued tokens, seconds
	mu       sync.Mutex
	lastForm map[string][]string
}

func newFakeAuthority(t *testing.T) *fakeAuthority {
	t.Helper()
	fa := &fakeAuthority{}
	fa.expires.Store(3600)
	fa.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		base := "https://" + r.Host + "/" + testTenant
		w.Header().Set("Content-Type", "application/json")
		switch {
		case strings.HasSuffix(r.URL.Path, "/.well-known/openid-configuration"):
			_ = json.NewEncoder(w).Encode(map[string]any{
				"token_endpoint":         base + "/oauth2/v2.0/token",
				"authorization_endpoint": base + "/oauth2/v2.0/authorize",
				"issuer":                 base + "/v2.0",
				"jwks_uri":               base + "/discovery/v2.0/keys",
			})
		case strings.HasSuffix(r.URL.Path, "/oauth2/v2.0/token"):
			_ = r.ParseForm()
			n := fa.tokens.Add(1)
			fa.mu.Lock()
			fa.lastForm = r.PostForm
			fa.mu.Unlock()
			if fa.fail.Load() {
				w.WriteHeader(http.StatusUnauthorized)
				_ = json.NewEncoder(w).Encode(map[string]any{"error": "invalid_client",
					"error_description": "AADSTS7000215: Invalid client secret provided: " + r.PostForm.Get("client_secret"), "error_codes": []int{7000215}})
				return
			}
			_ = json.NewEncoder(w).Encode(map[string]any{"token_type": "Bearer", "expires_in": fa.expires.Load(),
				"ext_expires_in": fa.expires.Load(), "access_token": fmt.Sprintf("entra-token-%d", n)})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(fa.Close)
	return fa
}

func (fa *fakeAuthority) form(key string) string {
	fa.mu.Lock()
	defer fa.mu.Unlock()
	if v := fa.lastForm[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func entraToken(t *testing.T, fa *fakeAuthority, e config.Entra, now func() time.Time) *EntraToken {
	t.Helper()
	e.Scope = "https://cognitiveservices.azure.com/.default"
	e.AuthorityHost = fa.URL + "/"
	tok, err := NewEntraToken(EntraOptions{Backend: "east", Config: e, Transport: fa.Client(), Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tok.Close)
	return tok
}

func TestEntraClientSecret(t *testing.T) {
	fa := newFakeAuthority(t)
	tok := entraToken(t, fa, config.Entra{TenantID: testTenant, ClientID: testClient, ClientSecret: testSecret}, nil)

	// Concurrent first requests share one fetch.
	var wg sync.WaitGroup
	got := make([]string, 20)
	errs := make([]error, 20)
	for i := range got {
		wg.Go(func() { got[i], errs[i] = tok.Token(context.Background()) })
	}
	wg.Wait()
	for i := range got {
		if errs[i] != nil || got[i] != "entra-token-1" {
			t.Fatalf("request %d: %q, %v", i, got[i], errs[i])
		}
	}
	if n := fa.tokens.Load(); n != 1 {
		t.Fatalf("%d token requests for 20 concurrent callers", n)
	}
	if fa.form("client_id") != testClient || fa.form("client_secret") != testSecret || fa.form("scope") == "" {
		t.Fatalf("token request form: client_id %q scope %q", fa.form("client_id"), fa.form("scope"))
	}
	// Cached: no more requests.
	for range 5 {
		if s, err := tok.Token(context.Background()); err != nil || s != "entra-token-1" {
			t.Fatal(s, err)
		}
	}
	if n := fa.tokens.Load(); n != 1 {
		t.Fatalf("a cached token was fetched again (%d requests)", n)
	}
}

func TestEntraRefreshesBeforeExpiry(t *testing.T) {
	fa := newFakeAuthority(t)
	fa.expires.Store(240) // inside the 5-minute refresh window from the start
	tok := entraToken(t, fa, config.Entra{TenantID: testTenant, ClientID: testClient, ClientSecret: testSecret}, nil)
	first, err := tok.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// The next caller is served the still-valid token at once while a
	// refresh runs in the background.
	start := time.Now()
	if s, err := tok.Token(context.Background()); err != nil || s != first {
		t.Fatalf("during refresh: %q, %v", s, err)
	}
	if d := time.Since(start); d > 50*time.Millisecond {
		t.Fatalf("a caller waited %v for a refresh", d)
	}
	waitUntil(t, 5*time.Second, func() bool {
		s, _ := tok.Token(context.Background())
		return s != first
	})
}

func TestEntraFailureIsClearAndBacksOff(t *testing.T) {
	fa := newFakeAuthority(t)
	fa.fail.Store(true)
	clk := &clock{t: time.Now()}
	tok := entraToken(t, fa, config.Entra{TenantID: testTenant, ClientID: testClient, ClientSecret: testSecret}, clk.now)
	_, err := tok.Token(context.Background())
	if err == nil {
		t.Fatal("a failing token endpoint gave a token")
	}
	msg := err.Error()
	if !strings.Contains(msg, "backend east") || !strings.Contains(msg, "AADSTS7000215") || strings.Contains(msg, testSecret) || strings.Contains(msg, "\n") {
		t.Fatalf("error %q: want the backend and the AADSTS code on one line, without the secret", msg)
	}
	t.Logf("refusal: %s", msg)
	// Within the backoff, callers get the error at once, without a request.
	for range 5 {
		if _, err := tok.Token(context.Background()); err == nil || err.Error() != msg {
			t.Fatalf("during the backoff: %v", err)
		}
	}
	if n := fa.tokens.Load(); n != 1 {
		t.Fatalf("%d token requests during the backoff", n)
	}
	// After it, the next caller tries again, and a recovered endpoint serves.
	fa.fail.Store(false)
	clk.add(1500 * time.Millisecond)
	if s, err := tok.Token(context.Background()); err != nil || s == "" {
		t.Fatalf("after the backoff: %q, %v", s, err)
	}
}

func TestEntraEndpointDown(t *testing.T) {
	fa := newFakeAuthority(t)
	tok := entraToken(t, fa, config.Entra{TenantID: testTenant, ClientID: testClient, ClientSecret: testSecret}, nil)
	fa.Close()
	start := time.Now()
	_, err := tok.Token(context.Background())
	if err == nil || !strings.Contains(err.Error(), "backend east") || strings.Contains(err.Error(), testSecret) {
		t.Fatalf("endpoint down: %v", err)
	}
	t.Logf("refusal: %v", err)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("a down endpoint took %v to fail", d)
	}
}

func TestEntraWorkloadIdentity(t *testing.T) {
	fa := newFakeAuthority(t)
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("federated-sa-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	tok := entraToken(t, fa, config.Entra{TenantID: testTenant, ClientID: testClient, FederatedTokenFile: file}, nil)
	if tok.Kind() != "workload identity" {
		t.Fatalf("kind %q", tok.Kind())
	}
	if s, err := tok.Token(context.Background()); err != nil || s == "" {
		t.Fatalf("%q, %v", s, err)
	}
	if fa.form("client_assertion") != "federated-sa-token" {
		t.Fatalf("client_assertion %q: the federated token was not presented", fa.form("client_assertion"))
	}
}

func TestEntraClientCertificate(t *testing.T) {
	fa := newFakeAuthority(t)
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "llmgate-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	pemData := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	pemData = append(pemData, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})...)
	file := filepath.Join(t.TempDir(), "client.pem")
	if err := os.WriteFile(file, pemData, 0o600); err != nil {
		t.Fatal(err)
	}
	tok := entraToken(t, fa, config.Entra{TenantID: testTenant, ClientID: testClient, ClientCertificateFile: file}, nil)
	if s, err := tok.Token(context.Background()); err != nil || s == "" {
		t.Fatalf("%q, %v", s, err)
	}
	if a := fa.form("client_assertion"); strings.Count(a, ".") != 2 {
		t.Fatalf("client_assertion %q is not a signed JWT", a)
	}
	if _, err := NewEntraToken(EntraOptions{Backend: "east", Config: config.Entra{TenantID: testTenant, ClientID: testClient,
		ClientCertificateFile: filepath.Join(t.TempDir(), "missing.pem"), AuthorityHost: fa.URL + "/"}}); err == nil || !strings.Contains(err.Error(), "backend east") {
		t.Fatalf("a missing certificate file: %v", err)
	}
}

func TestEntraManagedIdentity(t *testing.T) {
	var calls atomic.Int64
	msi := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.Header.Get("X-IDENTITY-HEADER") != "msi-header" {
			http.Error(w, "no identity header", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "mi-token", "token_type": "Bearer",
			"expires_on": fmt.Sprint(time.Now().Add(time.Hour).Unix()), "resource": r.URL.Query().Get("resource")})
	}))
	t.Cleanup(msi.Close)
	// The App Service form of managed identity: its endpoint comes from the
	// environment.
	t.Setenv("IDENTITY_ENDPOINT", msi.URL+"/msi/token")
	t.Setenv("IDENTITY_HEADER", "msi-header")
	tok, err := NewEntraToken(EntraOptions{Backend: "east", Config: config.Entra{Scope: "https://cognitiveservices.azure.com/.default",
		AuthorityHost: "https://login.microsoftonline.com/"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tok.Close)
	if tok.Kind() != "managed identity" {
		t.Fatalf("kind %q", tok.Kind())
	}
	if s, err := tok.Token(context.Background()); err != nil || s != "mi-token" {
		t.Fatalf("%q, %v", s, err)
	}
}
