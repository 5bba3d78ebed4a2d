package main

import (
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fill writes zeros to path until the filesystem has about leave bytes
// free (leave 0: until it is full) and returns how much it wrote.
func fill(t *testing.T, path string, leave int64) {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(filepath.Dir(path), &st); err != nil {
		t.Fatal(err)
	}
	want := int64(st.Bavail)*st.Bsize - leave
	fh, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	buf := make([]byte, 1<<20)
	for want > 0 {
		n := min(int64(len(buf)), want)
		if _, err := fh.Write(buf[:n]); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return
			}
			t.Fatal(err)
		}
		want -= n
	}
}

func chatCache(t *testing.T, listen, prompt string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", "http://"+listen+"/v1/chat/completions",
		strings.NewReader(`{"model":"gpt-4o","messages":[{"role":"user","content":"`+prompt+`"}],"max_tokens":20}`))
	req.Header.Set("Authorization", "Bearer sk-from-env")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("x-llmgate-cache")
}

func readyz(t *testing.T, listen string) string {
	t.Helper()
	resp, err := http.Get("http://" + listen + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// eventually polls cond for up to 15 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 15s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestFullDataDisk runs a node whose data directory is a 64 MiB tmpfs (where
// a write into a memory-mapped file beyond the free space is a SIGBUS), fills
// the disk around it, and restarts it on a full disk.
func TestFullDataDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI runs as root: the full-disk test must run there")
		}
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	mockURL := startMock(t)
	listen := freeAddr(t)
	path := nodeConfig{name: "gw-disk", mockURL: mockURL, listen: listen, admin: freeAddr(t), gossip: freeAddr(t),
		extra: "cache: {enabled: true}\n"}.write(t, dir)
	cfg, _ := os.ReadFile(path)
	cfg = []byte(strings.Replace(string(cfg), "node: {name: gw-disk, data_dir: "+dir+"/data}", "node: {name: gw-disk, data_dir: "+dir+"/data, disk_reserve_bytes: 16777216}", 1))
	if err := os.WriteFile(path, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	p := start(t, "serve", "--config", path)
	waitReady(t, "http://"+listen+"/readyz")
	if code, _ := chatCache(t, listen, "stored while there is room"); code != 200 {
		t.Fatalf("with room: %d\n%s", code, p.stderr)
	}
	if _, state := chatCache(t, listen, "stored while there is room"); state != "hit" {
		t.Fatalf("with room the answer is stored: x-llmgate-cache %q", state)
	}

	filler := filepath.Join(dir, "filler")
	fill(t, filler, 10<<20) // below the 16 MiB reserve
	eventually(t, "readyz names the paused storage", func() bool { return strings.Contains(readyz(t, listen), "paused") })
	for i, prompt := range []string{"asked on a disk below its reserve", "asked on a disk below its reserve"} {
		if code, state := chatCache(t, listen, prompt); code != 200 || state != "miss" {
			t.Fatalf("request %d below the reserve: %d %q (want served, not stored)\n%s", i, code, state, p.stderr)
		}
	}
	fill(t, filler, 0) // the disk full to the last block
	eventually(t, "the ballast is released", func() bool {
		_, err := os.Stat(filepath.Join(dir, "data", "space.ballast"))
		return err != nil
	})
	for range 20 {
		if code, _ := chatCache(t, listen, "asked on a full disk"); code != 200 {
			t.Fatalf("on a full disk: %d\n%s", code, p.stderr)
		}
	}

	// Stopped and started again on the full disk, it starts and serves.
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.wait(t, 30*time.Second); err != nil {
		t.Fatalf("stopping on a full disk: %v\n%s", err, p.stderr)
	}
	fill(t, filler, 0)
	p = start(t, "serve", "--config", path)
	eventually(t, "ready after a restart on a full disk", func() bool {
		select {
		case err := <-p.done:
			p.done <- err // for the cleanup
			t.Fatalf("the node exited on a full disk: %v\n%s", err, p.stderr)
		default:
		}
		resp, err := http.Get("http://" + listen + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	if code, _ := chatCache(t, listen, "asked after a restart on a full disk"); code != 200 {
		t.Fatalf("after a restart on a full disk: %d\n%s", code, p.stderr)
	}
	if !strings.Contains(readyz(t, listen), "paused") {
		t.Fatal("readyz does not say storing is paused")
	}

	// Space returns: storing resumes.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	eventually(t, "storing resumes", func() bool { return !strings.Contains(readyz(t, listen), "paused") })
	chatCache(t, listen, "stored once space returned")
	if _, state := chatCache(t, listen, "stored once space returned"); state != "hit" {
		t.Fatalf("after space returned: x-llmgate-cache %q\n%s", state, p.stderr)
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.wait(t, 30*time.Second); err != nil { // stderr is read once the node is done writing it
		t.Fatalf("stopping: %v\n%s", err, p.stderr)
	}
	if strings.Contains(p.stderr.String(), "SIGBUS") || strings.Contains(p.stderr.String(), "panic") {
		t.Fatalf("the node crashed:\n%s", p.stderr)
	}
}
