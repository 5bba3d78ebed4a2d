package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// benchNode is one `llmgate serve` child process and its addresses.
type benchNode struct {
	name    string
	listen  string // data plane host:port
	admin   string // admin host:port
	gossip  string // gossip host:port, for later nodes to join
	dataDir string // kept across restarts
	cfgPath string // the config the running process was started with
	// config writes the node's config for its data directory and addresses;
	// kept so a restart on other ports can write a new one.
	config func(dataDir string, n *benchNode) string
	// args are more `serve` flags (--cpu-profile).
	args []string
	proc *process
}

// nodeStartAttempts is how many times a node is started on fresh ports when
// it exits before it is ready (most likely a port taken in between).
const nodeStartAttempts = 3

// startNode starts `llmgate serve` with the config configFor writes for the
// node's data directory and addresses, and waits until it is ready. The
// addresses are fixed in the config, so ports are picked free beforehand; if
// the node exits before it is ready it is retried with new ports.
func startNode(ctx context.Context, exe string, timeout time.Duration, dir, name string, configFor func(dataDir string, n *benchNode) string, args ...string) (*benchNode, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("node %s: %w", name, err)
	}
	var lastErr error
	for attempt := range nodeStartAttempts {
		n := &benchNode{
			name:    name,
			dataDir: filepath.Join(dir, fmt.Sprintf("%s-data-%d", name, attempt)),
			cfgPath: filepath.Join(dir, fmt.Sprintf("%s-%d.yaml", name, attempt)),
			config:  configFor,
			args:    args,
		}
		if err := n.pickPorts(); err != nil {
			return nil, err
		}
		retry, err := n.launch(ctx, exe, timeout)
		if err == nil {
			return n, nil
		}
		if !retry {
			return nil, err
		}
		lastErr = err
	}
	return nil, fmt.Errorf("node %s did not start in %d attempts: %w", name, nodeStartAttempts, lastErr)
}

// restart starts a stopped node again with the same name and data directory,
// on the same ports if it can; if the node exits before it is ready on them
// (a port taken while it was down), on fresh ones.
func (n *benchNode) restart(ctx context.Context, exe string, timeout time.Duration) error {
	if n.proc != nil {
		if gone, _ := n.proc.exited(); !gone {
			return fmt.Errorf("node %s: restart while running", n.name)
		}
	}
	dir := filepath.Dir(n.cfgPath)
	base := strings.TrimSuffix(filepath.Base(n.cfgPath), ".yaml")
	var lastErr error
	for attempt := range nodeStartAttempts {
		if attempt > 0 {
			if err := n.pickPorts(); err != nil {
				return err
			}
			n.cfgPath = filepath.Join(dir, fmt.Sprintf("%s-restart-%d.yaml", base, attempt))
		}
		retry, err := n.launch(ctx, exe, timeout)
		if err == nil {
			return nil
		}
		if !retry {
			return err
		}
		lastErr = err
	}
	return fmt.Errorf("node %s did not restart in %d attempts: %w", n.name, nodeStartAttempts, lastErr)
}

// pickPorts gives n three fresh loopback addresses.
func (n *benchNode) pickPorts() error {
	ports, err := freeLoopbackPorts(3)
	if err != nil {
		return err
	}
	addr := func(p int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p)) }
	n.listen, n.admin, n.gossip = addr(ports[0]), addr(ports[1]), addr(ports[2])
	return nil
}

// launch writes n's config (unless the file exists: a restart on the same
// ports reuses it) and starts the process. retry reports whether the failure
// looks like a port race, which other ports may avoid.
func (n *benchNode) launch(ctx context.Context, exe string, timeout time.Duration) (retry bool, err error) {
	if _, err := os.Stat(n.cfgPath); errors.Is(err, os.ErrNotExist) {
		if err := os.WriteFile(n.cfgPath, []byte(n.config(n.dataDir, n)), 0o600); err != nil {
			return false, fmt.Errorf("writing node config: %w", err)
		}
	}
	proc, err := startProcess(ctx, "llmgate serve "+n.name, exe, append([]string{"serve", "--config", n.cfgPath}, n.args...)...)
	if err != nil {
		return false, err
	}
	err = proc.waitReady(ctx, "http://"+n.listen+"/readyz", timeout)
	if err == nil {
		n.proc = proc
		return false, nil
	}
	gone, _ := proc.exited()
	proc.Stop()
	return gone && ctx.Err() == nil, err
}

// stopNodes stops every node that is running.
func stopNodes(nodes []*benchNode) {
	for _, n := range nodes {
		if n != nil && n.proc != nil {
			n.proc.Stop()
		}
	}
}

// benchMember is one entry of GET /admin/cluster's members.
type benchMember struct {
	Name  string `json:"name"`
	Addr  string `json:"addr"`
	State string `json:"state"`
}

// fetchMembers reads GET /admin/cluster from n.
func fetchMembers(ctx context.Context, c *http.Client, n *benchNode) ([]benchMember, error) {
	var out struct {
		Node    string        `json:"node"`
		Members []benchMember `json:"members"`
	}
	if err := adminJSON(ctx, c, http.MethodGet, n, "/admin/cluster", nil, &out); err != nil {
		return nil, err
	}
	return out.Members, nil
}

// waitMembers polls every node's GET /admin/cluster until ok holds for each
// node's member list, or timeout passes.
func waitMembers(ctx context.Context, c *http.Client, nodes []*benchNode, timeout time.Duration, what string, ok func(n *benchNode, members []benchMember) bool) error {
	deadline := time.Now().Add(timeout)
	for {
		var pending []string
		var lastErr error
		for _, n := range nodes {
			members, err := fetchMembers(ctx, c, n)
			if err != nil {
				lastErr = err
			}
			if err != nil || !ok(n, members) {
				pending = append(pending, fmt.Sprintf("%s sees %s", n.name, describeMembers(members)))
			}
		}
		if len(pending) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			err := fmt.Errorf("%s not within %v: %s", what, timeout, strings.Join(pending, "; "))
			if lastErr != nil {
				err = fmt.Errorf("%w (last error: %w)", err, lastErr)
			}
			return err
		}
		if !sleepUntil(ctx, time.Now().Add(100*time.Millisecond)) {
			return ctx.Err()
		}
	}
}

// waitClusterFormed waits until every node lists every node as alive.
func waitClusterFormed(ctx context.Context, c *http.Client, nodes []*benchNode, timeout time.Duration) error {
	names := make([]string, len(nodes))
	for i, n := range nodes {
		names[i] = n.name
	}
	return waitMembers(ctx, c, nodes, timeout, fmt.Sprintf("%d alive members on every node", len(nodes)),
		func(_ *benchNode, members []benchMember) bool {
			alive := 0
			for _, m := range members {
				if m.State == "alive" && slices.Contains(names, m.Name) {
					alive++
				}
			}
			return alive == len(nodes)
		})
}

// waitMemberGone waits until every node of watchers lists name as anything
// but alive (suspect, dead, left) or not at all.
func waitMemberGone(ctx context.Context, c *http.Client, watchers []*benchNode, name string, timeout time.Duration) error {
	return waitMembers(ctx, c, watchers, timeout, name+" no longer alive",
		func(_ *benchNode, members []benchMember) bool {
			i := slices.IndexFunc(members, func(m benchMember) bool { return m.Name == name })
			return i < 0 || members[i].State != "alive"
		})
}

func describeMembers(members []benchMember) string {
	if members == nil {
		return "nothing"
	}
	s := make([]string, len(members))
	for i, m := range members {
		s[i] = m.Name + ":" + m.State
	}
	return "[" + strings.Join(s, " ") + "]"
}

// adminStatusError is an admin API answer other than 200: the node
// understood and refused, unlike a transport error.
type adminStatusError struct{ msg string }

func (e *adminStatusError) Error() string { return e.msg }

// adminJSON sends a request with an optional JSON body to n's admin API and
// decodes a 200 answer into out. An answer with another status is an
// *adminStatusError.
func adminJSON(ctx context.Context, c *http.Client, method string, n *benchNode, path string, body, out any) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+n.admin+path, rd)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s on %s: %w", method, path, n.name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("%s %s on %s: reading body: %w", method, path, n.name, err)
	}
	if resp.StatusCode != http.StatusOK {
		return &adminStatusError{fmt.Sprintf("%s %s on %s: status %d: %s", method, path, n.name, resp.StatusCode, strings.TrimSpace(string(b[:min(len(b), 200)])))}
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s on %s: %w", method, path, n.name, err)
	}
	return nil
}
