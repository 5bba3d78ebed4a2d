package config

import (
	"strings"
	"testing"
)

func TestValidateAuth(t *testing.T) {
	base := func() *Config {
		c := &Config{
			Backends:  []Backend{{Name: "east", Kind: "azure", URL: "http://127.0.0.1:9000", Deployments: []string{"gpt-4o"}}},
			Routes:    map[string]Route{"gpt-4o": {Pool: [][]string{{"east"}}}},
			Consumers: []Consumer{{Name: "team-a", ClientIDs: []string{"c1"}}, {Name: "team-b", Keys: []string{"k"}}},
			Auth:      Auth{JWT: []JWTIssuer{{Issuer: "https://login.example.com/t/v2.0", Audience: "api://llmgate"}}},
		}
		c.ApplyDefaults()
		return c
	}
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"valid", func(*Config) {}, ""},
		{"loopback http issuer is allowed", func(c *Config) { c.Auth.JWT[0].Issuer = "http://127.0.0.1:9999" }, ""},
		{"plain http issuer", func(c *Config) { c.Auth.JWT[0].Issuer = "http://idp.example.com" }, "auth.jwt[0].issuer"},
		{"no audience", func(c *Config) { c.Auth.JWT[0].Audience = "" }, "auth.jwt[0].audience"},
		{"alg none", func(c *Config) { c.Auth.JWT[0].Algorithms = []string{"none"} }, "auth.jwt[0].algorithms[0]"},
		{"HMAC", func(c *Config) { c.Auth.JWT[0].Algorithms = []string{"RS256", "HS256"} }, "auth.jwt[0].algorithms[1]"},
		{"plain http jwks_url", func(c *Config) { c.Auth.JWT[0].JWKSURL = "http://idp.example.com/keys" }, "jwks_url"},
		{"duplicate issuer", func(c *Config) { c.Auth.JWT = append(c.Auth.JWT, c.Auth.JWT[0]) }, "duplicate issuer"},
		{"client id of two consumers", func(c *Config) { c.Consumers[1].ClientIDs = []string{"c1"} }, "consumers[1].client_ids[0]"},
		{"client ids without issuers", func(c *Config) { c.Auth.JWT = nil }, "consumers[0].client_ids"},
		{"entra backend with a client secret", func(c *Config) {
			c.Backends[0].Auth, c.Backends[0].Entra = "entra", Entra{TenantID: "t", ClientID: "c", ClientSecret: "s"}
			c.ApplyDefaults()
		}, ""},
		{"entra backend with managed identity", func(c *Config) { c.Backends[0].Auth = "entra"; c.ApplyDefaults() }, ""},
		{"unknown backend auth", func(c *Config) { c.Backends[0].Auth = "oauth" }, "backends[0].auth"},
		{"entra with an api_key too", func(c *Config) { c.Backends[0].Auth, c.Backends[0].APIKey = "entra", "k"; c.ApplyDefaults() }, "backends[0].api_key"},
		{"client secret without tenant", func(c *Config) {
			c.Backends[0].Auth, c.Backends[0].Entra = "entra", Entra{ClientID: "c", ClientSecret: "s"}
			c.ApplyDefaults()
		}, "need tenant_id"},
		{"entra block on a key backend", func(c *Config) { c.Backends[0].Entra = Entra{TenantID: "t"} }, "backends[0].entra"},
		{"http authority", func(c *Config) {
			c.Backends[0].Auth, c.Backends[0].Entra = "entra", Entra{AuthorityHost: "http://login.example.com/"}
			c.ApplyDefaults()
		}, "authority_host"},
	} {
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
