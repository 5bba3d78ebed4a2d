package main

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// dockerfile checks the image's required shape. No Docker engine runs in CI,
// so the image is not built here: this checks that the build stage runs the
// same `make build` as the README, and that the final stage is the static
// binary on a minimal base, not root, with a healthcheck and the data volume.
// Then it rehearses the build stage without Docker (rehearseBuild).
func (c *checker) dockerfile(ctx context.Context) error {
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
	var makeRun string
	for _, in := range build {
		if in.cmd == "RUN" && strings.HasPrefix(in.args, "make build") {
			makeRun = in.args
		}
	}
	if makeRun == "" {
		return fmt.Errorf("Dockerfile: the build stage's RUN must start with `make build`")
	}
	return c.rehearseBuild(ctx, makeRun, ignore)
}

// rehearseBuild runs the build stage's RUN as the image build would, short of
// Docker: in a copy of the repository's tracked files less what .dockerignore
// leaves out (no .git, no bin/), the commands before the first that writes
// the image's /out tree (`make build …` and `./bin/llmgate version`). The
// binary must be static: distroless/static has no C library to load.
func (c *checker) rehearseBuild(ctx context.Context, run string, ignore []byte) error {
	var steps []string
	for _, part := range strings.Split(run, "&&") {
		if strings.Contains(part, "/out") {
			break
		}
		steps = append(steps, strings.TrimSpace(part))
	}
	if len(steps) == 0 || !strings.HasPrefix(steps[0], "make build") {
		return fmt.Errorf("Dockerfile: the build stage's RUN must start with `make build` (have %q)", run)
	}
	ls, err := exec.CommandContext(ctx, "git", "-C", c.root, "ls-files", "-z").Output()
	if err != nil {
		return fmt.Errorf("listing the repository's files: %w", err)
	}
	var patterns []string
	for _, l := range strings.Split(string(ignore), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			patterns = append(patterns, l)
		}
	}
	ignored := func(p string) bool {
		for _, pat := range patterns {
			if dir, ok := strings.CutSuffix(pat, "/"); ok && (p == dir || strings.HasPrefix(p, dir+"/")) {
				return true
			}
			if ok, _ := filepath.Match(pat, p); ok {
				return true
			}
		}
		return false
	}
	ctxDir, err := os.MkdirTemp("", "deploy-check-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(ctxDir)
	copied := 0
	for _, p := range strings.Split(strings.TrimRight(string(ls), "\x00"), "\x00") {
		if p == "" || ignored(p) {
			continue
		}
		src := filepath.Join(c.root, p)
		fi, err := os.Lstat(src)
		if err != nil || !fi.Mode().IsRegular() {
			continue // deleted in the work tree, or a link
		}
		data, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		dst := filepath.Join(ctxDir, p)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(dst, data, fi.Mode().Perm()); err != nil {
			return err
		}
		copied++
	}
	var out []byte
	for _, step := range steps {
		cmd := exec.CommandContext(ctx, "sh", "-c", step)
		cmd.Dir = ctxDir
		cmd.Env = append(os.Environ(), "VERSION=") // the Dockerfile's ARG VERSION=""
		if out, err = cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build stage `%s` in a copy of the build context: %w\n%s", step, err, out)
		}
	}
	if !strings.Contains(string(out), "container") {
		return fmt.Errorf("the build stage's binary does not report the version the image build gives it (\"container\" without .git): %s", out)
	}
	f, err := elf.Open(filepath.Join(ctxDir, "bin", "llmgate"))
	if err != nil {
		return fmt.Errorf("the build stage's binary: %w", err)
	}
	defer f.Close()
	libs, _ := f.ImportedLibraries()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			libs = append(libs, "a dynamic loader")
		}
	}
	if len(libs) > 0 {
		return fmt.Errorf("the build stage's binary is not static (needs %v): it cannot run on distroless/static", libs)
	}
	fmt.Printf("     build stage rehearsed on %d files of the build context: `%s` → a static binary\n", copied, strings.Join(steps, " && "))
	return nil
}
