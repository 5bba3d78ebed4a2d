package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/llmgate/llmgate/internal/certs"
	"github.com/llmgate/llmgate/internal/config"
)

// runConfig runs `llmgate config SUBCOMMAND`.
func runConfig(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "check" {
		fmt.Fprint(stderr, "Usage:\n  llmgate config check --config FILE [serve's override flags]   validate a configuration without starting anything\n")
		if len(args) == 0 {
			return errors.New("config: missing subcommand")
		}
		if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
			return flag.ErrHelp
		}
		return fmt.Errorf("config: unknown subcommand %q", args[0])
	}
	return runConfigCheck(args[1:], stdout, stderr)
}

// runConfigCheck loads, overrides, defaults and validates a configuration
// exactly as serve would, and stops there: no port is bound, no data
// directory is opened or created. The same override flags as serve are
// accepted, so a deployment that passes --node-name or --gossip on the
// command line checks what it will run.
func runConfigCheck(args []string, stdout, stderr io.Writer) error {
	var f serveFlags
	fs := flag.NewFlagSet("config check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.config, "config", "", "configuration file (YAML) to check")
	fs.StringVar(&f.listen, "listen", "", "as serve: overrides listen")
	fs.StringVar(&f.adminListen, "admin-listen", "", "as serve: overrides admin_listen")
	fs.StringVar(&f.gossip, "gossip", "", "as serve: overrides cluster.gossip")
	fs.StringVar(&f.join, "join", "", "as serve: overrides cluster.join")
	fs.StringVar(&f.dataDir, "data-dir", "", "as serve: overrides node.data_dir")
	fs.StringVar(&f.nodeName, "node-name", "", "as serve: overrides node.name")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("config check: unexpected argument %q", fs.Arg(0))
	}
	if f.config == "" {
		return errors.New("config check: --config FILE is required")
	}
	data, err := os.ReadFile(f.config)
	if err != nil {
		return fmt.Errorf("reading config: %w", err)
	}
	cfg, err := serveConfig(f)
	if err != nil {
		return err
	}
	if err := checkConfigFiles(cfg); err != nil {
		return fmt.Errorf("config %s: %w", f.config, err)
	}
	if unset := config.UnsetRefs(data, os.LookupEnv); len(unset) > 0 {
		fmt.Fprintf(stderr, "llmgate: warning: %s: unset environment variables expand to empty values: %s\n", f.config, strings.Join(unset, ", "))
	}
	fmt.Fprintf(stdout, "%s: ok (node %s, %d backends, %d routes, %d consumers)\n",
		f.config, cfg.Node.Name, len(cfg.Backends), len(cfg.Routes), len(cfg.Consumers))
	return nil
}

// checkConfigFiles loads the TLS files a configuration names, as serve
// would at start: a missing, unreadable or mismatched file is an error.
func checkConfigFiles(cfg *config.Config) error {
	if t := cfg.TLS; t.CertFile != "" {
		if _, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile); err != nil {
			return fmt.Errorf("tls.cert_file, tls.key_file: %w", err)
		}
		if t.AdminClientCAFile != "" {
			if _, err := certs.LoadPool(t.AdminClientCAFile, false); err != nil {
				return fmt.Errorf("tls.admin_client_ca_file: %w", err)
			}
		}
	}
	if f := cfg.Upstream.CAFile; f != "" {
		if _, err := certs.LoadPool(f, false); err != nil {
			return fmt.Errorf("upstream.ca_file: %w", err)
		}
	}
	return nil
}
