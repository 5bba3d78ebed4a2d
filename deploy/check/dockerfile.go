package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// dockerfile checks the image's required shape. No Docker engine runs in CI,
// so the image is not built here: this checks that the build stage runs the
// same `make build` as the README, and that the final stage is the static
// binary on a minimal base, not root, with a healthcheck and the data volume.
func (c *checker) dockerfile(context.Context) error {
	data, err := os.ReadFile(filepath.Join(c.root, "deploy/Dockerfile"))
	if err != nil {
		return err
	}
	type instr struct{ cmd, args string }
	var stages [][]instr
	sc := bufio.NewScanner(bytes.NewReader(data))
	var cont string
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cont += strings.TrimSuffix(line, "\\") + " "
			continue
		}
		line, cont = cont+line, ""
		if line == "" {
			continue
		}
		cmd, args, _ := strings.Cut(line, " ")
		cmd = strings.ToUpper(cmd)
		if cmd == "FROM" {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			if cmd == "ARG" {
				continue
			}
			return fmt.Errorf("Dockerfile: %s before the first FROM", cmd)
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], instr{cmd, strings.TrimSpace(args)})
	}
	if len(stages) < 2 {
		return fmt.Errorf("Dockerfile: %d stage(s); want a build stage and a final stage", len(stages))
	}
	has := func(stage []instr, cmd, substr string) bool {
		for _, in := range stage {
			if in.cmd == cmd && strings.Contains(in.args, substr) {
				return true
			}
		}
		return false
	}
	build, final := stages[0], stages[len(stages)-1]
	if !has(build, "RUN", "make build") {
		return fmt.Errorf("Dockerfile: the build stage must run `make build`")
	}
	base := final[0].args
	if !strings.Contains(base, "distroless/static") && base != "scratch" {
		return fmt.Errorf("Dockerfile: final base %q is not a minimal static base (distroless/static or scratch)", base)
	}
	user := ""
	for _, in := range final {
		if in.cmd == "USER" {
			user = in.args
		}
	}
	if user == "" || user == "root" || strings.HasPrefix(user, "0") {
		return fmt.Errorf("Dockerfile: the final stage must run as a non-root USER (have %q)", user)
	}
	switch {
	case !has(final, "HEALTHCHECK", "llmgate"):
		return fmt.Errorf("Dockerfile: no HEALTHCHECK running llmgate healthcheck")
	case !has(final, "VOLUME", "/var/lib/llmgate"):
		return fmt.Errorf("Dockerfile: the data directory /var/lib/llmgate must be a VOLUME")
	case !has(final, "COPY", "--from="):
		return fmt.Errorf("Dockerfile: the final stage must copy the binary from the build stage")
	}
	ignore, err := os.ReadFile(filepath.Join(c.root, ".dockerignore"))
	if err != nil || !bytes.Contains(ignore, []byte("bin/")) {
		return fmt.Errorf(".dockerignore must leave out bin/ (a host binary must never reach the image): %v", err)
	}
	return nil
}
