package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConfigCheck(t *testing.T) {
	valid := `node: {name: gw-c, data_dir: DATA}
backends:
  - {name: m, kind: openai, url: http://127.0.0.1:9/v1, deployments: [gpt-4o]}
routes:
  gpt-4o: {pool: [[m]]}
consumers:
  - {name: team-a, keys: ["${CHECK_TEST_UNSET_KEY}"]}
`
	tests := []struct {
		name     string
		yaml     string
		args     []string
		wantErr  string // "" = valid
		wantWarn string
	}{
		{name: "valid file is ok and names unset variables", yaml: valid, wantWarn: "CHECK_TEST_UNSET_KEY"},
		{name: "unknown key is refused with its line", yaml: valid + "cache: {enbled: true}\n", wantErr: `line 8: unknown key "cache.enbled"`},
		{name: "route to an unknown backend is refused", yaml: strings.Replace(valid, "[[m]]", "[[x]]", 1), wantErr: `unknown backend "x"`},
		{name: "override flags are checked too", yaml: valid, args: []string{"--gossip", "10.1.2.3:7946"}, wantErr: "cluster.secret_key: required"},
		{name: "broken YAML is refused", yaml: "routes: [\n", wantErr: "parsing YAML"},
		{name: "TLS files that cannot be read are refused", yaml: valid + "tls: {cert_file: DATA/none.crt, key_file: DATA/none.key}\n", wantErr: "tls.cert_file, tls.key_file"},
		{name: "a key without its certificate is refused", yaml: valid + "tls: {key_file: /x.key}\n", wantErr: "tls: cert_file and key_file go together"},
		{name: "TLS 1.1 is refused", yaml: valid + "tls: {min_version: \"1.1\"}\n", wantErr: "tls.min_version"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			data := filepath.Join(dir, "data")
			path := filepath.Join(dir, "llmgate.yaml")
			if err := os.WriteFile(path, []byte(strings.ReplaceAll(tc.yaml, "DATA", data)), 0o600); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), append([]string{"config", "check", "--config", path}, tc.args...), &stdout, &stderr)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("valid config refused: %v", err)
				}
				if !strings.Contains(stdout.String(), ": ok (node gw-c, 1 backends, 1 routes, 1 consumers)") {
					t.Errorf("stdout = %q", stdout.String())
				}
			} else if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
			}
			if tc.wantWarn != "" && !strings.Contains(stderr.String(), tc.wantWarn) {
				t.Errorf("stderr = %q, want a warning naming %s", stderr.String(), tc.wantWarn)
			}
			if _, err := os.Stat(data); !os.IsNotExist(err) {
				t.Errorf("config check created the data directory (stat: %v)", err)
			}
		})
	}
}

func TestConfigCheckNeedsAFile(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"config", "check"}, &out, &out); err == nil || !strings.Contains(err.Error(), "--config FILE is required") {
		t.Fatalf("err = %v", err)
	}
	if err := run(context.Background(), []string{"config", "check", "--config", filepath.Join(t.TempDir(), "missing.yaml")}, &out, &out); err == nil || !strings.Contains(err.Error(), "reading config") {
		t.Fatalf("err = %v", err)
	}
	if err := run(context.Background(), []string{"config", "lint"}, &out, &out); err == nil || !strings.Contains(err.Error(), "unknown subcommand") {
		t.Fatalf("err = %v", err)
	}
}

func TestHealthcheck(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.Error(w, "draining", http.StatusServiceUnavailable)
		}
	}))
	defer ok.Close()
	var out bytes.Buffer
	if err := run(context.Background(), []string{"healthcheck", "--url", ok.URL + "/healthz"}, &out, &out); err != nil {
		t.Fatalf("a 200 must pass: %v", err)
	}
	if err := run(context.Background(), []string{"healthcheck", "--url", ok.URL + "/readyz"}, &out, &out); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("a 503 must fail: %v", err)
	}
	ok.Close()
	if err := run(context.Background(), []string{"healthcheck", "--url", ok.URL + "/healthz", "--timeout", "1s"}, &out, &out); err == nil {
		t.Fatal("a node that does not answer must fail")
	}
}
