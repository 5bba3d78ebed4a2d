package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// compose loads deploy/compose/compose.yaml with the Compose specification's
// own loader (schema, interpolation, merge keys), then checks the shape of
// the proof of concept — a mock upstream and two nodes seeding each other,
// each with its own data volume — and runs config check on the file each node
// mounts, with the environment and flags compose gives that node.
func (c *checker) compose(ctx context.Context) error {
	dir := filepath.Join(c.root, "deploy/compose")
	file := filepath.Join(dir, "compose.yaml")
	env := []string{"LLMGATE_GOSSIP_KEY=" + sampleEnv["LLMGATE_GOSSIP_KEY"], "LLMGATE_ADMIN_TOKEN=" + sampleEnv["LLMGATE_ADMIN_TOKEN"]}
	opts, err := cli.NewProjectOptions([]string{file}, cli.WithWorkingDirectory(dir), cli.WithEnv(env), cli.WithName("llmgate"))
	if err != nil {
		return err
	}
	p, err := opts.LoadProject(ctx)
	if err != nil {
		return fmt.Errorf("loading %s: %w", file, err)
	}
	// Without the gossip key, compose must refuse to start rather than run
	// nodes that cannot gossip.
	bare, err := cli.NewProjectOptions([]string{file}, cli.WithWorkingDirectory(dir), cli.WithEnv(nil), cli.WithName("llmgate"))
	if err != nil {
		return err
	}
	if _, err := bare.LoadProject(ctx); err == nil || !strings.Contains(err.Error(), "LLMGATE_GOSSIP_KEY") {
		return fmt.Errorf("compose must refuse to start without LLMGATE_GOSSIP_KEY (got %v)", err)
	}

	var nodes []string
	mock := false
	for name, svc := range p.Services {
		if svc.Build == nil || svc.Build.Dockerfile != "deploy/Dockerfile" {
			return fmt.Errorf("service %s must build deploy/Dockerfile", name)
		}
		if dockerfile := filepath.Join(svc.Build.Context, svc.Build.Dockerfile); !exists(dockerfile) {
			return fmt.Errorf("service %s: %s does not exist", name, dockerfile)
		}
		if len(svc.Command) == 0 {
			return fmt.Errorf("service %s has no command", name)
		}
		switch svc.Command[0] {
		case "mock-upstream":
			mock = true
		case "serve":
			nodes = append(nodes, name)
			if err := c.composeNode(ctx, p, name, svc); err != nil {
				return fmt.Errorf("service %s: %w", name, err)
			}
		default:
			return fmt.Errorf("service %s runs %q", name, svc.Command[0])
		}
	}
	slices.Sort(nodes)
	if !mock || len(nodes) < 2 {
		return fmt.Errorf("want a mock upstream and two nodes; have mock=%v, nodes %v", mock, nodes)
	}
	return nil
}

func (c *checker) composeNode(ctx context.Context, p *types.Project, name string, svc types.ServiceConfig) error {
	args := slices.Clone([]string(svc.Command[1:]))
	i := slices.Index(args, "--config")
	if i < 0 || i+1 >= len(args) {
		return fmt.Errorf("serve without --config")
	}
	target := args[i+1]
	source := ""
	for _, cf := range svc.Configs {
		if cf.Target == target {
			source = p.Configs[cf.Source].File
		}
	}
	if source == "" {
		return fmt.Errorf("--config %s is not a mounted config", target)
	}
	args = slices.Delete(args, i, i+2)
	// Seeds must name the other nodes' services.
	if j := slices.Index(args, "--join"); j >= 0 {
		for _, seed := range strings.Split(args[j+1], ",") {
			host, _, _ := strings.Cut(seed, ":")
			if _, ok := p.Services[host]; !ok || host == name {
				return fmt.Errorf("--join %s: %q is not another service", args[j+1], host)
			}
		}
	} else {
		return fmt.Errorf("serve without --join: the nodes would not cluster")
	}
	dataVolume := false
	for _, v := range svc.Volumes {
		dataVolume = dataVolume || (v.Type == types.VolumeTypeVolume && v.Target == "/var/lib/llmgate")
	}
	if !dataVolume {
		return fmt.Errorf("no named volume on /var/lib/llmgate")
	}
	env := map[string]string{}
	for k, v := range svc.Environment {
		if v != nil {
			env[k] = *v
		}
	}
	out, err := c.configCheck(ctx, source, env, args...)
	if err != nil {
		return err
	}
	if !strings.Contains(out, "ok (node "+name+",") {
		return fmt.Errorf("config check: %s", out)
	}
	return nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
