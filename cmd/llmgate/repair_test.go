package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestDamagedDataDirIsRefusedThenRepaired(t *testing.T) {
	dataDir := t.TempDir()
	serveArgs := func() []string {
		return []string{"serve", "--listen", freeAddr(t), "--admin-listen", freeAddr(t), "--gossip", freeAddr(t), "--data-dir", dataDir}
	}
	// A first run leaves a database behind (quota counters at least).
	args := serveArgs()
	p := start(t, args...)
	waitReady(t, "http://"+args[2]+"/readyz")
	if code, body := chatThrough(t, args[2], devKey); code != 200 {
		t.Fatalf("first run: %d %s", code, body)
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.wait(t, 30*time.Second); err != nil {
		t.Fatalf("first run did not stop cleanly: %v\n%s", err, p.stderr)
	}
	if err := os.Remove(filepath.Join(dataDir, "db", "MANIFEST")); err != nil {
		t.Fatal(err)
	}

	p = start(t, serveArgs()...)
	err := p.wait(t, 30*time.Second)
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 {
		t.Fatalf("a damaged data directory: exit %v, want 1\n%s", err, p.stderr)
	}
	lines := strings.Split(strings.TrimSpace(p.stderr.String()), "\n")
	msg := lines[len(lines)-1] // after the start-up log lines
	if !strings.HasPrefix(msg, "llmgate: ") || !strings.Contains(msg, "damaged") || !strings.Contains(msg, "llmgate repair --data-dir") {
		t.Fatalf("want one line naming the damage and the repair, got:\n%s", p.stderr)
	}

	out, err := exec.Command(binary, "repair", "--data-dir", dataDir).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "MANIFEST is missing") || !strings.Contains(string(out), "keys kept:") {
		t.Fatalf("repair: %v\n%s", err, out)
	}
	args = serveArgs()
	start(t, args...)
	waitReady(t, "http://"+args[2]+"/readyz")
	if code, body := chatThrough(t, args[2], devKey); code != 200 {
		t.Fatalf("after repair: %d %s", code, body)
	}
}
