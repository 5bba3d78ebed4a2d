package main

import (
	"bufio"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startMockWithKey runs a mock upstream that requires key.
func startMockWithKey(t *testing.T, key string) string {
	t.Helper()
	p := exec.Command(binary, "mock-upstream", "--listen", "127.0.0.1:0", "--latency", "0", "--api-key", key)
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

func chatThrough(t *testing.T, listen, key string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", "http://"+listen+"/v1/chat/completions",
		strings.NewReader(`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"max_tokens":3}`))
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestServeUpstreamKey: without --config, the backend's key comes from
// --upstream-key or LLMGATE_UPSTREAM_KEY; the client's key never goes upstream.
func TestServeUpstreamKey(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes")
	}
	mockURL := startMockWithKey(t, "sk-backend")
	tests := []struct {
		name string
		args []string
		env  string
		want int
	}{
		{"no key is the backend's 401 relayed", nil, "", http.StatusUnauthorized},
		{"flag", []string{"--upstream-key", "sk-backend"}, "", http.StatusOK},
		{"environment", nil, "sk-backend", http.StatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			listen, admin, dir := freeAddr(t), freeAddr(t), t.TempDir()
			args := append([]string{"serve", "--upstream", mockURL + "/v1", "--listen", listen, "--admin-listen", admin,
				"--gossip", freeAddr(t), "--data-dir", dir}, tc.args...)
			p := exec.Command(binary, args...)
			p.Env = append(os.Environ(), "LLMGATE_UPSTREAM_KEY="+tc.env, "LLMGATE_DEV_KEY=sk-dev")
			if err := p.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = p.Process.Kill(); _ = p.Wait() })
			waitReady(t, "http://"+listen+"/readyz")
			if code, body := chatThrough(t, listen, "sk-dev"); code != tc.want {
				t.Fatalf("status %d, want %d: %s", code, tc.want, body)
			}
		})
	}
}

// TestServeDrainsBeforeClosing: on SIGTERM /readyz answers 503 (with
// Retry-After) while the node still serves, for the drain period.
func TestServeDrainsBeforeClosing(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes")
	}
	dir := t.TempDir()
	mockURL := startMock(t)
	listen, admin := freeAddr(t), freeAddr(t)
	path := nodeConfig{name: "gw-d", mockURL: mockURL, listen: listen, admin: admin, gossip: freeAddr(t),
		extra: "server: {drain_period: 3s}\n"}.write(t, dir)
	p := start(t, "serve", "--config", path)
	waitReady(t, "http://"+listen+"/readyz")
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	deadline := time.Now().Add(2 * time.Second)
	for {
		resp, err := http.Get("http://" + listen + "/readyz")
		if err != nil {
			t.Fatalf("listener closed before the drain period ended: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable {
			if resp.Header.Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d after SIGTERM", resp.StatusCode)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Still serving model calls while draining.
	if code, body := chatThrough(t, listen, "sk-from-env"); code != http.StatusOK {
		t.Fatalf("a request during the drain: %d %s", code, body)
	}
	if err := p.wait(t, 15*time.Second); err != nil {
		t.Fatalf("exit: %v\n%s", err, p.stderr)
	}
}
