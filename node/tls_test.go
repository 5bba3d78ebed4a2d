package node

import (
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/llmgate/llmgate/internal/config"
)

func TestUpstreamCAFile(t *testing.T) {
	backend := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer backend.Close()
	caFile := filepath.Join(t.TempDir(), "backend-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: backend.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	build := func(ca string) (*Gateway, error) {
		cfg := &config.Config{
			Backends: []config.Backend{{Name: "private", Kind: config.KindOpenAI, URL: backend.URL + "/v1"}},
			Routes:   map[string]config.Route{"gpt-4o": {Pool: [][]string{{"private"}}}},
		}
		cfg.Upstream.CAFile = ca
		cfg.ApplyDefaults()
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		return New(cfg, Options{})
	}
	tests := []struct {
		name, ca, wantErr string
	}{
		{"a backend signed by the ca_file's CA is trusted", caFile, ""},
		{"without ca_file the private CA is not trusted", "", "certificate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g, err := build(tc.ca)
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			resp, err := g.client.Get(backend.URL)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("request to the private backend: %v", err)
				}
				resp.Body.Close()
			} else if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want one about the %s", err, tc.wantErr)
			}
		})
	}
	if _, err := build(filepath.Join(t.TempDir(), "missing.pem")); err == nil || !strings.Contains(err.Error(), "upstream.ca_file") {
		t.Fatalf("a missing ca_file: %v", err)
	}
}
