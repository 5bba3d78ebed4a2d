package config

import (
	"cmp"
	"fmt"
	"net"
	"net/url"
	"slices"
	"time"
)

// Auth configures credentials beside the consumers' keys (SPEC §3).
type Auth struct {
	// JWT lists the OAuth2 / OIDC issuers whose bearer tokens authenticate consumers.
	JWT []JWTIssuer `yaml:"jwt"`
}

// JWTIssuer is one token issuer a consumer may authenticate through.
type JWTIssuer struct {
	// Issuer is the token's iss. For Microsoft Entra ID either form
	// (https://login.microsoftonline.com/<tenant>/v2.0 or
	// https://sts.windows.net/<tenant>/) accepts tokens of both versions.
	Issuer string `yaml:"issuer"`
	// Audience is the aud a token must carry; Audiences adds more (an Entra
	// app's v1 tokens carry its App ID URI, v2 tokens its client id).
	Audience  string   `yaml:"audience"`
	Audiences []string `yaml:"audiences"`
	// JWKSURL is where the signing keys are; empty = the jwks_uri of the
	// issuer's /.well-known/openid-configuration.
	JWKSURL string `yaml:"jwks_url"`
	// ConsumerClaim names the claim whose value is looked up in
	// consumers[].client_ids. Default azp (Entra v1 tokens: appid, used
	// when azp is absent, and the other way round).
	ConsumerClaim string `yaml:"consumer_claim"`
	// UserClaim names the claim identifying the end user (counter_key: user,
	// vary_by: user); empty = limits.user_header as for keys.
	UserClaim string `yaml:"user_claim"`
	// Algorithms are the accepted signing algorithms. Default: RS256,
	// RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA.
	// none and HMAC (HS*) are never accepted.
	Algorithms []string `yaml:"algorithms"`
	// ClockSkew is the leeway on exp, nbf and iat. Default 60s.
	ClockSkew time.Duration `yaml:"clock_skew"`
	// FetchTimeout bounds one discovery or JWKS fetch; a request waiting for
	// keys never waits longer. Default 3s.
	FetchTimeout time.Duration `yaml:"fetch_timeout"`
	// RefreshInterval is how often the keys are fetched again in the
	// background. Default 1h. An unknown kid triggers a fetch at once, at
	// most once per MinRefreshInterval (default 10s).
	RefreshInterval    time.Duration `yaml:"refresh_interval"`
	MinRefreshInterval time.Duration `yaml:"min_refresh_interval"`
}

// SigningAlgorithms are the algorithms a JWT issuer may use.
var SigningAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

func (c *Config) applyAuthDefaults() {
	for i := range c.Auth.JWT {
		j := &c.Auth.JWT[i]
		j.ConsumerClaim = cmp.Or(j.ConsumerClaim, "azp")
		if len(j.Algorithms) == 0 {
			j.Algorithms = slices.Clone(SigningAlgorithms)
		}
		j.ClockSkew = cmp.Or(j.ClockSkew, time.Minute)
		j.FetchTimeout = cmp.Or(j.FetchTimeout, 3*time.Second)
		j.RefreshInterval = cmp.Or(j.RefreshInterval, time.Hour)
		j.MinRefreshInterval = cmp.Or(j.MinRefreshInterval, 10*time.Second)
	}
}

// secureURL reports whether u is https, or http to a loopback host (tests,
// a sidecar).
func secureURL(u string) bool {
	p, err := url.Parse(u)
	if err != nil || p.Host == "" {
		return false
	}
	if p.Scheme == "https" {
		return true
	}
	if p.Scheme != "http" {
		return false
	}
	host := p.Hostname()
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (c *Config) validateAuth() error {
	seen := map[string]bool{}
	for i, j := range c.Auth.JWT {
		p := fmt.Sprintf("auth.jwt[%d]", i)
		if !secureURL(j.Issuer) {
			return fmt.Errorf("%s.issuer: %q is not an https URL (http only to a loopback host)", p, j.Issuer)
		}
		if seen[j.Issuer] {
			return fmt.Errorf("%s.issuer: duplicate issuer %q", p, j.Issuer)
		}
		seen[j.Issuer] = true
		if j.Audience == "" && len(j.Audiences) == 0 {
			return fmt.Errorf("%s.audience: missing: a token for another API must not be accepted", p)
		}
		if j.JWKSURL != "" && !secureURL(j.JWKSURL) {
			return fmt.Errorf("%s.jwks_url: %q is not an https URL (http only to a loopback host)", p, j.JWKSURL)
		}
		for k, a := range j.Algorithms {
			if !slices.Contains(SigningAlgorithms, a) {
				return fmt.Errorf("%s.algorithms[%d]: %q is not one of %v (none and HMAC are never accepted)", p, k, a, SigningAlgorithms)
			}
		}
		if j.ClockSkew < 0 || j.ClockSkew > 10*time.Minute {
			return fmt.Errorf("%s.clock_skew: %v is outside 0..10m", p, j.ClockSkew)
		}
		if j.FetchTimeout < 0 || j.RefreshInterval < 0 || j.MinRefreshInterval < 0 {
			return fmt.Errorf("%s: fetch_timeout, refresh_interval and min_refresh_interval must not be negative", p)
		}
	}
	owner := map[string]string{}
	for i, cs := range c.Consumers {
		for k, id := range cs.ClientIDs {
			if id == "" {
				return fmt.Errorf("consumers[%d].client_ids[%d]: empty", i, k)
			}
			if other, ok := owner[id]; ok && other != cs.Name {
				return fmt.Errorf("consumers[%d].client_ids[%d]: %q is also a client id of consumer %q", i, k, id, other)
			}
			owner[id] = cs.Name
		}
		if len(cs.ClientIDs) > 0 && len(c.Auth.JWT) == 0 {
			return fmt.Errorf("consumers[%d].client_ids: set, but auth.jwt names no issuer", i)
		}
	}
	return nil
}

// Backend authentication schemes (backends[].auth).
const (
	BackendAuthKey   = "api_key"
	BackendAuthEntra = "entra"
)

// Entra is how a backend with auth: entra gets its Microsoft Entra ID token.
// The credential is chosen by what is set: client_secret, else
// client_certificate_file, else a federated token file (workload identity:
// federated_token_file or AZURE_FEDERATED_TOKEN_FILE), else the managed
// identity (client_id selects a user-assigned one).
type Entra struct {
	TenantID                  string `yaml:"tenant_id"`
	ClientID                  string `yaml:"client_id"`
	ClientSecret              string `yaml:"client_secret"`
	ClientCertificateFile     string `yaml:"client_certificate_file"` // PEM or PKCS#12 with the private key
	ClientCertificatePassword string `yaml:"client_certificate_password"`
	FederatedTokenFile        string `yaml:"federated_token_file"`
	// Scope of the token. Default https://cognitiveservices.azure.com/.default.
	Scope string `yaml:"scope"`
	// AuthorityHost is the Entra ID endpoint. Default
	// https://login.microsoftonline.com/ (other clouds: theirs).
	AuthorityHost string `yaml:"authority_host"`
}

func (c *Config) applyBackendAuthDefaults() {
	for i := range c.Backends {
		b := &c.Backends[i]
		b.Auth = cmp.Or(b.Auth, BackendAuthKey)
		if b.Auth == BackendAuthEntra {
			b.Entra.Scope = cmp.Or(b.Entra.Scope, "https://cognitiveservices.azure.com/.default")
			b.Entra.AuthorityHost = cmp.Or(b.Entra.AuthorityHost, "https://login.microsoftonline.com/")
		}
	}
}

func (c *Config) validateBackendAuth() error {
	for i, b := range c.Backends {
		p := fmt.Sprintf("backends[%d]", i)
		switch b.Auth {
		case "", BackendAuthKey:
			if b.Entra != (Entra{}) {
				return fmt.Errorf("%s.entra: set, but auth is not entra", p)
			}
		case BackendAuthEntra:
			e := b.Entra
			if b.APIKey != "" {
				return fmt.Errorf("%s.api_key: set with auth: entra (the backend gets an Entra ID token instead)", p)
			}
			if (e.ClientSecret != "" || e.ClientCertificateFile != "") && (e.TenantID == "" || e.ClientID == "") {
				return fmt.Errorf("%s.entra: client_secret and client_certificate_file need tenant_id and client_id", p)
			}
			if e.ClientSecret != "" && e.ClientCertificateFile != "" {
				return fmt.Errorf("%s.entra: set client_secret or client_certificate_file, not both", p)
			}
			if u, err := url.Parse(e.AuthorityHost); err != nil || u.Scheme != "https" || u.Host == "" {
				return fmt.Errorf("%s.entra.authority_host: %q is not an https URL", p, e.AuthorityHost)
			}
		default:
			return fmt.Errorf("%s.auth: %q is not api_key or entra", p, b.Auth)
		}
	}
	return nil
}
