package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// benchNode is one `llmgate serve` child process and its addresses.
type benchNode struct {
	name   string
	listen string // data plane host:port
	admin  string // admin host:port
	gossip string // gossip host:port, for later nodes to join
	proc   *process
}

// startNode starts `llmgate serve` with the config configFor writes for the
// node's data directory and addresses, and waits until it is ready. The
// addresses are fixed in the config, so ports are picked free beforehand; if
// the node exits before it is ready (most likely a port taken in between) it
// is retried with new ports.
func startNode(ctx context.Context, exe string, timeout time.Duration, dir, name string, configFor func(dataDir string, n *benchNode) string) (*benchNode, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("node %s: %w", name, err)
	}
	const attempts = 3
	var lastErr error
	for attempt := range attempts {
		var addrs [3]string
		for i := range addrs {
			p, err := freeLoopbackPort()
			if err != nil {
				return nil, err
			}
			addrs[i] = net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
		}
		n := &benchNode{name: name, listen: addrs[0], admin: addrs[1], gossip: addrs[2]}
		cfgPath := filepath.Join(dir, fmt.Sprintf("%s-%d.yaml", name, attempt))
		cfg := configFor(filepath.Join(dir, fmt.Sprintf("%s-data-%d", name, attempt)), n)
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			return nil, fmt.Errorf("writing node config: %w", err)
		}
		proc, err := startProcess(ctx, "llmgate serve "+name, exe, "serve", "--config", cfgPath)
		if err != nil {
			return nil, err
		}
		err = proc.waitReady(ctx, "http://"+n.listen+"/readyz", timeout)
		if err == nil {
			n.proc = proc
			return n, nil
		}
		gone, _ := proc.exited()
		proc.Stop()
		if !gone || ctx.Err() != nil {
			return nil, err // not a port race: retrying will not help
		}
		lastErr = err
	}
	return nil, fmt.Errorf("node %s did not start in %d attempts: %w", name, attempts, lastErr)
}
