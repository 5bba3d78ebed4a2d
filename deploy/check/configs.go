package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// sampleEnv stands in for the secrets and per-host values that shipped
// configurations take from the environment, so that the check sees what a
// real deployment would: a 32-byte gossip key, an endpoint URL.
var sampleEnv = map[string]string{
	"LLMGATE_ADMIN_TOKEN": "check-admin-token",
	"LLMGATE_GOSSIP_KEY":  "bGxtZ2F0ZS1kZXBsb3ktY2hlY2stZ29zc2lwLWtleSE=", // 32 bytes
	"AOAI_URL":            "https://example.openai.azure.com",
	"AOAI_KEY":            "check-key",
	"AOAI_KEY_EAST":       "check-key-east",
	"AOAI_KEY_WEST":       "check-key-west",
	"TEAM_KEY":            "sk-check-team",
	"TEAM_A_KEY":          "sk-check-team-a",
	"TEAM_B_KEY":          "sk-check-team-b",
	"HOSTNAME":            "check-host",
}

// configCheck runs `llmgate config check` on path with extra flags and
// environment (on top of sampleEnv) and returns its output.
func (c *checker) configCheck(ctx context.Context, path string, env map[string]string, flags ...string) (string, error) {
	cmd := exec.CommandContext(ctx, c.bin, append([]string{"config", "check", "--config", path}, flags...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range sampleEnv {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("llmgate config check %s %s: %v\n%s", path, strings.Join(flags, " "), err, out.String())
	}
	return out.String(), nil
}

// configs checks every configuration file the repository ships for users:
// the image's default, the systemd example and examples/.
func (c *checker) configs(ctx context.Context) error {
	var files []string
	for _, pattern := range []string{"deploy/docker/*.yaml", "deploy/systemd/*.yaml", "examples/*.yaml"} {
		m, err := filepath.Glob(filepath.Join(c.root, pattern))
		if err != nil {
			return err
		}
		files = append(files, m...)
	}
	slices.Sort(files)
	if len(files) < 2 {
		return fmt.Errorf("found only %d shipped configurations; expected deploy/docker and deploy/systemd at least", len(files))
	}
	var errs []string
	for _, f := range files {
		if _, err := c.configCheck(ctx, f, nil); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	fmt.Printf("     checked %d files: %s\n", len(files), strings.Join(rel(c.root, files), ", "))
	return nil
}

func rel(root string, paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		if r, err := filepath.Rel(root, p); err == nil {
			p = r
		}
		out[i] = p
	}
	return out
}

func lookPath(name string) (string, error) { return exec.LookPath(name) }
