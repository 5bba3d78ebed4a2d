package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// binary is llmgate built once for the tests that run real processes.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "llmgate-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "llmgate")
	// Child processes inherit these; the test config references them.
	os.Setenv("TEST_ADMIN_TOKEN", "admin-t")
	os.Setenv("TEST_TEAM_KEY", "sk-from-env")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building llmgate: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freeAddr returns a loopback host:port free for TCP and UDP (gossip uses
// both) at the moment.
func freeAddr(t *testing.T) string {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		u, err := net.ListenPacket("udp", addr)
		ln.Close()
		if err == nil {
			u.Close()
			return addr
		}
	}
	t.Fatal("no free loopback port")
	return ""
}

// proc is a child llmgate process, always stopped when the test ends.
type proc struct {
	cmd    *exec.Cmd
	stdout *bytes.Buffer
	stderr *bytes.Buffer
	done   chan error
}

func start(t *testing.T, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(binary, args...), stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}, done: make(chan error, 1)}
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// wait returns the exit error, or fails after d.
func (p *proc) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err // let the cleanup's receive finish
		return err
	case <-time.After(d):
		t.Fatalf("process still running after %v; stderr:\n%s", d, p.stderr)
		return nil
	}
}

// readyOrExited waits until url answers 200 (true) or the process exits
// first (false, with its stderr logged: a port taken between freeAddr and
// the bind ends a node at once). Past d it stops the process and fails t
// with its stderr.
func (p *proc) readyOrExited(t *testing.T, url string, d time.Duration) bool {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		select {
		case err := <-p.done:
			p.done <- err // let the cleanup's receive finish
			t.Logf("%s exited before it was ready (%v); stderr:\n%s", p.cmd.Path, err, p.stderr)
			return false
		default:
		}
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return true
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = p.cmd.Process.Kill()
	err := <-p.done
	p.done <- err
	t.Fatalf("%s not ready within %v; stderr:\n%s", url, d, p.stderr)
	return false
}

func waitReady(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s not ready within 15s", url)
}

// startMock runs `llmgate mock-upstream` and returns its base URL.
func startMock(t *testing.T) string {
	t.Helper()
	p := exec.Command(binary, "mock-upstream", "--listen", "127.0.0.1:0", "--latency", "0", "--name", "mock-proc")
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

// nodeConfig is the configuration of a test node: backend m (the mock at
// mockURL) serving gpt-4o, the admin token and consumer team-a's key from the
// environment.
type nodeConfig struct {
	name, mockURL, listen, admin, gossip string
	join                                 []string // seed gossip addresses
	consumer                             string   // more fields of team-a, e.g. ", tpm: 3000"
	extra                                string   // more top-level YAML
	route                                string   // more fields of route gpt-4o, e.g. ", price: {…}"
}

// write writes the configuration to dir/llmgate.yaml, with the data
// directory in dir/data, and returns its path.
func (c nodeConfig) write(t *testing.T, dir string) string {
	t.Helper()
	join := ""
	if len(c.join) > 0 {
		join = ", join: [" + strings.Join(c.join, ", ") + "]"
	}
	cfg := fmt.Sprintf(`node: {name: %s, data_dir: %s/data}
listen: %s
admin_listen: %s
cluster: {gossip: %s%s}
admin_token: ${TEST_ADMIN_TOKEN}
backends:
  - {name: m, kind: openai, url: %s/v1, deployments: [gpt-4o]}
routes:
  gpt-4o: {pool: [[m]]%s}
consumers:
  - {name: team-a, keys: ["${TEST_TEAM_KEY}"]%s}
`, c.name, dir, c.listen, c.admin, c.gossip, join, c.mockURL, c.route, c.consumer) + c.extra
	path := filepath.Join(dir, "llmgate.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// writeConfig writes the configuration of a lone node gw-t.
func writeConfig(t *testing.T, dir, mockURL, listen, admin string) string {
	t.Helper()
	return nodeConfig{name: "gw-t", mockURL: mockURL, listen: listen, admin: admin, gossip: freeAddr(t)}.write(t, dir)
}

func TestServeRealProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes")
	}
	dir := t.TempDir()
	mockURL := startMock(t)
	listen, admin := freeAddr(t), freeAddr(t)
	path := writeConfig(t, dir, mockURL, listen, admin)
	profile := filepath.Join(dir, "cpu.pprof")
	p := start(t, "serve", "--config", path, "--cpu-profile", profile)
	waitReady(t, "http://"+listen+"/readyz")

	req, _ := http.NewRequest("POST", "http://"+listen+"/v1/chat/completions",
		strings.NewReader(`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"max_tokens":5}`))
	req.Header.Set("Authorization", "Bearer sk-from-env")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("x-llmgate-backend") != "m" || !strings.Contains(string(body), `"completion_tokens":5`) {
		t.Fatalf("through a real node: %d %v %s\nstderr: %s", resp.StatusCode, resp.Header, body, p.stderr)
	}
	resp, err = http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("admin with a token configured must refuse an anonymous client: %d", resp.StatusCode)
	}
	req, _ = http.NewRequest("GET", "http://"+admin+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer admin-t")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(metrics), `llmgate_requests_total{backend="m",code="200",op="chat",route="gpt-4o"} 1`) {
		t.Fatalf("/metrics with the admin token:\n%s", metrics)
	}

	// Graceful stop on SIGTERM: exit 0, JSON logs on stderr.
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.wait(t, 10*time.Second); err != nil {
		t.Fatalf("SIGTERM exit: %v\n%s", err, p.stderr)
	}
	first, _, _ := strings.Cut(p.stderr.String(), "\n")
	if !strings.HasPrefix(first, `{"time":`) {
		t.Fatalf("serve logs JSON lines, got %q", first)
	}
	// --cpu-profile: a pprof profile (gzipped protobuf), completed at shutdown.
	if b, err := os.ReadFile(profile); err != nil || len(b) < 64 || b[0] != 0x1f || b[1] != 0x8b {
		t.Fatalf("--cpu-profile wrote no profile (%v, %d bytes)", err, len(b))
	}

	// kill -9 leaves the directory lock to the kernel: a restart on the same data dir works.
	p2 := start(t, "serve", "--config", path)
	waitReady(t, "http://"+listen+"/readyz")
	_ = p2.cmd.Process.Kill()
	_ = p2.wait(t, 10*time.Second)
	p3 := start(t, "serve", "--config", path)
	waitReady(t, "http://"+listen+"/readyz")
	_ = p3.cmd.Process.Signal(syscall.SIGTERM)
	if err := p3.wait(t, 10*time.Second); err != nil {
		t.Fatalf("restart after kill -9: %v\n%s", err, p3.stderr)
	}
}

func TestServeStartupErrors(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes")
	}
	dir := t.TempDir()
	listen, admin := freeAddr(t), freeAddr(t)
	good := writeConfig(t, dir, "http://127.0.0.1:9", listen, admin)
	bad := filepath.Join(dir, "bad.yaml")
	_ = os.WriteFile(bad, []byte("listen: 127.0.0.1:1\nbakends: []\n"), 0o600)
	fileAsDir := filepath.Join(dir, "file")
	_ = os.WriteFile(fileAsDir, nil, 0o600)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"bad flag", []string{"serve", "--lisen", "x"}, "flag provided but not defined"},
		{"missing config", []string{"serve", "--config", filepath.Join(dir, "nope.yaml")}, "no such file"},
		{"unknown key", []string{"serve", "--config", bad}, `line 2: unknown key "bakends"`},
		{"bad address", []string{"serve", "--config", good, "--listen", "nonsense"}, "listen:"},
		{"port in use", []string{"serve", "--config", good, "--listen", busy.Addr().String()}, "address already in use"},
		{"gossip port in use", []string{"serve", "--config", good, "--gossip", busy.Addr().String()}, "gossip on " + busy.Addr().String()},
		{"unencrypted gossip off loopback", []string{"serve", "--config", good, "--gossip", "0.0.0.0:7946"}, "cluster.secret_key: required"},
		{"data dir is a file", []string{"serve", "--config", good, "--data-dir", fileAsDir}, "data directory"},
		{"unknown command", []string{"serv"}, "unknown command"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := start(t, tc.args...)
			err := p.wait(t, 10*time.Second)
			if err == nil {
				t.Fatalf("exit 0; stderr:\n%s", p.stderr)
			}
			if !strings.Contains(p.stderr.String(), tc.want) {
				t.Fatalf("stderr does not say %q:\n%s", tc.want, p.stderr)
			}
		})
	}

	// A data directory held by a running node is refused by a second one.
	start(t, "serve", "--config", good)
	waitReady(t, "http://"+listen+"/readyz")
	p2 := start(t, "serve", "--config", good, "--listen", freeAddr(t), "--admin-listen", freeAddr(t))
	if err := p2.wait(t, 10*time.Second); err == nil || !strings.Contains(p2.stderr.String(), "in use by another process") {
		t.Fatalf("second node on the same data dir: %v\n%s", err, p2.stderr)
	}
}

// TestStateSurvivesKill9 shows that quota counts (within the snapshot
// interval), run-time limit changes and acknowledged cache entries outlive a
// kill -9 of a real node.
func TestStateSurvivesKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes")
	}
	dir := t.TempDir()
	mockURL := startMock(t)
	listen, admin := freeAddr(t), freeAddr(t)
	path := nodeConfig{name: "gw-t", mockURL: mockURL, listen: listen, admin: admin, gossip: freeAddr(t),
		consumer: ", tpm: 100000, quota: {tokens: 1000000, period: daily}", extra: "cache: {enabled: true}\n"}.write(t, dir)
	call := func(method, url, body string, bearer string) (int, http.Header, string) {
		t.Helper()
		req, _ := http.NewRequest(method, url, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+bearer)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	chat := func(i int) string {
		return fmt.Sprintf(`{"model":"gpt-4o","max_tokens":50,"messages":[{"role":"user","content":"Question number %d about Kubernetes ingress"}]}`, i)
	}
	quotaUsed := func() (tpm, period float64) {
		t.Helper()
		_, _, body := call("GET", "http://"+admin+"/admin/quota/team-a", "", "admin-t")
		var s struct {
			TPMUsed   float64 `json:"tpm_used"`
			QuotaUsed float64 `json:"quota_used"`
			TPMLimit  float64 `json:"tpm_limit"`
		}
		if err := json.Unmarshal([]byte(body), &s); err != nil {
			t.Fatalf("quota status: %v: %s", err, body)
		}
		return s.TPMUsed, s.QuotaUsed
	}

	p := start(t, "serve", "--config", path)
	waitReady(t, "http://"+listen+"/readyz")
	for i := range 3 {
		if code, h, body := call("POST", "http://"+listen+"/v1/chat/completions", chat(i), "sk-from-env"); code != 200 || h.Get("x-llmgate-cache") != "miss" {
			t.Fatalf("request %d: %d %s %s\n%s", i, code, h.Get("x-llmgate-cache"), body, p.stderr)
		}
	}
	if code, _, body := call("PUT", "http://"+admin+"/admin/quota/team-a", `{"tpm":90000}`, "admin-t"); code != 200 {
		t.Fatalf("PUT limits: %d %s", code, body)
	}
	tpm, period := quotaUsed()
	if tpm == 0 || period != tpm {
		t.Fatalf("before the kill: tpm_used %v, quota_used %v", tpm, period)
	}
	time.Sleep(1500 * time.Millisecond) // one snapshot interval and more
	_ = p.cmd.Process.Kill()
	_ = p.wait(t, 10*time.Second)

	p2 := start(t, "serve", "--config", path)
	waitReady(t, "http://"+listen+"/readyz")
	if tpm2, period2 := quotaUsed(); tpm2 != tpm || period2 != period {
		t.Errorf("after kill -9: tpm_used %v quota_used %v, want %v and %v", tpm2, period2, tpm, period)
	}
	if _, _, body := call("GET", "http://"+admin+"/admin/quota/team-a", "", "admin-t"); !strings.Contains(body, `"tpm_limit":90000`) {
		t.Errorf("the run-time limit change was lost: %s", body)
	}
	// Entries load in the background; until then requests go uncached, never fail.
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; ; i++ {
		code, h, _ := call("POST", "http://"+listen+"/v1/chat/completions", chat(i%3), "sk-from-env")
		if code != 200 {
			t.Fatalf("request after restart: %d", code)
		}
		if h.Get("x-llmgate-cache") == "hit" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no cache hit after kill -9 and restart\n%s", p2.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = p2.cmd.Process.Signal(syscall.SIGTERM)
	if err := p2.wait(t, 10*time.Second); err != nil {
		t.Fatalf("stop: %v\n%s", err, p2.stderr)
	}
}

func TestDevKeyIsNeverLogged(t *testing.T) {
	listen := freeAddr(t)
	const secret = "sk-dev-secret-5d1e9a"
	p := exec.Command(binary, "serve", "--listen", listen, "--admin-listen", freeAddr(t), "--gossip", freeAddr(t), "--data-dir", t.TempDir())
	p.Env = append(os.Environ(), "LLMGATE_DEV_KEY="+secret, "LLMGATE_UPSTREAM_KEY=")
	var stderr bytes.Buffer
	p.Stdout, p.Stderr = &stderr, &stderr
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Process.Kill(); _ = p.Wait() })
	waitReady(t, "http://"+listen+"/readyz")
	if code, body := chatThrough(t, listen, secret); code != http.StatusOK {
		t.Fatalf("the dev key does not work: %d %s", code, body)
	}
	_ = p.Process.Signal(syscall.SIGTERM)
	_ = p.Wait()
	if strings.Contains(stderr.String(), secret) {
		t.Fatalf("the dev key is in the log:\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), "LLMGATE_DEV_KEY") {
		t.Fatalf("the log does not say where the key comes from:\n%s", stderr.String())
	}
}
