package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestExampleConfigIsAccepted: the shipped example is a configuration
// serve accepts as is, with every placeholder variable set.
func TestExampleConfigIsAccepted(t *testing.T) {
	for _, v := range []string{"LLMGATE_ADMIN_TOKEN", "AOAI_KEY_EAST", "AOAI_KEY_WEST", "OPENAI_API_KEY", "TEAM_A_KEY", "TEAM_B_KEY"} {
		t.Setenv(v, "value-of-"+v)
	}
	t.Setenv("LLMGATE_GOSSIP_KEY", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
	path := filepath.Join("..", "..", "examples", "llmgate.yaml")
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
	cfg, err := serveConfig(serveFlags{config: path})
	if err != nil {
		t.Fatalf("serve --config %s: %v", path, err)
	}
	if len(cfg.Backends) != 3 || cfg.Backends[1].API != "v1" || len(cfg.Consumers) != 2 || !cfg.Cache.Enabled {
		t.Errorf("loaded %+v", cfg)
	}
}
