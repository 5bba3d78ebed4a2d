package config

import (
	"cmp"
	"encoding/base64"
	"fmt"
	"maps"
	"math"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/llmgate/llmgate/internal/embed"
)

// Config is one node's configuration.
type Config struct {
	Node        Node             `yaml:"node"`
	Listen      string           `yaml:"listen"`
	AdminListen string           `yaml:"admin_listen"`
	AdminToken  string           `yaml:"admin_token"`
	Cluster     Cluster          `yaml:"cluster"`
	Backends    []Backend        `yaml:"backends"`
	Routes      map[string]Route `yaml:"routes"`
	Consumers   []Consumer       `yaml:"consumers"`
	Auth        Auth             `yaml:"auth"`
	Cache       Cache            `yaml:"cache"`
	Limits      Limits           `yaml:"limits"`
	Server      Server           `yaml:"server"`
	Upstream    Upstream         `yaml:"upstream"`
	Log         Log              `yaml:"log"`
	Responses   Responses        `yaml:"responses"`
	Telemetry   Telemetry        `yaml:"telemetry"`
	TLS         TLS              `yaml:"tls"`
}

// Node names this node and its storage.
type Node struct {
	Name    string `yaml:"name"`
	DataDir string `yaml:"data_dir"`
	// DiskReserveBytes is the free space on the data disk below which new
	// cache entries are not stored (requests are still served). Default 256 MiB.
	DiskReserveBytes int64 `yaml:"disk_reserve_bytes"`
}

// Cluster is the gossip membership configuration.
type Cluster struct {
	Gossip    string   `yaml:"gossip"`
	Join      []string `yaml:"join"`
	SecretKey string   `yaml:"secret_key"`
}

// Backend is one model endpoint: an Azure OpenAI resource or an OpenAI-compatible API base.
type Backend struct {
	Name       string `yaml:"name"`
	Kind       string `yaml:"kind"`
	URL        string `yaml:"url"`
	APIKey     string `yaml:"api_key"`
	APIVersion string `yaml:"api_version"`
	// API is an azure backend's surface: deployments (default:
	// …/openai/deployments/{d}/…?api-version=) or v1 (…/openai/v1/…, the
	// model in the body, no api-version).
	API         string   `yaml:"api"`
	Deployments []string `yaml:"deployments"`
	TPM         int64    `yaml:"tpm"`
	// Weight spreads traffic within a priority group; 0 means 1.
	Weight int `yaml:"weight"`
	// Auth is how the gateway authenticates to the backend: api_key
	// (default) or entra (a Microsoft Entra ID token, configured by Entra).
	Auth  string `yaml:"auth"`
	Entra Entra  `yaml:"entra"`
}

// Backend kinds.
const (
	KindAzure  = "azure"
	KindOpenAI = "openai"
)

// Azure API surfaces (backends[].api).
const (
	APIDeployments = "deployments"
	APIV1          = "v1"
)

// Route maps what consumers call to ordered priority groups of backend names.
type Route struct {
	Pool [][]string `yaml:"pool"`
	// Price turns the route's token usage into cost (usage history, /admin/usage).
	Price Price `yaml:"price"`
}

// Price is what a route's tokens cost, in US dollars per million tokens.
// CachedInputPer1M applies to prompt tokens the backend served from its
// prompt cache; 0 means they cost InputPer1M.
type Price struct {
	InputPer1M       float64 `yaml:"input_per_1m"`
	OutputPer1M      float64 `yaml:"output_per_1m"`
	CachedInputPer1M float64 `yaml:"cached_input_per_1m"`
}

// Telemetry configures what a node reports about requests (SPEC §13).
type Telemetry struct {
	// OTLPEndpoint is the OTLP/HTTP collector base URL (traces and metrics);
	// empty = off.
	OTLPEndpoint string `yaml:"otlp_endpoint"`
	// LogRequests writes one JSON line per data-plane request. Default true.
	LogRequests *bool `yaml:"log_requests"`
	// CaptureContent adds the request body and the answer to the request
	// log, each cut to CaptureBytes (default 4096). Default false.
	CaptureContent bool `yaml:"capture_content"`
	CaptureBytes   int  `yaml:"capture_bytes"`
	// UsageRetention is how long hourly usage history is kept. Default 9600h (400 days).
	UsageRetention time.Duration `yaml:"usage_retention"`
	// TraceSampleRatio is the share of requests traced (0..1] when a client
	// sends no sampled traceparent; a client's sampling decision is kept.
	// Default 1: every request.
	TraceSampleRatio float64 `yaml:"trace_sample_ratio"`
	// UsageHistory keeps the usage history (/admin/usage). Default true.
	UsageHistory *bool `yaml:"usage_history"`
}

// Consumer is one calling team with its keys and limits.
type Consumer struct {
	Name  string   `yaml:"name"`
	Keys  []string `yaml:"keys"`
	TPM   int64    `yaml:"tpm"`
	Quota Quota    `yaml:"quota"`
	// ClientIDs are the OAuth2 client ids (auth.jwt consumer_claim values)
	// that authenticate as this consumer.
	ClientIDs []string `yaml:"client_ids"`
	// CounterKey says what the TPM and quota count: the consumer as a whole
	// (default), each route separately, or each end user (limits.user_header).
	CounterKey string `yaml:"counter_key"`
}

// Counter keys.
const (
	CounterConsumer = "consumer"
	CounterRoute    = "route"
	CounterUser     = "user"
)

// Limits configures token accounting (SPEC §5).
type Limits struct {
	// DefaultCompletionTokens is the completion allowance reserved for a chat
	// request that names no max_tokens. Default 1024.
	DefaultCompletionTokens int64 `yaml:"default_completion_tokens"`
	// UserHeader names the request header that identifies the end user for
	// counter_key: user and cache vary_by: user. Default x-user-id.
	UserHeader string `yaml:"user_header"`
}

// Quota is a token budget per UTC calendar period.
type Quota struct {
	Tokens int64 `yaml:"tokens"`
	// USD is a money budget for the period: the cost of the consumer's
	// tokens at routes.*.price, enforced like Tokens (0 = none).
	USD    float64 `yaml:"usd"`
	Period string  `yaml:"period"`
}

// Quota periods.
var Periods = []string{"hourly", "daily", "weekly", "monthly", "yearly"}

// Cache configures the semantic cache (SPEC §6).
type Cache struct {
	Enabled        bool    `yaml:"enabled"`
	Embedder       string  `yaml:"embedder"`
	ScoreThreshold float64 `yaml:"score_threshold"`
	// IgnoreSystemMessages leaves system and developer messages out of the
	// partition's shape. Default false: two requests whose system messages
	// differ ("Customer Alice, balance $10" / "Customer Bob, balance
	// $99000") then never share an answer.
	IgnoreSystemMessages bool `yaml:"ignore_system_messages"`
	// MaxEntryBytes: answers larger than this are served but not stored.
	// Default 1 MiB.
	MaxEntryBytes   int64         `yaml:"max_entry_bytes"`
	MaxMessageCount int           `yaml:"max_message_count"`
	VaryBy          []string      `yaml:"vary_by"`
	Shared          bool          `yaml:"shared"`
	TTL             time.Duration `yaml:"ttl"`
	MaxEntries      int           `yaml:"max_entries"`
	// Index is the nearest-neighbour graph: hnsw (default, the project's own)
	// or coder-hnsw (github.com/coder/hnsw; see the README for why it is not
	// the default).
	Index string `yaml:"index"`
	// EfSearch is the graph's search beam: higher finds the nearest entry
	// more surely in very large partitions, at proportionally more time.
	// 0 = the index's default (32; see index/graph.Params).
	EfSearch int `yaml:"ef_search"`
	// EfConstruction is the beam of the search that links a new entry into
	// the graph: higher builds a slightly better graph, each entry stored
	// costing proportionally more CPU. 0 = the index's default (see
	// index/graph.Params).
	EfConstruction int `yaml:"ef_construction"`
	// IndexInt8 walks the graph on int8 copies of the vectors instead of the
	// float32 vectors themselves: about a third less CPU per cache miss, for
	// 388 B more memory per entry (for 384-d vectors). Results are exact
	// either way. Default true; false saves the copies' memory.
	IndexInt8 *bool `yaml:"index_int8"`
	// EmbedTimeout bounds one embedding call; past it the request goes to the
	// backend uncached. Default 2s.
	EmbedTimeout time.Duration `yaml:"embed_timeout"`
	// StoreWait is how long a request waits for its answer to be stored
	// before the answer goes out; the store finishes in the background after
	// it. Default 20ms.
	StoreWait time.Duration `yaml:"store_wait"`
	// Verify turns on verified matching (SPEC §6); nil = off.
	Verify *CacheVerify `yaml:"verify"`
}

// CacheVerify configures verified matching: a judge route confirms semantic
// candidates the thresholds cannot vouch for (package verify).
type CacheVerify struct {
	// Route is the judge: a chat route of this config.
	Route string `yaml:"route"`
	// MaxErrorRate is the target share of wrong semantic hits the learned
	// thresholds keep within. Default 0.01.
	MaxErrorRate float64 `yaml:"max_error_rate"`
	// Radius is the widest cosine distance a candidate may have to be judged
	// (beyond score_threshold). Default 0.40, chosen for the local embedder
	// on the tuning half of the labelled pairs (bench cache --parts quality).
	Radius float64 `yaml:"radius"`
	// AuditRate is the share of hits served without a judge that are judged
	// in the background for the online precision estimate. Default 0.02.
	AuditRate float64 `yaml:"audit_rate"`
	// TokensPerMinute caps the judge's tokens per node. Default 20000.
	TokensPerMinute int64 `yaml:"tokens_per_minute"`
	// Timeout bounds one judge call; past it the candidate is a miss.
	// Default 2s.
	Timeout time.Duration `yaml:"timeout"`
}

// Cache index implementations.
const (
	IndexHNSW      = "hnsw"
	IndexCoderHNSW = "coder-hnsw"
)

// Server configures the data-plane HTTP server.
type Server struct {
	// MaxBodyBytes is the largest request body accepted (413 above). Default 4 MiB.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// ReadHeaderTimeout bounds reading request headers. Default 10s.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// BodyReadTimeout bounds reading one request body. Default 30s.
	BodyReadTimeout time.Duration `yaml:"body_read_timeout"`
	// IdleTimeout closes idle keep-alive connections. Default 120s.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// ShutdownTimeout is how long in-flight requests may finish on shutdown. Default 30s.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// DrainPeriod is how long a stopping node keeps serving with /readyz at
	// 503 before its listeners close, so load balancers stop sending first.
	// Default 2s.
	DrainPeriod time.Duration `yaml:"drain_period"`
	// StreamWriteTimeout drops a streaming client that reads nothing for this
	// long (each chunk's write must finish within it). Default 30s.
	StreamWriteTimeout time.Duration `yaml:"stream_write_timeout"`
	// MaxConnections caps the connections each listener serves at once;
	// one more is answered 503 and closed. Default 4096.
	MaxConnections int `yaml:"max_connections"`
}

// Upstream configures calls to backends.
type Upstream struct {
	// Timeout is the overall deadline of one client request, all attempts included. Default 300s.
	Timeout time.Duration `yaml:"timeout"`
	// ResponseHeaderTimeout bounds one attempt's wait for response headers; a backend
	// that hangs past it counts as failed and the next one is tried. Default 120s.
	ResponseHeaderTimeout time.Duration `yaml:"response_header_timeout"`
	// DialTimeout bounds connecting to a backend. Default 5s.
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// BreakerFailures is the number of consecutive failures that open a backend's circuit. Default 3.
	BreakerFailures int `yaml:"breaker_failures"`
	// BreakerCooldown is how long an open circuit stays open when the backend gave no Retry-After. Default 10s.
	BreakerCooldown time.Duration `yaml:"breaker_cooldown"`
	// MaxRetryAfter caps how long a backend's Retry-After (or retry-after-ms)
	// keeps its circuit open. Default 5m.
	MaxRetryAfter time.Duration `yaml:"max_retry_after"`
	// APIVersion is the Azure api-version used when neither backend nor client gives one.
	APIVersion string `yaml:"api_version"`
	// MaxIdleConnsPerBackend is the keep-alive pool size per backend. Default 256.
	MaxIdleConnsPerBackend int `yaml:"max_idle_conns_per_backend"`
	// CAFile is a PEM bundle of CA certificates trusted for backends beside
	// the system's roots: private backends with an internal CA.
	CAFile string `yaml:"ca_file"`
}

// Responses configures the Responses API's state (SPEC §4).
type Responses struct {
	// AffinityTTL is how long the gateway remembers which consumer owns a
	// response id and which backend holds it. Default 720h (30 days, as long
	// as OpenAI keeps stored responses).
	AffinityTTL time.Duration `yaml:"affinity_ttl"`
}

// Log configures logging.
type Log struct {
	Level  string `yaml:"level"`  // debug | info | warn | error; default info
	Format string `yaml:"format"` // json | text; default json
}

// TLS serves the data plane and the admin listener over TLS (1.2 or later).
// Without cert_file both speak plain HTTP.
type TLS struct {
	// CertFile and KeyFile are the PEM certificate (chain) and key of both
	// listeners. They are re-read when they change (see ReloadInterval).
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// AdminClientCAFile, when set, makes the admin listener require a client
	// certificate signed by one of the CAs in this PEM bundle, on top of the
	// admin token.
	AdminClientCAFile string `yaml:"admin_client_ca_file"`
	// MinVersion is the lowest TLS version accepted: "1.2" (default) or "1.3".
	MinVersion string `yaml:"min_version"`
	// ReloadInterval is how often the files are checked for changes. Default 10s.
	ReloadInterval time.Duration `yaml:"reload_interval"`
}

// DefaultAPIVersion is the Azure OpenAI api-version used when nobody names one.
const DefaultAPIVersion = "2024-10-21"

// ApplyDefaults fills zero values with their defaults.
func (c *Config) ApplyDefaults() {
	c.Node.Name = cmp.Or(c.Node.Name, "llmgate")
	c.Node.DataDir = cmp.Or(c.Node.DataDir, "./data/"+c.Node.Name)
	c.Listen = cmp.Or(c.Listen, "127.0.0.1:8080")
	c.AdminListen = cmp.Or(c.AdminListen, "127.0.0.1:8081")
	c.Cluster.Gossip = cmp.Or(c.Cluster.Gossip, "127.0.0.1:7946")
	for i := range c.Backends {
		c.Backends[i].Weight = cmp.Or(c.Backends[i].Weight, 1)
	}
	c.Cache.Embedder = cmp.Or(c.Cache.Embedder, "local")
	// Chosen on labelled data for the local embedder with the match guard
	// (llmgate cache calibrate): the loosest distance with ≥ 99% precision on the tuning half.
	c.Cache.ScoreThreshold = cmp.Or(c.Cache.ScoreThreshold, embed.DefaultThreshold)
	c.Cache.MaxMessageCount = cmp.Or(c.Cache.MaxMessageCount, 10)
	if len(c.Cache.VaryBy) == 0 {
		c.Cache.VaryBy = []string{"consumer"}
	}
	c.Cache.TTL = cmp.Or(c.Cache.TTL, time.Hour)
	c.Cache.MaxEntries = cmp.Or(c.Cache.MaxEntries, 1_000_000)
	c.Cache.MaxEntryBytes = cmp.Or(c.Cache.MaxEntryBytes, 1<<20)
	c.Cache.Index = cmp.Or(c.Cache.Index, IndexHNSW)
	c.Cache.EmbedTimeout = cmp.Or(c.Cache.EmbedTimeout, 2*time.Second)
	c.Cache.StoreWait = cmp.Or(c.Cache.StoreWait, 20*time.Millisecond)
	if v := c.Cache.Verify; v != nil {
		v.MaxErrorRate = cmp.Or(v.MaxErrorRate, 0.01)
		v.Radius = cmp.Or(v.Radius, 0.40)
		v.AuditRate = cmp.Or(v.AuditRate, 0.02)
		v.TokensPerMinute = cmp.Or(v.TokensPerMinute, 20000)
		v.Timeout = cmp.Or(v.Timeout, 2*time.Second)
	}
	c.Limits.DefaultCompletionTokens = cmp.Or(c.Limits.DefaultCompletionTokens, 1024)
	c.Limits.UserHeader = cmp.Or(c.Limits.UserHeader, "x-user-id")
	for i := range c.Consumers {
		c.Consumers[i].CounterKey = cmp.Or(c.Consumers[i].CounterKey, CounterConsumer)
	}
	s := &c.Server
	s.MaxBodyBytes = cmp.Or(s.MaxBodyBytes, 4<<20)
	s.ReadHeaderTimeout = cmp.Or(s.ReadHeaderTimeout, 10*time.Second)
	s.BodyReadTimeout = cmp.Or(s.BodyReadTimeout, 30*time.Second)
	s.IdleTimeout = cmp.Or(s.IdleTimeout, 120*time.Second)
	s.ShutdownTimeout = cmp.Or(s.ShutdownTimeout, 30*time.Second)
	s.DrainPeriod = cmp.Or(s.DrainPeriod, 2*time.Second)
	s.MaxConnections = cmp.Or(s.MaxConnections, 4096)
	c.Node.DiskReserveBytes = cmp.Or(c.Node.DiskReserveBytes, 256<<20)
	s.StreamWriteTimeout = cmp.Or(s.StreamWriteTimeout, 30*time.Second)
	u := &c.Upstream
	u.Timeout = cmp.Or(u.Timeout, 300*time.Second)
	u.ResponseHeaderTimeout = cmp.Or(u.ResponseHeaderTimeout, 120*time.Second)
	u.DialTimeout = cmp.Or(u.DialTimeout, 5*time.Second)
	u.MaxRetryAfter = cmp.Or(u.MaxRetryAfter, 5*time.Minute)
	u.BreakerFailures = cmp.Or(u.BreakerFailures, 3)
	u.BreakerCooldown = cmp.Or(u.BreakerCooldown, 10*time.Second)
	u.APIVersion = cmp.Or(u.APIVersion, DefaultAPIVersion)
	u.MaxIdleConnsPerBackend = cmp.Or(u.MaxIdleConnsPerBackend, 256)
	if c.Cache.IndexInt8 == nil {
		on := true
		c.Cache.IndexInt8 = &on
	}
	if c.Telemetry.LogRequests == nil {
		on := true
		c.Telemetry.LogRequests = &on
	}
	if c.Telemetry.UsageHistory == nil {
		on := true
		c.Telemetry.UsageHistory = &on
	}
	c.Telemetry.CaptureBytes = cmp.Or(c.Telemetry.CaptureBytes, 4096)
	c.Telemetry.TraceSampleRatio = cmp.Or(c.Telemetry.TraceSampleRatio, 1)
	c.Telemetry.UsageRetention = cmp.Or(c.Telemetry.UsageRetention, 400*24*time.Hour)
	c.applyAuthDefaults()
	c.applyBackendAuthDefaults()
	c.TLS.ReloadInterval = cmp.Or(c.TLS.ReloadInterval, 10*time.Second)
	c.Responses.AffinityTTL = cmp.Or(c.Responses.AffinityTTL, 720*time.Hour)
	c.Log.Level = cmp.Or(c.Log.Level, "info")
	c.Log.Format = cmp.Or(c.Log.Format, "json")
}

// Validate checks the configuration and returns the first problem, named by its path.
func (c *Config) Validate() error {
	if err := c.validateAuth(); err != nil {
		return err
	}
	if err := c.validateBackendAuth(); err != nil {
		return err
	}
	for _, a := range []struct{ path, addr string }{{"listen", c.Listen}, {"admin_listen", c.AdminListen}, {"cluster.gossip", c.Cluster.Gossip}} {
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			return fmt.Errorf("%s: %q is not a host:port address", a.path, a.addr)
		}
	}
	for i, j := range c.Cluster.Join {
		if _, _, err := net.SplitHostPort(j); err != nil {
			return fmt.Errorf("cluster.join[%d]: %q is not a host:port address", i, j)
		}
	}
	if host, _, _ := net.SplitHostPort(c.Cluster.Gossip); c.Cluster.SecretKey == "" && !isLoopback(host) {
		return fmt.Errorf("cluster.secret_key: required when cluster.gossip (%s) is not a loopback address: gossip would travel unencrypted", c.Cluster.Gossip)
	}
	if c.Cluster.SecretKey != "" {
		key, err := base64.StdEncoding.DecodeString(c.Cluster.SecretKey)
		if err != nil {
			return fmt.Errorf("cluster.secret_key: not base64: %w", err)
		}
		if n := len(key); n != 16 && n != 24 && n != 32 {
			return fmt.Errorf("cluster.secret_key: decodes to %d bytes; AES needs 16, 24 or 32", n)
		}
	}
	backends := map[string]*Backend{}
	for i := range c.Backends {
		b := &c.Backends[i]
		p := fmt.Sprintf("backends[%d]", i)
		if b.Name == "" {
			return fmt.Errorf("%s.name: missing", p)
		}
		if backends[b.Name] != nil {
			return fmt.Errorf("%s.name: duplicate backend %q", p, b.Name)
		}
		backends[b.Name] = b
		if b.Kind != KindAzure && b.Kind != KindOpenAI {
			return fmt.Errorf("%s.kind: %q is not azure or openai", p, b.Kind)
		}
		if b.API != "" && b.API != APIDeployments && b.API != APIV1 {
			return fmt.Errorf("%s.api: %q is not deployments or v1", p, b.API)
		}
		if b.API == APIV1 && b.Kind != KindAzure {
			return fmt.Errorf("%s.api: v1 applies to azure backends only (an openai backend's url is its API base)", p)
		}
		u, err := url.Parse(b.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%s.url: %q is not an http(s) URL", p, b.URL)
		}
		if b.TPM < 0 {
			return fmt.Errorf("%s.tpm: must not be negative", p)
		}
		if b.Weight < 0 || b.Weight > 100 {
			return fmt.Errorf("%s.weight: must be between 1 and 100", p)
		}
	}
	if len(c.Routes) == 0 {
		return fmt.Errorf("routes: at least one route is needed")
	}
	for _, name := range slices.Sorted(maps.Keys(c.Routes)) {
		r := c.Routes[name]
		if strings.HasPrefix(name, "·") {
			// Reserved for the cache's internal records (verdicts).
			return fmt.Errorf("routes.%s: a route name must not begin with \"·\"", name)
		}
		if p := r.Price; p.InputPer1M < 0 || p.OutputPer1M < 0 || p.CachedInputPer1M < 0 {
			return fmt.Errorf("routes.%s.price: prices must not be negative", name)
		}
		if len(r.Pool) == 0 {
			return fmt.Errorf("routes.%s.pool: empty", name)
		}
		for gi, group := range r.Pool {
			if len(group) == 0 {
				return fmt.Errorf("routes.%s.pool[%d]: empty priority group", name, gi)
			}
			for bi, bn := range group {
				b := backends[bn]
				if b == nil {
					return fmt.Errorf("routes.%s.pool[%d][%d]: unknown backend %q", name, gi, bi, bn)
				}
				if len(b.Deployments) > 0 && !slices.Contains(b.Deployments, name) {
					return fmt.Errorf("routes.%s.pool[%d][%d]: backend %q has no deployment %q", name, gi, bi, bn, name)
				}
			}
		}
	}
	names := map[string]bool{}
	keys := map[string]string{}
	for i, cs := range c.Consumers {
		p := fmt.Sprintf("consumers[%d]", i)
		if cs.Name == "" {
			return fmt.Errorf("%s.name: missing", p)
		}
		if strings.ContainsAny(cs.Name, "/ ") {
			return fmt.Errorf("%s.name: %q must not contain '/' or spaces", p, cs.Name)
		}
		if names[cs.Name] {
			return fmt.Errorf("%s.name: duplicate consumer %q", p, cs.Name)
		}
		names[cs.Name] = true
		for _, k := range cs.Keys {
			if k == "" {
				continue // an unset ${VAR}: the key is unusable, not an error (see UsableKeys)
			}
			if other, dup := keys[k]; dup {
				return fmt.Errorf("%s.keys: a key is shared with consumer %q", p, other)
			}
			keys[k] = cs.Name
		}
		if cs.TPM < 0 {
			return fmt.Errorf("%s.tpm: must not be negative", p)
		}
		if cs.Quota.Tokens < 0 {
			return fmt.Errorf("%s.quota.tokens: must not be negative", p)
		}
		if cs.Quota.USD < 0 || math.IsNaN(cs.Quota.USD) || cs.Quota.USD > 1e6 {
			return fmt.Errorf("%s.quota.usd: %v is outside 0..1000000 (a budget is counted in micro-dollars)", p, cs.Quota.USD)
		}
		if (cs.Quota.Tokens > 0 || cs.Quota.USD > 0) && !slices.Contains(Periods, cs.Quota.Period) {
			return fmt.Errorf("%s.quota.period: %q is not one of %s", p, cs.Quota.Period, strings.Join(Periods, ", "))
		}
		switch cs.CounterKey {
		case CounterConsumer, CounterRoute, CounterUser:
		default:
			return fmt.Errorf("%s.counter_key: %q is not consumer, route or user", p, cs.CounterKey)
		}
	}
	ch := c.Cache
	if ch.ScoreThreshold < 0 || ch.ScoreThreshold > 2 {
		return fmt.Errorf("cache.score_threshold: %v is outside 0..2", ch.ScoreThreshold)
	}
	if ch.MaxMessageCount < 0 || ch.MaxEntries < 0 || ch.TTL < 0 || ch.EmbedTimeout < 0 || ch.StoreWait < 0 {
		return fmt.Errorf("cache: max_message_count, max_entries, ttl, embed_timeout and store_wait must not be negative")
	}
	if ch.MaxEntryBytes < 0 {
		return fmt.Errorf("cache.max_entry_bytes: %d is negative", ch.MaxEntryBytes)
	}
	if ch.EfSearch < 0 || ch.EfSearch > 4096 {
		return fmt.Errorf("cache.ef_search: %d is outside 0..4096", ch.EfSearch)
	}
	if ch.EfConstruction < 0 || ch.EfConstruction > 4096 {
		return fmt.Errorf("cache.ef_construction: %d is outside 0..4096", ch.EfConstruction)
	}
	if ch.Index != IndexHNSW && ch.Index != IndexCoderHNSW {
		return fmt.Errorf("cache.index: %q is not hnsw or coder-hnsw", ch.Index)
	}
	for i, v := range ch.VaryBy {
		if v != "consumer" && v != "route" && v != "user" && !strings.HasPrefix(v, "header:") {
			return fmt.Errorf("cache.vary_by[%d]: %q is not consumer, route, user or header:NAME", i, v)
		}
	}
	if c.Limits.DefaultCompletionTokens < 0 {
		return fmt.Errorf("limits.default_completion_tokens: must not be negative")
	}
	if ch.Embedder != "local" {
		if _, ok := c.Routes[ch.Embedder]; !ok {
			return fmt.Errorf("cache.embedder: %q is neither local nor a route", ch.Embedder)
		}
	}
	if v := ch.Verify; v != nil {
		if _, ok := c.Routes[v.Route]; !ok {
			return fmt.Errorf("cache.verify.route: %q is not a route", v.Route)
		}
		if v.MaxErrorRate <= 0 || v.MaxErrorRate >= 1 {
			return fmt.Errorf("cache.verify.max_error_rate: %v is outside (0, 1)", v.MaxErrorRate)
		}
		if v.Radius <= 0 || v.Radius > 2 {
			return fmt.Errorf("cache.verify.radius: %v is outside (0, 2]", v.Radius)
		}
		if v.AuditRate < 0 || v.AuditRate > 1 {
			return fmt.Errorf("cache.verify.audit_rate: %v is outside 0..1", v.AuditRate)
		}
		if v.TokensPerMinute < 0 || v.Timeout < 0 {
			return fmt.Errorf("cache.verify: tokens_per_minute and timeout must not be negative")
		}
	}
	if c.Node.DiskReserveBytes < 0 {
		return fmt.Errorf("node.disk_reserve_bytes: must not be negative")
	}
	if c.Server.StreamWriteTimeout < 0 {
		return fmt.Errorf("server.stream_write_timeout: must not be negative")
	}
	if c.Server.MaxConnections < 1 {
		return fmt.Errorf("server.max_connections: must be at least 1")
	}
	if c.Server.MaxBodyBytes < 1024 {
		return fmt.Errorf("server.max_body_bytes: %d is below 1024", c.Server.MaxBodyBytes)
	}
	if c.Upstream.MaxRetryAfter < 0 {
		return fmt.Errorf("upstream.max_retry_after: must not be negative")
	}
	if c.Upstream.BreakerFailures < 1 {
		return fmt.Errorf("upstream.breaker_failures: must be at least 1")
	}
	if err := c.TLS.validate(); err != nil {
		return err
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log.level: %q is not debug, info, warn or error", c.Log.Level)
	}
	t := c.Telemetry
	if t.CaptureBytes < 0 || t.UsageRetention < 0 {
		return fmt.Errorf("telemetry: capture_bytes and usage_retention must not be negative")
	}
	if t.TraceSampleRatio < 0 || t.TraceSampleRatio > 1 {
		return fmt.Errorf("telemetry.trace_sample_ratio: %v is outside 0..1", t.TraceSampleRatio)
	}
	if t.UsageRetention > 0 && t.UsageRetention < time.Hour {
		return fmt.Errorf("telemetry.usage_retention: %s is shorter than the one-hour rows it keeps", t.UsageRetention)
	}
	if t.OTLPEndpoint != "" {
		u, err := url.Parse(t.OTLPEndpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("telemetry.otlp_endpoint: %q is not an http(s) URL", t.OTLPEndpoint)
		}
	}
	if c.Responses.AffinityTTL < 0 {
		return fmt.Errorf("responses.affinity_ttl: must not be negative")
	}
	if c.Log.Format != "json" && c.Log.Format != "text" {
		return fmt.Errorf("log.format: %q is not json or text", c.Log.Format)
	}
	return nil
}

// UsableKeys returns the consumer's non-empty keys.
func (c Consumer) UsableKeys() []string {
	out := make([]string, 0, len(c.Keys))
	for _, k := range c.Keys {
		if k != "" {
			out = append(out, k)
		}
	}
	return out
}

// isLoopback reports whether host is a loopback IP or "localhost".
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (t TLS) validate() error {
	switch {
	case (t.CertFile == "") != (t.KeyFile == ""):
		return fmt.Errorf("tls: cert_file and key_file go together")
	case t.AdminClientCAFile != "" && t.CertFile == "":
		return fmt.Errorf("tls.admin_client_ca_file: needs tls.cert_file and key_file (client certificates need TLS)")
	case t.MinVersion != "" && t.MinVersion != "1.2" && t.MinVersion != "1.3":
		return fmt.Errorf("tls.min_version: %q is not 1.2 or 1.3", t.MinVersion)
	case t.ReloadInterval < 0:
		return fmt.Errorf("tls.reload_interval: must not be negative")
	}
	return nil
}
