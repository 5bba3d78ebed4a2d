package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// checker holds what every check needs.
type checker struct {
	root string // repository root
	bin  string // the llmgate binary under test
}

func main() {
	root := flag.String("root", "../..", "repository root")
	bin := flag.String("llmgate", "", "the llmgate binary (default ROOT/bin/llmgate, from make build)")
	flag.Parse()
	c := &checker{root: *root, bin: *bin}
	if c.bin == "" {
		c.bin = filepath.Join(c.root, "bin", "llmgate")
	}
	var err error
	if c.root, err = filepath.Abs(c.root); err == nil {
		c.bin, err = filepath.Abs(c.bin)
	}
	if err == nil {
		_, err = os.Stat(c.bin)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "deploy-check:", err, "(run make build first)")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	checks := []struct {
		name string
		run  func(context.Context) error
	}{
		{"helm chart: lint, render, API types, cross references, config check", c.chart},
		{"compose: specification loader, nodes' configs checked with their flags", c.compose},
		{"systemd unit: systemd-analyze verify, hardening, config check", c.systemd},
		{"Dockerfile: distroless non-root, healthcheck, volume; build stage (make build) rehearsed, static binary", c.dockerfile},
		{"shipped configurations: llmgate config check", c.configs},
	}
	passed, failed, skipped := 0, 0, 0
	for _, ch := range checks {
		err := ch.run(ctx)
		var skip skipError
		switch {
		case errors.As(err, &skip):
			skipped++
			fmt.Printf("SKIP %s: %v\n", ch.name, err)
		case err != nil:
			failed++
			fmt.Printf("FAIL %s:\n     %v\n", ch.name, err)
		default:
			passed++
			fmt.Printf("ok   %s\n", ch.name)
		}
	}
	fmt.Printf("deploy-check: %d passed, %d failed, %d skipped\n", passed, failed, skipped)
	if failed > 0 {
		os.Exit(1)
	}
}

// skipError marks a check that could not run here (a missing tool outside CI).
type skipError struct{ reason string }

func (s skipError) Error() string { return s.reason }

// needTool returns the path of a command-line tool; when it is missing the
// check is skipped, except under CI=true, where it fails.
func needTool(name, install string) (string, error) {
	p, err := lookPath(name)
	if err == nil {
		return p, nil
	}
	if os.Getenv("CI") == "true" {
		return "", fmt.Errorf("%s is not installed (%s)", name, install)
	}
	return "", skipError{fmt.Sprintf("%s is not installed (%s)", name, install)}
}
