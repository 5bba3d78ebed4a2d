package identity

import (
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/llmgate/llmgate/internal/config"
	"github.com/llmgate/llmgate/internal/promreg"
)

// MaxTokenBytes is the largest bearer token looked at; larger ones are
// refused before any parsing.
const MaxTokenBytes = 16 << 10

// maxJWKSBytes bounds a discovery document or key set.
const maxJWKSBytes = 1 << 20

// JWTOptions configure JWT.
type JWTOptions struct {
	Issuers []config.JWTIssuer // defaults applied and validated
	// ClientIDs maps a consumer_claim value to its consumer.
	ClientIDs map[string]string
	// Client fetches discovery documents and key sets (default: a plain
	// client; each fetch has the issuer's fetch_timeout).
	Client     *http.Client
	Logger     *slog.Logger
	Now        func() time.Time
	Registerer prometheus.Registerer // nil = no metrics
	// Previous is the authenticator this one replaces after a configuration
	// reload: the key sets of issuers whose issuer, jwks_url and fetch
	// settings are unchanged are shared with it, keys and schedule
	// included, so a reload fetches nothing again. Tokens are verified
	// afresh (audiences, algorithms or client ids may have changed).
	// Previous keeps working until it is closed.
	Previous *JWT
}

// JWT authenticates consumers by OAuth2 / OIDC bearer tokens.
type JWT struct {
	byIss     map[string]*issuer // every accepted iss value, Entra's other form included
	clientIDs map[string]string
	log       *slog.Logger
	now       func() time.Time
	sets      []*keySet // one per configured issuer, shared with other JWTs by reference count
	closing   sync.Once
	fetches   *prometheus.CounterVec
	seen      verified
}

// verified remembers tokens that passed, by their SHA-256, until they expire
// (at most verifiedTTL): clients send the same token for its whole life, and
// a signature check costs far more than a map look-up. A key removed from the
// issuer's set therefore stops working within verifiedTTL.
type verified struct {
	mu sync.Mutex
	m  map[[32]byte]verifiedEntry
}

type verifiedEntry struct {
	p     Principal
	until time.Time
}

const (
	verifiedTTL = 5 * time.Minute
	verifiedMax = 10000
)

func (v *verified) get(h [32]byte, now time.Time) (Principal, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	e, ok := v.m[h]
	if !ok || !now.Before(e.until) {
		return Principal{}, false
	}
	return e.p, true
}

func (v *verified) put(h [32]byte, p Principal, until time.Time, now time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.m == nil {
		v.m = map[[32]byte]verifiedEntry{}
	}
	if len(v.m) >= verifiedMax {
		for k, e := range v.m {
			if !now.Before(e.until) {
				delete(v.m, k)
			}
		}
		for k := range v.m { // still full: drop some at random (map order)
			if len(v.m) < verifiedMax*9/10 {
				break
			}
			delete(v.m, k)
		}
	}
	v.m[h] = verifiedEntry{p, until}
}

// issuer is one configured issuer: its token checks and its key set.
type issuer struct {
	cfg    config.JWTIssuer
	parser *jwt.Parser
	keys   *keySet
}

// Entra ID issues v1 and v2 tokens of one tenant with different iss forms,
// signed by the same keys.
var (
	entraV2 = regexp.MustCompile(`^https://login\.microsoftonline\.com/([0-9A-Fa-f-]{36})/v2\.0/?$`)
	entraV1 = regexp.MustCompile(`^https://sts\.windows\.net/([0-9A-Fa-f-]{36})/?$`)
)

// issuerForms returns iss and, for an Entra ID issuer, the tenant's other form.
func issuerForms(iss string) []string {
	if m := entraV2.FindStringSubmatch(iss); m != nil {
		return []string{iss, "https://sts.windows.net/" + m[1] + "/"}
	}
	if m := entraV1.FindStringSubmatch(iss); m != nil {
		return []string{iss, "https://login.microsoftonline.com/" + m[1] + "/v2.0"}
	}
	return []string{iss}
}

// NewJWT builds the token authenticator and starts fetching every issuer's
// keys in the background, so the first request usually finds them.
func NewJWT(opts JWTOptions) (*JWT, error) {
	j := &JWT{
		byIss:     map[string]*issuer{},
		clientIDs: opts.ClientIDs,
		log:       cmp.Or(opts.Logger, slog.New(slog.DiscardHandler)),
		now:       opts.Now,
	}
	if j.now == nil {
		j.now = time.Now
	}
	client := opts.Client
	if client == nil {
		client = &http.Client{}
	}
	j.fetches = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "llmgate_jwt_key_fetches_total",
		Help: "Fetches of a token issuer's signing keys (discovery and JWKS), by issuer and result.",
	}, []string{"issuer", "result"})
	if opts.Previous != nil {
		j.fetches = opts.Previous.fetches // the shared key sets count there
	} else if opts.Registerer != nil {
		// A JWT rebuilt by a reload keeps counting in the same series.
		c, err := promreg.Register(opts.Registerer, j.fetches)
		if err != nil {
			return nil, fmt.Errorf("identity: registering JWT metrics: %w", err)
		}
		j.fetches = c
	}
	for _, ic := range opts.Issuers {
		var auds []string
		for _, a := range append([]string{ic.Audience}, ic.Audiences...) {
			if a != "" {
				auds = append(auds, a)
			}
		}
		is := &issuer{
			cfg: ic,
			parser: jwt.NewParser(
				jwt.WithValidMethods(ic.Algorithms),
				jwt.WithLeeway(ic.ClockSkew),
				jwt.WithTimeFunc(j.now),
				jwt.WithExpirationRequired(),
				jwt.WithIssuedAt(),
				jwt.WithAudience(auds...),
			),
		}
		if is.keys = opts.Previous.sharedKeys(ic); is.keys == nil {
			ctx, cancel := context.WithCancel(context.Background())
			is.keys = &keySet{
				issuer: ic.Issuer, jwksURL: ic.JWKSURL, client: client, ctx: ctx, cancel: cancel,
				timeout: ic.FetchTimeout, minRefresh: ic.MinRefreshInterval, every: ic.RefreshInterval,
				now: j.now, log: j.log, fetches: j.fetches,
			}
			is.keys.refs.Store(1)
			is.keys.start()
		}
		j.sets = append(j.sets, is.keys)
		for _, form := range issuerForms(ic.Issuer) {
			if _, taken := j.byIss[form]; !taken {
				j.byIss[form] = is
			}
		}
	}
	return j, nil
}

// sharedKeys returns j's key set for ic, with one more reference, when ic
// fetches the same keys the same way; nil otherwise (or when j is nil).
func (j *JWT) sharedKeys(ic config.JWTIssuer) *keySet {
	if j == nil {
		return nil
	}
	for _, s := range j.sets {
		if s.issuer == ic.Issuer && s.jwksURL == ic.JWKSURL && s.timeout == ic.FetchTimeout &&
			s.minRefresh == ic.MinRefreshInterval && s.every == ic.RefreshInterval {
			s.refs.Add(1)
			return s
		}
	}
	return nil
}

// Close stops the background fetches of the key sets no other JWT shares.
func (j *JWT) Close() {
	j.closing.Do(func() {
		for _, s := range j.sets {
			if s.refs.Add(-1) == 0 {
				s.close()
			}
		}
	})
}

// looksLikeJWT reports whether s has the shape of a compact JWS: three
// base64url parts, the first a JSON object ("eyJ" is base64 of `{"`).
func looksLikeJWT(s string) bool {
	return strings.HasPrefix(s, "eyJ") && strings.Count(s, ".") == 2
}

// Authenticate validates a bearer token: ErrNotMine if it is not shaped like
// a JWT, else the principal or a *Refusal saying what is wrong with it (never
// the token). It waits for keys only on an unknown kid, and at most the
// issuer's fetch_timeout.
func (j *JWT) Authenticate(ctx context.Context, token string) (Principal, error) {
	if !looksLikeJWT(token) {
		return Principal{}, ErrNotMine
	}
	if len(token) > MaxTokenBytes {
		return Principal{}, refuse("The bearer token is larger than %d KiB.", MaxTokenBytes>>10)
	}
	h := sha256.Sum256([]byte(token))
	now := j.now()
	if p, ok := j.seen.get(h, now); ok {
		return p, nil
	}
	var peek jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(token, &peek); err != nil {
		return Principal{}, refuse("The bearer token is malformed.")
	}
	is, ok := j.byIss[peek.Issuer]
	if !ok {
		return Principal{}, refuse("The bearer token's issuer is not accepted by this gateway.")
	}
	claims := jwt.MapClaims{}
	_, err := is.parser.ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		return is.keys.key(ctx, kid, t.Method.Alg())
	})
	if err != nil {
		return Principal{}, tokenRefusal(err)
	}
	cid := stringClaim(claims, is.cfg.ConsumerClaim)
	if cid == "" {
		// Entra v1 tokens carry appid, v2 tokens azp.
		switch is.cfg.ConsumerClaim {
		case "azp":
			cid = stringClaim(claims, "appid")
		case "appid":
			cid = stringClaim(claims, "azp")
		}
	}
	if cid == "" {
		return Principal{}, refuse("The bearer token has no %s claim naming its client.", is.cfg.ConsumerClaim)
	}
	consumer, ok := j.clientIDs[cid]
	if !ok {
		return Principal{}, refuse("The token's client %q is not a consumer of this gateway.", cid)
	}
	p := Principal{Consumer: consumer, Kind: KindJWT, Issuer: is.cfg.Issuer}
	if is.cfg.UserClaim != "" {
		p.User = stringClaim(claims, is.cfg.UserClaim)
	}
	if exp, err := claims.GetExpirationTime(); err == nil && exp != nil {
		until := now.Add(verifiedTTL)
		if exp.Before(until) {
			until = exp.Time
		}
		j.seen.put(h, p, until, now)
	}
	return p, nil
}

func stringClaim(c jwt.MapClaims, name string) string {
	s, _ := c[name].(string)
	return s
}

// errKeys are key-set failures, shown to the client as they are.
var (
	errUnknownKID  = &Refusal{Reason: "The bearer token is signed with a key its issuer does not publish."}
	errKeysMissing = &Refusal{Reason: "The signing keys of the token's issuer are unavailable; try again shortly."}
)

// tokenRefusal turns a validation error into what the client is told.
func tokenRefusal(err error) error {
	var r *Refusal
	if errors.As(err, &r) {
		return r
	}
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return refuse("The bearer token is malformed.")
	case errors.Is(err, jwt.ErrTokenExpired):
		return refuse("The bearer token has expired.")
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return refuse("The bearer token is not valid yet.")
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return refuse("The bearer token is not meant for this gateway (audience).")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return refuse("The bearer token lacks a required claim (exp or aud).")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		if strings.Contains(err.Error(), "signing method") {
			return refuse("The bearer token's signing algorithm is not accepted.")
		}
		return refuse("The bearer token's signature is invalid.")
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return refuse("The bearer token cannot be verified.")
	}
	return refuse("The bearer token is invalid.")
}

// keySet is one issuer's signing keys: fetched in the background at start
// and every RefreshInterval, and at once when a token names an unknown kid
// (at most once per MinRefreshInterval; concurrent requests share one fetch).
// Requests read an immutable snapshot; a failed fetch keeps the old one.
type keySet struct {
	issuer, jwksURL string
	client          *http.Client
	ctx             context.Context // ends when the last JWT using it closes
	cancel          context.CancelFunc
	wg              sync.WaitGroup // fetches running
	refs            atomic.Int32   // the JWTs using it
	timeout         time.Duration
	minRefresh      time.Duration
	every           time.Duration
	now             func() time.Time
	log             *slog.Logger
	fetches         *prometheus.CounterVec

	snap atomic.Pointer[keySnapshot]

	mu          sync.Mutex
	fetching    chan struct{} // closed when the running fetch ends; nil if none
	lastAttempt time.Time
	resolved    string // jwks_uri found by discovery
	closed      bool   // no fetch starts any more
}

type keySnapshot struct {
	byKID   map[string]jose.JSONWebKey
	fetched time.Time
}

func (s *keySet) start() { s.refresh(true) }

// close ends the running fetch and starts no other.
func (s *keySet) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
}

// refresh starts a fetch unless one runs or (unless forced) one started
// less than minRefresh ago. It returns the channel closed when the running
// fetch ends, or nil when it started none.
func (s *keySet) refresh(force bool) chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fetching != nil {
		return s.fetching
	}
	if s.closed {
		return nil
	}
	now := s.now()
	if !force && !s.lastAttempt.IsZero() && now.Sub(s.lastAttempt) < s.minRefresh {
		return nil
	}
	s.lastAttempt = now
	done := make(chan struct{})
	s.fetching = done
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		err := s.fetch()
		if err != nil {
			s.log.Warn("fetching a token issuer's signing keys", "issuer", s.issuer, "err", err)
			s.fetches.WithLabelValues(s.issuer, "error").Inc()
		} else {
			s.fetches.WithLabelValues(s.issuer, "ok").Inc()
		}
		s.mu.Lock()
		s.fetching = nil
		s.mu.Unlock()
		close(done)
	}()
	return done
}

// key returns the public key kid names for a token signed with alg.
func (s *keySet) key(ctx context.Context, kid, alg string) (any, error) {
	if snap := s.snap.Load(); snap != nil {
		if k, ok := snap.byKID[kid]; ok {
			if s.now().Sub(snap.fetched) > s.every {
				s.refresh(false) // in the background: the cached key serves this request
			}
			return usable(k, alg)
		}
	}
	if done := s.refresh(false); done != nil {
		select {
		case <-done:
		case <-ctx.Done():
			return nil, errKeysMissing
		}
	}
	snap := s.snap.Load()
	if snap == nil {
		return nil, errKeysMissing
	}
	k, ok := snap.byKID[kid]
	if !ok {
		return nil, errUnknownKID
	}
	return usable(k, alg)
}

// usable returns k's public key if a token signed with alg may use it: the
// key's own alg, when it names one, must match, and its type must fit
// (golang-jwt checks that too; an HMAC alg never gets here).
func usable(k jose.JSONWebKey, alg string) (any, error) {
	if k.Algorithm != "" && k.Algorithm != alg {
		return nil, refuse("The bearer token's algorithm does not match its key.")
	}
	switch k.Key.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
		return k.Key, nil
	}
	return nil, refuse("The bearer token's key is not a public signing key.")
}

// fetch resolves the key set's URL (discovery, once) and loads the keys.
func (s *keySet) fetch() error {
	ctx, cancel := context.WithTimeout(s.ctx, s.timeout)
	defer cancel()
	url := s.jwksURL
	if url == "" {
		s.mu.Lock()
		url = s.resolved
		s.mu.Unlock()
	}
	if url == "" {
		var doc struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		if err := s.getJSON(ctx, strings.TrimSuffix(s.issuer, "/")+"/.well-known/openid-configuration", &doc); err != nil {
			return fmt.Errorf("discovery: %w", err)
		}
		if doc.Issuer != s.issuer {
			return fmt.Errorf("discovery: the document names issuer %q, not %q", doc.Issuer, s.issuer)
		}
		if !secureKeyURL(doc.JWKSURI) {
			return fmt.Errorf("discovery: jwks_uri %q is not https", doc.JWKSURI)
		}
		url = doc.JWKSURI
		s.mu.Lock()
		s.resolved = url
		s.mu.Unlock()
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := s.getJSON(ctx, url, &set); err != nil {
		return fmt.Errorf("key set: %w", err)
	}
	byKID := map[string]jose.JSONWebKey{}
	for _, raw := range set.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(raw); err != nil {
			continue // a key of a type this gateway does not know
		}
		if !k.IsPublic() || (k.Use != "" && k.Use != "sig") {
			continue
		}
		byKID[k.KeyID] = k
	}
	if len(byKID) == 0 {
		return errors.New("key set: no usable public signing key")
	}
	s.snap.Store(&keySnapshot{byKID: byKID, fetched: s.now()})
	return nil
}

func (s *keySet) getJSON(ctx context.Context, url string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: HTTP %d", url, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	if len(body) > maxJWKSBytes {
		return fmt.Errorf("GET %s: larger than %d bytes", url, maxJWKSBytes)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	return nil
}

// secureKeyURL accepts https, and http to loopback (a test issuer).
func secureKeyURL(u string) bool {
	if strings.HasPrefix(u, "https://") {
		return true
	}
	for _, p := range []string{"http://127.", "http://localhost:", "http://localhost/", "http://[::1]"} {
		if strings.HasPrefix(u, p) {
			return true
		}
	}
	return false
}
