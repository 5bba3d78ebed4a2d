package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// hardening is what the unit must keep: the list and the usual
// sandboxing a reviewer would look for.
var hardening = map[string]string{
	"User":                  "llmgate",
	"ProtectSystem":         "strict",
	"StateDirectory":        "llmgate",
	"Restart":               "on-failure",
	"NoNewPrivileges":       "yes",
	"ProtectHome":           "yes",
	"PrivateTmp":            "yes",
	"PrivateDevices":        "yes",
	"CapabilityBoundingSet": "",
}

// systemd verifies the unit with systemd-analyze (the binary path pointed at
// the one under test) and checks its hardening and configuration.
func (c *checker) systemd(ctx context.Context) error {
	unitPath := filepath.Join(c.root, "deploy/systemd/llmgate.service")
	unit, err := os.ReadFile(unitPath)
	if err != nil {
		return err
	}
	keys := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(unit))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return fmt.Errorf("llmgate.service: %q is not KEY=VALUE", line)
		}
		keys[k] = append(keys[k], v)
	}
	for k, want := range hardening {
		got, ok := keys[k]
		if !ok || got[len(got)-1] != want {
			return fmt.Errorf("llmgate.service: %s=%s is required (have %q)", k, want, got)
		}
	}
	if !strings.Contains(strings.Join(keys["ExecReload"], " "), "-HUP") {
		return fmt.Errorf("llmgate.service: ExecReload must send SIGHUP (a reload without restart)")
	}
	if _, err := c.configCheck(ctx, filepath.Join(c.root, "deploy/systemd/llmgate.yaml"), nil, "--data-dir", "/var/lib/llmgate"); err != nil {
		return err
	}

	analyze, err := needTool("systemd-analyze", "apt-get install systemd")
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "llmgate-unit-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	local := bytes.ReplaceAll(unit, []byte("/usr/local/bin/llmgate"), []byte(c.bin))
	path := filepath.Join(dir, "llmgate.service")
	if err := os.WriteFile(path, local, 0o644); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, analyze, "verify", "--man=no", path).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		return fmt.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	return nil
}
