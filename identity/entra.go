package identity

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/llmgate/llmgate/internal/config"
)

// Timings of EntraToken.
const (
	// entraRefreshBefore: a token this close to expiry is refreshed in the
	// background while it still serves requests.
	entraRefreshBefore = 5 * time.Minute
	// entraExpiryMargin: a token this close to expiry is not handed out.
	entraExpiryMargin = 30 * time.Second
	entraFetchTimeout = 15 * time.Second
	entraBackoffMin   = time.Second
	entraBackoffMax   = 30 * time.Second
)

// EntraOptions configure one backend's EntraToken.
type EntraOptions struct {
	Backend string
	Config  config.Entra // defaults applied
	// Transport overrides the HTTP client to Entra ID (tests: a fake
	// authority with its own CA).
	Transport policy.Transporter
	Logger    *slog.Logger
	Now       func() time.Time
}

// EntraToken supplies a backend's Microsoft Entra ID access token through
// azidentity: cached, refreshed in the background before it expires, one
// fetch shared by all concurrent requests, and after a failure retried no
// sooner than a backoff (1 s doubling to 30 s) so that a broken token
// endpoint is not hammered; meanwhile requests fail at once with the last
// error. Errors name the backend and never contain the secret.
type EntraToken struct {
	backend string
	kind    string // which credential: client secret, certificate, workload identity, managed identity
	cred    azcore.TokenCredential
	scope   string
	secrets []string // redacted from error messages
	log     *slog.Logger
	now     func() time.Time
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	mu       sync.Mutex
	tok      azcore.AccessToken
	fetching chan struct{}
	lastErr  error
	retryAt  time.Time
	backoff  time.Duration
}

// NewEntraToken builds the credential the configuration asks for. It does
// not fetch a token yet.
func NewEntraToken(opts EntraOptions) (*EntraToken, error) {
	e := opts.Config
	co := azcore.ClientOptions{
		Cloud:     cloud.Configuration{ActiveDirectoryAuthorityHost: e.AuthorityHost},
		Transport: opts.Transport,
		// EntraToken retries with its own backoff across requests; a request
		// must not sit in the library's retry loop.
		Retry: policy.RetryOptions{MaxRetries: -1},
	}
	// Instance discovery asks login.microsoftonline.com about the authority;
	// only a non-default authority (another cloud, a test) skips it.
	noDiscovery := strings.TrimRight(e.AuthorityHost, "/") != "https://login.microsoftonline.com"
	t := &EntraToken{backend: opts.Backend, scope: e.Scope, log: cmp.Or(opts.Logger, slog.New(slog.DiscardHandler)), now: opts.Now}
	if t.now == nil {
		t.now = time.Now
	}
	var err error
	switch {
	case e.ClientSecret != "":
		t.kind = "client secret"
		t.secrets = []string{e.ClientSecret}
		t.cred, err = azidentity.NewClientSecretCredential(e.TenantID, e.ClientID, e.ClientSecret,
			&azidentity.ClientSecretCredentialOptions{ClientOptions: co, DisableInstanceDiscovery: noDiscovery})
	case e.ClientCertificateFile != "":
		t.kind = "client certificate"
		t.secrets = []string{e.ClientCertificatePassword}
		data, rerr := os.ReadFile(e.ClientCertificateFile)
		if rerr != nil {
			return nil, fmt.Errorf("backend %s: entra.client_certificate_file: %w", opts.Backend, rerr)
		}
		certs, key, perr := azidentity.ParseCertificates(data, []byte(e.ClientCertificatePassword))
		if perr != nil {
			return nil, fmt.Errorf("backend %s: entra.client_certificate_file %s: %w", opts.Backend, e.ClientCertificateFile, perr)
		}
		t.cred, err = azidentity.NewClientCertificateCredential(e.TenantID, e.ClientID, certs, key,
			&azidentity.ClientCertificateCredentialOptions{ClientOptions: co, DisableInstanceDiscovery: noDiscovery})
	case e.FederatedTokenFile != "" || os.Getenv("AZURE_FEDERATED_TOKEN_FILE") != "":
		t.kind = "workload identity"
		t.cred, err = azidentity.NewWorkloadIdentityCredential(&azidentity.WorkloadIdentityCredentialOptions{
			ClientOptions: co, DisableInstanceDiscovery: noDiscovery,
			TenantID: e.TenantID, ClientID: e.ClientID, TokenFilePath: e.FederatedTokenFile,
		})
	default:
		t.kind = "managed identity"
		mo := &azidentity.ManagedIdentityCredentialOptions{ClientOptions: co}
		if e.ClientID != "" {
			mo.ID = azidentity.ClientID(e.ClientID)
		}
		t.cred, err = azidentity.NewManagedIdentityCredential(mo)
	}
	if err != nil {
		return nil, fmt.Errorf("backend %s: Microsoft Entra ID %s: %s", opts.Backend, t.kind, t.redact(err))
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	return t, nil
}

// Kind says which credential the token comes from.
func (t *EntraToken) Kind() string { return t.kind }

// Close stops a background refresh.
func (t *EntraToken) Close() {
	t.cancel()
	t.wg.Wait()
}

// Token returns a valid access token, fetching one if needed (the caller
// waits at most until ctx ends).
func (t *EntraToken) Token(ctx context.Context) (string, error) {
	now := t.now()
	t.mu.Lock()
	if t.tok.Token != "" && now.Before(t.tok.ExpiresOn.Add(-entraExpiryMargin)) {
		tok := t.tok.Token
		refreshAt := t.tok.ExpiresOn.Add(-entraRefreshBefore)
		if !t.tok.RefreshOn.IsZero() && t.tok.RefreshOn.Before(refreshAt) {
			refreshAt = t.tok.RefreshOn
		}
		if !now.Before(refreshAt) && now.After(t.retryAt) {
			t.startLocked()
		}
		t.mu.Unlock()
		return tok, nil
	}
	if t.fetching == nil && now.Before(t.retryAt) {
		err := t.lastErr
		t.mu.Unlock()
		return "", err
	}
	done := t.startLocked()
	t.mu.Unlock()
	select {
	case <-done:
	case <-ctx.Done():
		return "", fmt.Errorf("Microsoft Entra ID token for backend %s: not obtained in time", t.backend)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tok.Token != "" && t.now().Before(t.tok.ExpiresOn.Add(-entraExpiryMargin)) {
		return t.tok.Token, nil
	}
	return "", t.lastErr
}

// startLocked starts a fetch unless one runs; t.mu is held.
func (t *EntraToken) startLocked() chan struct{} {
	if t.fetching != nil {
		return t.fetching
	}
	done := make(chan struct{})
	t.fetching = done
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		defer close(done)
		ctx, cancel := context.WithTimeout(t.ctx, entraFetchTimeout)
		tok, err := t.cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{t.scope}})
		cancel()
		t.mu.Lock()
		defer t.mu.Unlock()
		t.fetching = nil
		if err != nil {
			t.backoff = min(max(t.backoff*2, entraBackoffMin), entraBackoffMax)
			t.retryAt = t.now().Add(t.backoff)
			t.lastErr = fmt.Errorf("Microsoft Entra ID token for backend %s (%s): %s", t.backend, t.kind, t.redact(err))
			t.log.Warn("getting a Microsoft Entra ID token", "backend", t.backend, "credential", t.kind, "retry_in", t.backoff, "err", t.lastErr)
			return
		}
		t.tok, t.lastErr, t.backoff, t.retryAt = tok, nil, 0, time.Time{}
	}()
	return done
}

var (
	aadsts       = regexp.MustCompile(`AADSTS\d+`)
	httpResponse = regexp.MustCompile(`RESPONSE (\d{3})`)
)

// redact summarises a credential error in one line without any secret:
// azidentity's messages carry the whole token-endpoint exchange.
func (t *EntraToken) redact(err error) string {
	msg := err.Error()
	if errors.Is(err, context.DeadlineExceeded) {
		return "the token endpoint did not answer in time"
	}
	first, _, _ := strings.Cut(strings.TrimSpace(msg), "\n")
	first = strings.TrimSpace(first)
	if code := aadsts.FindString(msg); code != "" && !strings.Contains(first, code) {
		first += " (" + code + ")"
	}
	if m := httpResponse.FindStringSubmatch(msg); m != nil && !strings.Contains(first, m[0]) {
		first += " (HTTP " + m[1] + ")"
	}
	for _, s := range t.secrets {
		if s != "" {
			first = strings.ReplaceAll(first, s, "[redacted]")
		}
	}
	if len(first) > 300 {
		first = first[:300] + "…"
	}
	return first
}
