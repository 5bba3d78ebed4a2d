package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// startMockWith runs `llmgate mock-upstream` with extra flags and returns its base URL.
func startMockWith(t *testing.T, name string, flags ...string) string {
	t.Helper()
	p := exec.Command(binary, append([]string{"mock-upstream", "--listen", "127.0.0.1:0", "--name", name}, flags...)...)
	out, err := p.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Process.Kill(); _ = p.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("mock-upstream printed no address: %v", err)
	}
	addr := strings.TrimSpace(line[strings.LastIndexByte(strings.TrimSpace(line), ' ')+1:])
	go func() { _, _ = io.Copy(io.Discard, out) }()
	return "http://" + addr
}

// reloadNode is a real node whose configuration file a test rewrites.
type reloadNode struct {
	dir, path, listen, admin, gossip string
	slow, fast                       string // mock upstream URLs
	proc                             *proc
}

// write writes the configuration: team-a always, and extra YAML appended
// to the consumers list (more consumers) and to the file (more keys).
func (n *reloadNode) write(t *testing.T, listen, consumers, routes, tail string) {
	t.Helper()
	cfg := fmt.Sprintf(`node: {name: gw-r, data_dir: %s/data}
listen: %s
admin_listen: %s
cluster: {gossip: %s}
admin_token: ${TEST_ADMIN_TOKEN}
backends:
  - {name: slow, kind: openai, url: %s/v1}
  - {name: fast, kind: openai, url: %s/v1}
routes:
  gpt-4o: {pool: [[slow]]}
%sconsumers:
  - {name: team-a, keys: ["${TEST_TEAM_KEY}"], tpm: 1000000}
%s%s`, n.dir, listen, n.admin, n.gossip, n.slow, n.fast, routes, consumers, tail)
	if err := os.WriteFile(n.path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
}

func newReloadNode(t *testing.T) *reloadNode {
	t.Helper()
	dir := t.TempDir()
	n := &reloadNode{dir: dir, path: filepath.Join(dir, "llmgate.yaml"),
		// 40 tokens a second: a 60-token stream takes 1.5 s.
		slow: startMockWith(t, "slow", "--latency", "0", "--token-rate", "40"),
		fast: startMockWith(t, "fast", "--latency", "0")}
	// A node that exits before it is ready (another test took one of its
	// free ports first) is started again on other ports.
	for attempt := 1; ; attempt++ {
		n.listen, n.admin, n.gossip = freeAddr(t), freeAddr(t), freeAddr(t)
		n.write(t, n.listen, "", "", "cache: {enabled: true, score_threshold: 0.04}\nlog: {level: info}\n")
		n.proc = start(t, "serve", "--config", n.path)
		if n.proc.readyOrExited(t, "http://"+n.listen+"/readyz", 30*time.Second) {
			return n
		}
		if attempt == 3 {
			t.Fatal("the node exited before it was ready three times")
		}
	}
}

func (n *reloadNode) chat(t *testing.T, key, model, prompt string, stream bool) (int, http.Header, string) {
	t.Helper()
	body := fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":%q}],"max_tokens":60,"stream":%v}`, model, prompt, stream)
	req, _ := http.NewRequest("POST", "http://"+n.listen+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("x-llmgate-cache", "off")
	resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
	if err != nil {
		return 0, nil, err.Error()
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, nil, "reading: " + err.Error()
	}
	return resp.StatusCode, resp.Header, string(b)
}

func (n *reloadNode) adminCall(t *testing.T, method, path, body string, out any) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+n.admin+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer admin-t")
	resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return resp.StatusCode, string(b)
}

func (n *reloadNode) configHash(t *testing.T) string {
	t.Helper()
	var c struct {
		Members []struct {
			Name       string `json:"name"`
			ConfigHash string `json:"config_hash"`
		} `json:"members"`
	}
	n.adminCall(t, "GET", "/admin/cluster", "", &c)
	if len(c.Members) == 0 || c.Members[0].ConfigHash == "" {
		t.Fatalf("/admin/cluster shows no config hash: %+v", c)
	}
	return c.Members[0].ConfigHash
}

func (n *reloadNode) tpmLimit(t *testing.T, consumer string) int64 {
	t.Helper()
	var q struct {
		TPMLimit int64 `json:"tpm_limit"`
	}
	if code, body := n.adminCall(t, "GET", "/admin/quota/"+consumer, "", &q); code != 200 {
		t.Fatalf("quota of %s: %d %s", consumer, code, body)
	}
	return q.TPMLimit
}

func (n *reloadNode) metric(t *testing.T, series string) string {
	t.Helper()
	_, body := n.adminCall(t, "GET", "/metrics", "", nil)
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, series+" ") {
			return strings.TrimPrefix(l, series+" ")
		}
	}
	return ""
}

func TestReloadWhileStreaming(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes")
	}
	n := newReloadNode(t)
	hash1 := n.configHash(t)
	// A run-time limit change through the admin API, which the file must
	// not undo.
	if code, body := n.adminCall(t, "PUT", "/admin/quota/team-a", `{"tpm": 777777}`, nil); code != 200 {
		t.Fatalf("PUT quota: %d %s", code, body)
	}

	// A stream in flight on the old configuration, and requests running
	// all along.
	type result struct {
		code int
		body string
	}
	streamDone := make(chan result, 1)
	go func() {
		code, _, body := n.chat(t, "sk-from-env", "gpt-4o", "a long story", true)
		streamDone <- result{code, body}
	}()
	checkLoops := requestLoops(t, 3, func(w, i int) (int, string) {
		code, _, body := n.chat(t, "sk-from-env", "gpt-4o", fmt.Sprintf("w%d-%d", w, i), false)
		return code, body
	})
	time.Sleep(300 * time.Millisecond) // the stream has started

	// Every reloadable kind of setting changes: a new consumer with its key
	// and limits, team-a's limit in the file, a new backend route, a cache
	// threshold, the log level, the admin API's body limit.
	n.write(t, n.listen,
		"  - {name: team-b, keys: [sk-team-b], tpm: 4242}\n",
		"  gpt-4o-mini: {pool: [[fast]], price: {input_per_1m: 1, output_per_1m: 2}}\n",
		"cache: {enabled: true, score_threshold: 0.02}\nlog: {level: debug}\nserver: {max_body_bytes: 65536}\n")
	var ok struct {
		Reloaded bool     `json:"reloaded"`
		Changed  []string `json:"changed"`
	}
	if code, body := n.adminCall(t, "POST", "/admin/config/reload", "", &ok); code != 200 || !ok.Reloaded {
		t.Fatalf("reload: %d %s", code, body)
	}
	for _, want := range []string{"consumers", "routes", "cache.score_threshold", "log.level", "server.max_body_bytes"} {
		if !strings.Contains(strings.Join(ok.Changed, ","), want) {
			t.Errorf("changed = %v, missing %s", ok.Changed, want)
		}
	}

	// The new configuration is live for new requests.
	if code, h, body := n.chat(t, "sk-team-b", "gpt-4o-mini", "hello", false); code != 200 || h.Get("x-llmgate-backend") != "fast" {
		t.Errorf("team-b on the new route: %d backend %q %s", code, h.Get("x-llmgate-backend"), body)
	}
	if got := n.tpmLimit(t, "team-b"); got != 4242 {
		t.Errorf("team-b's tpm_limit = %d, want 4242", got)
	}
	if got := n.tpmLimit(t, "team-a"); got != 777777 {
		t.Errorf("team-a's run-time TPM (777777) must keep precedence over the file: %d", got)
	}
	if hash2 := n.configHash(t); hash2 == hash1 {
		t.Error("the config hash on /admin/cluster did not change")
	}

	// The stream that started before the reload finished whole.
	select {
	case r := <-streamDone:
		if r.code != 200 || !strings.Contains(r.body, "data: [DONE]") || strings.Contains(r.body, `"error"`) {
			t.Errorf("the stream in flight was disturbed: %d %s", r.code, r.body)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the stream in flight never finished")
	}
	checkLoops()

	// An invalid file changes nothing and says why.
	hash2 := n.configHash(t)
	n.write(t, n.listen, "  - {name: team-c, keys: [sk-team-c], tpm: -5}\n", "", "cache: {enabled: true, score_threshold: 0.02}\n")
	var refused struct {
		Reloaded bool     `json:"reloaded"`
		Errors   []string `json:"errors"`
		Error    struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if code, body := n.adminCall(t, "POST", "/admin/config/reload", "", &refused); code != 400 || refused.Reloaded || refused.Error.Code != "invalid_config" ||
		!strings.Contains(strings.Join(refused.Errors, " "), "consumers[1].tpm") {
		t.Fatalf("an invalid file: %d %s", code, body)
	}
	if code, _, _ := n.chat(t, "sk-team-b", "gpt-4o-mini", "still here", false); code != 200 {
		t.Errorf("after a refused reload team-b's key must still work: %d", code)
	}
	if n.configHash(t) != hash2 {
		t.Error("a refused reload changed the config hash")
	}

	// A change that needs a restart is refused whole, even with live changes beside it.
	n.write(t, freeAddr(t), "", "", "cache: {enabled: true, score_threshold: 0.02}\n")
	if code, body := n.adminCall(t, "POST", "/admin/config/reload", "", &refused); code != 400 || !strings.Contains(strings.Join(refused.Errors, " "), "listen: cannot change while the node runs") {
		t.Fatalf("changing listen: %d %s", code, body)
	}
	if code, _, _ := n.chat(t, "sk-team-b", "gpt-4o-mini", "still here", false); code != 200 {
		t.Errorf("a refused reload removed team-b: %d", code)
	}
	for result, want := range map[string]string{"ok": "1", "invalid": "1", "refused": "1"} {
		if got := n.metric(t, `llmgate_config_reloads_total{result="`+result+`"}`); got != want {
			t.Errorf("reloads{result=%q} = %q, want %s", result, got, want)
		}
	}
}

func TestReloadOnSIGHUP(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes")
	}
	n := newReloadNode(t)
	if code, _, _ := n.chat(t, "sk-team-b", "gpt-4o", "before", false); code != 401 {
		t.Fatalf("team-b's key works before it is configured: %d", code)
	}
	// The key and the log format (JSON to text) change together.
	n.write(t, n.listen, "  - {name: team-b, keys: [sk-team-b]}\n", "", "cache: {enabled: true, score_threshold: 0.04}\nlog: {format: text}\n")
	if err := n.proc.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "team-b's key works after SIGHUP", func() bool {
		code, _, _ := n.chat(t, "sk-team-b", "gpt-4o", "after", false)
		return code == 200
	})
	// A broken file on SIGHUP: the node keeps serving what it had.
	if err := os.WriteFile(n.path, []byte("routes: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := n.proc.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the refused reload is counted", func() bool {
		return n.metric(t, `llmgate_config_reloads_total{result="invalid"}`) == "1"
	})
	if code, _, body := n.chat(t, "sk-team-b", "gpt-4o", "still", false); code != 200 {
		t.Fatalf("after a broken file on SIGHUP: %d %s", code, body)
	}
	// The log is read once the process has exited (it writes it until then).
	_ = n.proc.cmd.Process.Signal(syscall.SIGTERM)
	_ = n.proc.wait(t, 30*time.Second)
	logs := n.proc.stderr.String()
	if !strings.Contains(logs, "configuration reload refused") {
		t.Error("the refused reload is not logged")
	}
	if !strings.Contains(logs, `"msg":"llmgate node serving"`) || !strings.Contains(logs, `msg="configuration reloaded"`) {
		t.Errorf("the log is not JSON before the reload and text after it:\n%s", logs)
	}
}

// requestLoops runs workers request loops until the returned check is
// called; check stops them and fails t if any request failed or none ran.
func requestLoops(t *testing.T, workers int, call func(w, i int) (int, string)) (check func()) {
	var failed, sent atomic.Int64
	var failures sync.Map
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				code, body := call(w, i)
				sent.Add(1)
				if code != 200 {
					failed.Add(1)
					failures.Store(fmt.Sprintf("w%d-%d", w, i), fmt.Sprintf("%d %s", code, body))
				}
			}
		})
	}
	return func() {
		t.Helper()
		close(stop)
		wg.Wait()
		if failed.Load() > 0 || sent.Load() == 0 {
			failures.Range(func(k, v any) bool { t.Logf("%v: %v", k, v); return true })
			t.Fatalf("%d of %d requests running across the reload failed", failed.Load(), sent.Load())
		}
	}
}
