// Command llmgate is the llmgate gateway: one static binary that serves as a
// gateway node, a mock upstream, a demo and a benchmark driver.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `llmgate: a self-hosted LLM API gateway.

Usage:
  llmgate serve [--config FILE] [flags]    run one gateway node
  llmgate mock-upstream --listen ADDR      run the simulated Azure OpenAI / OpenAI backend
  llmgate demo                             play the scripted demo on loopback and print a report
  llmgate bench SCENARIO [--out FILE]      run a benchmark (overhead)
  llmgate config check --config FILE       validate a configuration without starting anything
  llmgate healthcheck [--url URL]          exit 0 if a node's /healthz answers 200 (container healthchecks)
  llmgate cache calibrate [--pairs FILE] [--target-precision P] [--config FILE --write]
                                           choose cache.score_threshold on labelled pairs (held-out split reported)
  llmgate repair --data-dir DIR            salvage what is readable of a damaged data directory
  llmgate version                          print version and build information

Run 'llmgate COMMAND --help' for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "llmgate:", err)
		}
		os.Exit(exitCode(err))
	}
}

func exitCode(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return 1
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("missing command")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return runServe(ctx, rest, stdout, stderr)
	case "mock-upstream":
		return runMockUpstream(ctx, rest, stdout, stderr)
	case "demo":
		return runDemo(ctx, rest, stdout, stderr)
	case "bench":
		return runBench(ctx, rest, stdout, stderr)
	case "config":
		return runConfig(rest, stdout, stderr)
	case "healthcheck":
		return runHealthcheck(ctx, rest, stdout, stderr)
	case "cache":
		return runCache(ctx, rest, stdout, stderr)
	case "repair":
		return runRepair(rest, stdout, stderr)
	case "version", "--version", "-version":
		return runVersion(stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}
