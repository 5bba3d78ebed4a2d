package main

import (
	"bufio"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// exportedMetrics runs a node through a small workload (a miss, a hit, a
// refused key, a request over the TPM) and returns the metric names its
// /metrics then shows, with their types.
func exportedMetrics(t *testing.T) map[string]string {
	t.Helper()
	mockURL := startMock(t)
	dir := t.TempDir()
	n := &clusterNode{name: "gw-m", dir: dir, listen: freeAddr(t), admin: freeAddr(t), gossip: freeAddr(t)}
	n.config = nodeConfig{name: n.name, mockURL: mockURL, listen: n.listen, admin: n.admin, gossip: n.gossip,
		consumer: ", tpm: 2000, quota: {tokens: 1000000, usd: 100, period: daily}", route: ", price: {input_per_1m: 2.5, output_per_1m: 10}", extra: "cache: {enabled: true, store_wait: 1s}\n"}.write(t, dir)
	n.start(t)
	for _, max := range []int{10, 10, 5000} { // miss, hit, too large for the TPM
		n.chat(t, "what the dashboard shows", max)
	}
	req, _ := http.NewRequest("POST", "http://"+n.listen+"/v1/chat/completions", strings.NewReader(`{}`))
	req.Header.Set("api-key", "sk-not-a-key")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
	time.Sleep(200 * time.Millisecond) // the observers run after the answers
	req, _ = http.NewRequest("GET", "http://"+n.admin+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer admin-t")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	types := map[string]string{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			types[f[2]] = f[3]
		}
	}
	return types
}

var metricName = regexp.MustCompile(`\bllmgate_[a-z0-9_]+`)

// conditional are metrics a node exports only when a feature the workload
// does not configure is on; for them the test checks that a collector of
// the repository defines the name.
var conditional = map[string]string{
	"llmgate_cache_verify_precision": "cache.verify",
	"llmgate_cache_verify_audited":   "cache.verify",
}

// definedInSource reports whether a non-test Go file of the repository
// declares the metric name as a string.
func definedInSource(t *testing.T, name string) bool {
	t.Helper()
	found := false
	_ = filepath.WalkDir(filepath.Join("..", ".."), func(path string, d os.DirEntry, err error) error {
		if err != nil || found || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, rerr := os.ReadFile(path)
		if rerr == nil && strings.Contains(string(b), `"`+name+`"`) {
			found = true
		}
		return nil
	})
	return found
}

// unexported returns the llmgate_ series named in expr that the node does
// not export (a histogram's _bucket, _sum and _count count as its own).
func unexported(expr string, types map[string]string) []string {
	var missing []string
	for _, name := range metricName.FindAllString(expr, -1) {
		if _, ok := types[name]; ok {
			continue
		}
		found := false
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suffix); ok && (types[base] == "histogram" || types[base] == "summary") {
				found = true
			}
		}
		if !found {
			missing = append(missing, name)
		}
	}
	return missing
}

// TestDeployFilesNameExportedMetrics checks the Grafana dashboard and the
// Prometheus alert rules against what a running node exports, and the rules
// with promtool.
func TestDeployFilesNameExportedMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes")
	}
	types := exportedMetrics(t)
	if len(types) < 20 {
		t.Fatalf("the node exports only %d metrics: %v", len(types), types)
	}
	for _, want := range []string{"llmgate_consumer_requests_total", "llmgate_cache_tokens_saved_total", "llmgate_consumer_tpm_remaining", "llmgate_consumer_quota_remaining_tokens", "llmgate_consumer_budget_remaining_usd", "llmgate_storage_paused", "llmgate_data_disk_free_bytes"} {
		if _, ok := types[want]; !ok {
			t.Errorf("%s is not exported after the workload", want)
		}
	}

	root := filepath.Join("..", "..", "deploy")
	raw, err := os.ReadFile(filepath.Join(root, "grafana", "llmgate.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash any
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	queries := 0
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if s, ok := e.(string); ok && (k == "expr" || k == "definition") {
					queries++
					if !metricName.MatchString(s) {
						t.Errorf("dashboard query names no llmgate metric: %s", s)
					}
					if m := unexported(s, types); len(m) > 0 {
						t.Errorf("dashboard query names %v, which the node does not export: %s", m, s)
					}
				}
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(dash)
	if queries < 10 {
		t.Errorf("the dashboard has %d queries; expected its panels' queries", queries)
	}

	rulesPath := filepath.Join(root, "prometheus", "alerts.yml")
	raw, err = os.ReadFile(rulesPath)
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert, Expr string
			}
		}
	}
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatal(err)
	}
	alerts := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			alerts[r.Alert] = true
			for _, m := range unexported(r.Expr, types) {
				if _, ok := conditional[m]; ok && definedInSource(t, m) {
					continue // exported once its feature is configured
				}
				t.Errorf("alert %s names %s, which the node does not export", r.Alert, m)
			}
		}
	}
	for _, want := range []string{"LLMGateConsumerNearTPM", "LLMGateConsumerNearQuota", "LLMGateBackendCircuitOpen", "LLMGateClusterMemberDown", "LLMGateCachePrecisionLow", "LLMGateDiskReserveReached", "LLMGateConsumerNearBudget", "LLMGateConsumerBudgetExhausted"} {
		if !alerts[want] {
			t.Errorf("alert %s is missing", want)
		}
	}

	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool is not installed (Debian package prometheus); .ci/run installs it")
		}
		t.Skip("promtool not installed (apt-get install prometheus): the rules' syntax is not checked")
	}
	if out, err := exec.Command(promtool, "check", "rules", rulesPath).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules: %v\n%s", err, out)
	}
}
