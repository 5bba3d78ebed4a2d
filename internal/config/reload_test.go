package config

import (
	"slices"
	"testing"
	"time"
)

func loaded(t *testing.T, yaml string) *Config {
	t.Helper()
	c, err := Parse([]byte(yaml), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c
}

const base = `node: {name: gw-1, data_dir: /tmp/d1}
cluster: {gossip: 127.0.0.1:7946, join: [127.0.0.1:7947]}
backends: [{name: m, kind: openai, url: http://127.0.0.1:9/v1}]
routes: {gpt-4o: {pool: [[m]]}}
consumers: [{name: a, keys: [k1], tpm: 100}]
`

func TestDiffAndRestartOnly(t *testing.T) {
	tests := []struct {
		name        string
		change      func(*Config)
		diff, fixed []string
	}{
		{"nothing changed", func(*Config) {}, nil, nil},
		{"a consumer's limit is live", func(c *Config) { c.Consumers[0].TPM = 5 }, []string{"consumers"}, nil},
		{"a threshold and the log level are live", func(c *Config) { c.Cache.ScoreThreshold = 0.01; c.Log.Level = "debug" },
			[]string{"cache.score_threshold", "log.level"}, nil},
		{"routes and backends are live", func(c *Config) { c.Routes["x"] = Route{Pool: [][]string{{"m"}}}; c.Backends[0].TPM = 9 },
			[]string{"backends", "routes"}, nil},
		{"the listen address needs a restart", func(c *Config) { c.Listen = "127.0.0.1:1" }, []string{"listen"}, []string{"listen"}},
		{"the data dir needs a restart", func(c *Config) { c.Node.DataDir = "/x" }, []string{"node.data_dir"}, []string{"node.data_dir"}},
		{"the node name needs a restart", func(c *Config) { c.Node.Name = "gw-9" }, []string{"node.name"}, []string{"node.name"}},
		{"gossip seeds need a restart", func(c *Config) { c.Cluster.Join = nil }, []string{"cluster.join"}, []string{"cluster.join"}},
		{"the cache TTL and max_entries are live", func(c *Config) { c.Cache.TTL = time.Minute; c.Cache.MaxEntries = 10 },
			[]string{"cache.ttl", "cache.max_entries"}, nil},
		{"the cache index needs a restart", func(c *Config) { c.Cache.Index = IndexCoderHNSW }, []string{"cache.index"}, []string{"cache.index"}},
		{"the graph's vectors need a restart", func(c *Config) { off := false; c.Cache.IndexInt8 = &off }, []string{"cache.index_int8"}, []string{"cache.index_int8"}},
		{"the graph's construction beam needs a restart", func(c *Config) { c.Cache.EfConstruction = 200 }, []string{"cache.ef_construction"}, []string{"cache.ef_construction"}},
		{"telemetry is live", func(c *Config) {
			c.Telemetry.OTLPEndpoint = "http://127.0.0.1:4318"
			c.Telemetry.CaptureContent = true
			c.Telemetry.UsageRetention = time.Hour
		}, []string{"telemetry.otlp_endpoint", "telemetry.capture_content", "telemetry.usage_retention"}, nil},
		{"turning the usage history off needs a restart", func(c *Config) { off := false; c.Telemetry.UsageHistory = &off },
			[]string{"telemetry.usage_history"}, []string{"telemetry.usage_history"}},
		{"token issuers and client ids are live", func(c *Config) {
			c.Auth.JWT = []JWTIssuer{{Issuer: "https://login.example.com/", Audience: "api://gw"}}
			c.Consumers[0].ClientIDs = []string{"app-1"}
		}, []string{"consumers", "auth.jwt"}, nil},
		{"the log format is live", func(c *Config) { c.Log.Format = "text" }, []string{"log.format"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := loaded(t, base), loaded(t, base)
			tc.change(b)
			if got := Diff(a, b); !slices.Equal(got, tc.diff) {
				t.Errorf("Diff = %v, want %v", got, tc.diff)
			}
			if got := RestartOnly(a, b); !slices.Equal(got, tc.fixed) {
				t.Errorf("RestartOnly = %v, want %v", got, tc.fixed)
			}
		})
	}
}

func TestHashIgnoresPerNodeSettings(t *testing.T) {
	a, b := loaded(t, base), loaded(t, base)
	b.Node = Node{Name: "gw-2", DataDir: "/tmp/d2"}
	b.Listen, b.Cluster.Gossip, b.Cluster.Join = "127.0.0.1:9999", "127.0.0.1:7947", []string{"127.0.0.1:7946"}
	if a.Hash() != b.Hash() {
		t.Error("two nodes of one cluster with the same shared settings have different hashes")
	}
	b.Consumers[0].Keys = []string{"k2"}
	if a.Hash() == b.Hash() {
		t.Error("a different consumer key does not change the hash")
	}
	if len(a.Hash()) != 16 {
		t.Errorf("hash %q is not 16 hex digits", a.Hash())
	}
}

func TestRestartOnlyTLS(t *testing.T) {
	withTLS := func(c *Config) { c.TLS.CertFile, c.TLS.KeyFile = "/a.crt", "/a.key" }
	tests := []struct {
		name          string
		before, after func(*Config)
		fixed         []string
	}{
		{"other files, client CA and minimum version are live", withTLS, func(c *Config) {
			c.TLS = TLS{CertFile: "/b.crt", KeyFile: "/b.key", AdminClientCAFile: "/ca.pem", MinVersion: "1.3"}
		}, nil},
		{"turning TLS off needs a restart", withTLS, func(c *Config) { c.TLS = TLS{} }, []string{"tls.cert_file"}},
		{"turning TLS on needs a restart", func(*Config) {}, withTLS, []string{"tls.cert_file"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := loaded(t, base), loaded(t, base)
			tc.before(a)
			tc.before(b)
			tc.after(b)
			if got := RestartOnly(a, b); !slices.Equal(got, tc.fixed) {
				t.Errorf("RestartOnly = %v, want %v", got, tc.fixed)
			}
		})
	}
}
