package config

import (
	"os"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestSpecExampleIsAccepted(t *testing.T) {
	data, err := os.ReadFile("testdata/spec.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse(data, env(map[string]string{"TEAM_A_KEY": "sk-a", "TEAM_B_KEY": "sk-b", "AOAI_KEY_EAST": "east-key"}))
	if err != nil {
		t.Fatalf("the SPEC §3 example must parse: %v", err)
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("the SPEC §3 example must validate: %v", err)
	}
	if cfg.Node.Name != "gw-1" || cfg.Listen != "127.0.0.1:8080" || len(cfg.Backends) != 2 || len(cfg.Routes) != 3 {
		t.Fatalf("decoded wrongly: %+v", cfg)
	}
	if cfg.Backends[0].APIKey != "east-key" || cfg.Consumers[0].Keys[0] != "sk-a" {
		t.Fatalf("environment not expanded: %+v %+v", cfg.Backends[0], cfg.Consumers[0])
	}
	if got := cfg.Routes["gpt-4o"].Pool; len(got) != 2 || got[0][0] != "east" || got[1][0] != "west" {
		t.Fatalf("route pool decoded wrongly: %v", got)
	}
	if cfg.Cache.TTL != time.Hour || cfg.Consumers[0].Quota.Period != "daily" || cfg.Consumers[0].Quota.Tokens != 5000000 {
		t.Fatalf("cache/quota decoded wrongly: %+v %+v", cfg.Cache, cfg.Consumers[0].Quota)
	}
}

func TestSpecExampleWithUnsetVariables(t *testing.T) {
	data, _ := os.ReadFile("testdata/spec.yaml")
	cfg, err := Parse(data, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("unset variables must not make the example invalid: %v", err)
	}
	if len(cfg.Consumers[0].UsableKeys()) != 0 {
		t.Fatalf("an unset key variable must leave no usable key")
	}
}

func TestUnknownKeyNamesKeyAndLine(t *testing.T) {
	tests := []struct{ name, yaml, want string }{
		{"top level", "listen: 127.0.0.1:1\nlisten_addr: x\n", `line 2: unknown key "listen_addr"`},
		{"nested", "node:\n  name: a\n  nmae: b\n", `line 3: unknown key "node.nmae"`},
		{"in a list", "backends:\n  - name: a\n    kind: azure\n    urll: x\n", `line 4: unknown key "backends[0].urll"`},
		{"in a map value", "routes:\n  gpt-4o: {pool: [[a]], weight: 2}\n", `line 2: unknown key "routes.gpt-4o.weight"`},
		{"in a flow map", "consumers:\n  - name: a\n    quota: {tokens: 1, perod: daily}\n", `line 3: unknown key "consumers[0].quota.perod"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), env(nil))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %s", err, tc.want)
			}
		})
	}
}

func TestEnvExpansion(t *testing.T) {
	y := "admin_token: ${TOKEN}\nconsumers:\n  - name: a\n    keys: [\"k-${SUFFIX}\"]\n    tpm: ${TPM}\n"
	cfg, err := Parse([]byte(y), env(map[string]string{"TOKEN": "s3cret # not a comment", "SUFFIX": "x", "TPM": "1500"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.AdminToken != "s3cret # not a comment" {
		t.Errorf("admin_token = %q: a value must not be re-parsed as YAML", cfg.AdminToken)
	}
	if cfg.Consumers[0].Keys[0] != "k-x" {
		t.Errorf("quoted expansion = %q", cfg.Consumers[0].Keys[0])
	}
	if cfg.Consumers[0].TPM != 1500 {
		t.Errorf("a plain ${VAR} must still decode as a number: %d", cfg.Consumers[0].TPM)
	}
}

func TestValidate(t *testing.T) {
	base := func() *Config {
		c := &Config{
			Backends:  []Backend{{Name: "east", Kind: "azure", URL: "http://127.0.0.1:9000", Deployments: []string{"gpt-4o"}}},
			Routes:    map[string]Route{"gpt-4o": {Pool: [][]string{{"east"}}}},
			Consumers: []Consumer{{Name: "team-a", Keys: []string{"k1"}}},
		}
		c.ApplyDefaults()
		return c
	}
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"valid", func(*Config) {}, ""},
		{"bad listen", func(c *Config) { c.Listen = "8080" }, "listen:"},
		{"bad kind", func(c *Config) { c.Backends[0].Kind = "bedrock" }, "backends[0].kind"},
		{"bad url", func(c *Config) { c.Backends[0].URL = "ftp://x" }, "backends[0].url"},
		{"duplicate backend", func(c *Config) { c.Backends = append(c.Backends, c.Backends[0]) }, "duplicate backend"},
		{"unknown backend in route", func(c *Config) { c.Routes["gpt-4o"] = Route{Pool: [][]string{{"east"}, {"wset"}}} }, `routes.gpt-4o.pool[1][0]: unknown backend "wset"`},
		{"backend lacks deployment", func(c *Config) { c.Routes["gpt-4o-mini"] = Route{Pool: [][]string{{"east"}}} }, `has no deployment "gpt-4o-mini"`},
		{"empty group", func(c *Config) { c.Routes["gpt-4o"] = Route{Pool: [][]string{{}}} }, "empty priority group"},
		{"no routes", func(c *Config) { c.Routes = nil }, "routes:"},
		{"route name reserved for the cache", func(c *Config) { c.Routes["·verify"] = c.Routes["gpt-4o"] }, `must not begin with "·"`},
		{"construction beam out of range", func(c *Config) { c.Cache.EfConstruction = -1 }, "cache.ef_construction"},
		{"shared key", func(c *Config) {
			c.Consumers = append(c.Consumers, Consumer{Name: "team-b", Keys: []string{"k1"}})
		}, "shared with consumer"},
		{"duplicate consumer", func(c *Config) { c.Consumers = append(c.Consumers, Consumer{Name: "team-a"}) }, "duplicate consumer"},
		{"bad period", func(c *Config) { c.Consumers[0].Quota = Quota{Tokens: 5, Period: "fortnightly"} }, "quota.period"},
		{"negative usd", func(c *Config) { c.Consumers[0].Quota = Quota{USD: -1, Period: "daily"} }, "quota.usd"},
		{"usd without a period", func(c *Config) { c.Consumers[0].Quota = Quota{USD: 50} }, "quota.period"},
		{"usd beyond what micro-dollar counters hold", func(c *Config) { c.Consumers[0].Quota = Quota{USD: 2e6, Period: "monthly"} }, "quota.usd"},
		{"negative tpm", func(c *Config) { c.Consumers[0].TPM = -1 }, "tpm"},
		{"bad secret", func(c *Config) { c.Cluster.SecretKey = "c2hvcnQ=" }, "secret_key"},
		{"bad embedder", func(c *Config) { c.Cache.Embedder = "nope" }, "cache.embedder"},
		{"bad threshold", func(c *Config) { c.Cache.ScoreThreshold = 3 }, "score_threshold"},
		{"bad log level", func(c *Config) { c.Log.Level = "loud" }, "log.level"},
		{"bad counter key", func(c *Config) { c.Consumers[0].CounterKey = "team" }, "consumers[0].counter_key"},
		{"bad index", func(c *Config) { c.Cache.Index = "faiss" }, "cache.index"},
		{"bad vary_by", func(c *Config) { c.Cache.VaryBy = []string{"consumer", "colour"} }, "cache.vary_by[1]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.mutate(c)
			err := c.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("valid config rejected: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestParseRejectsBrokenYAML(t *testing.T) {
	for _, y := range []string{"", "listen: [", "backends: {name: a}\n", "consumers:\n  - tpm: lots\n"} {
		if _, err := Parse([]byte(y), env(nil)); err == nil {
			t.Errorf("accepted %q", y)
		}
	}
}

func FuzzParse(f *testing.F) {
	// Small seeds: the engine minimizes each new input, and a large seed such as
	// the SPEC example makes it spend its time there instead of exploring.
	f.Add([]byte("listen: ${X}\nroutes: {a: {pool: [[b]]}}\n"))
	f.Add([]byte("backends:\n  - {name: b, kind: azure, url: http://h:1}\nconsumers: [{name: c, keys: [${X}]}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data, env(map[string]string{"X": "1"}))
		if err != nil {
			return
		}
		cfg.ApplyDefaults()
		_ = cfg.Validate()
	})
}
