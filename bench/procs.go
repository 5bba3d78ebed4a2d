package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	// stopGrace is how long a child gets to exit after stopSignal before it
	// is killed.
	stopGrace = 5 * time.Second
	// tailBytes is how much of a child's latest output is kept for error messages.
	tailBytes = 4 << 10
)

// process is a child llmgate process. Stop must be called exactly once for
// every process that started, whatever else happens.
type process struct {
	name   string
	cmd    *exec.Cmd
	cancel context.CancelFunc
	done   chan struct{} // closed when the process has exited and been waited for
	err    error         // Wait's result; read only after done is closed
	stdout *outputWatcher
	stderr *outputWatcher
}

// startProcess starts exe with args as a child named name (for messages).
// The child is sent stopSignal, and killed stopGrace later, when ctx is
// cancelled or Stop is called.
func startProcess(ctx context.Context, name, exe string, args ...string) (*process, error) {
	pctx, cancel := context.WithCancel(ctx)
	cmd := exec.CommandContext(pctx, exe, args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(stopSignal) }
	cmd.WaitDelay = stopGrace
	cmd.SysProcAttr = childAttr()
	p := &process{
		name:   name,
		cmd:    cmd,
		cancel: cancel,
		done:   make(chan struct{}),
		stdout: newOutputWatcher(),
		stderr: newOutputWatcher(),
	}
	cmd.Stdout = p.stdout
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// PID returns the child's process id.
func (p *process) PID() int { return p.cmd.Process.Pid }

// Stop asks the child to exit (stopSignal: a graceful shutdown, as a service
// manager would ask), kills it if it has not exited after a grace period, and
// waits for it. It is safe to call more than once.
func (p *process) Stop() {
	p.cancel()
	<-p.done
}

// exited reports whether the child has already exited, with its exit error.
func (p *process) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// unclean returns how an exited child ended unless it exited with status
// 0: "exit status 1", "signal: killed". Wait's own error is no guide, since
// it reports a stop through Stop as the context's cancellation even when
// the child then shut down cleanly. Empty while the child runs.
func (p *process) unclean() string {
	if gone, _ := p.exited(); !gone || p.cmd.ProcessState == nil || p.cmd.ProcessState.Success() {
		return ""
	}
	return p.cmd.ProcessState.String()
}

// failure describes why the child failed to come up: its exit status, if it
// exited, and the end of its stderr.
func (p *process) failure(cause error) error {
	msg := cause.Error()
	if gone, err := p.exited(); gone {
		if err == nil {
			msg += ": exited"
		} else {
			msg += ": " + err.Error()
		}
	}
	if tail := strings.TrimSpace(p.stderr.Tail()); tail != "" {
		msg += "; stderr: " + tail
	}
	return fmt.Errorf("%s: %s", p.name, msg)
}

// waitListening waits for the child's first stdout line, which must read
// "PREFIX ADDR" (e.g. "mock-upstream listening on 127.0.0.1:41234"), and
// returns ADDR.
func (p *process) waitListening(ctx context.Context, prefix string, timeout time.Duration) (string, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case line := <-p.stdout.first:
		addr, ok := strings.CutPrefix(strings.TrimSpace(line), prefix)
		addr = strings.TrimSpace(addr)
		if !ok || addr == "" {
			return "", p.failure(fmt.Errorf("first output line %q does not start with %q", line, prefix))
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return "", p.failure(fmt.Errorf("first output line %q: bad address: %w", line, err))
		}
		return addr, nil
	case <-p.done:
		return "", p.failure(errors.New("no address printed"))
	case <-timer.C:
		return "", p.failure(fmt.Errorf("no address printed within %v", timeout))
	case <-ctx.Done():
		return "", fmt.Errorf("%s: %w", p.name, ctx.Err())
	}
}

// waitReady polls url until it answers 200, the child exits, timeout passes
// or ctx is cancelled.
func (p *process) waitReady(ctx context.Context, url string, timeout time.Duration) error {
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error // why the latest poll was not ready
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		resp, err := c.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
		} else {
			last = err
		}
		if time.Now().After(deadline) {
			return p.failure(fmt.Errorf("not ready within %v: %w", timeout, last))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", p.name, ctx.Err())
		case <-p.done:
			return p.failure(fmt.Errorf("exited before ready (%w)", last))
		case <-tick.C:
		}
	}
}

// outputWatcher is the io.Writer a child's output goes to. It hands the
// first complete line to first (once) and keeps the last tailBytes of output.
// exec's copying goroutine writes; other goroutines read Tail.
type outputWatcher struct {
	first chan string // buffered(1); receives the first line, then nothing

	mu       sync.Mutex
	line     []byte // first line so far, until it is complete
	sentLine bool
	tail     []byte
}

func newOutputWatcher() *outputWatcher {
	return &outputWatcher{first: make(chan string, 1)}
}

// Write records b. It never fails, so the child never blocks on its output.
func (w *outputWatcher) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.sentLine {
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			w.line = append(w.line, b[:i]...)
			w.first <- string(w.line)
			w.sentLine, w.line = true, nil
		} else if len(w.line) < tailBytes {
			w.line = append(w.line, b...)
		}
	}
	w.tail = append(w.tail, b...)
	if over := len(w.tail) - tailBytes; over > 0 {
		w.tail = append(w.tail[:0], w.tail[over:]...)
	}
	return len(b), nil
}

// Tail returns the last tailBytes of output.
func (w *outputWatcher) Tail() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.tail)
}

// freeLoopbackPorts returns n distinct ports on 127.0.0.1 that were free a
// moment ago for both TCP and UDP: a node's gossip port takes both
// (memberlist gossips over UDP and syncs state over TCP), and a port free for
// one protocol may be held in the other. All n are held until all are found,
// so the kernel cannot hand out the same port twice. Another process may
// still take one before the caller binds it: callers retry on a bind failure.
func freeLoopbackPorts(n int) ([]int, error) {
	var held []io.Closer
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	ports := make([]int, 0, n)
	for attempts := 0; len(ports) < n; attempts++ {
		if attempts == 100*n {
			return nil, fmt.Errorf("finding %d free loopback ports: none free for both TCP and UDP after %d attempts", n, attempts)
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		held = append(held, l)
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue // taken for UDP: keep the TCP port held and try another
		}
		held = append(held, u)
		ports = append(ports, port)
	}
	return ports, nil
}

// Memory is a process's resident memory as the kernel reports it.
type Memory struct {
	// RSS is the resident set size now (VmRSS), in bytes.
	RSS int64
	// PeakRSS is the largest RSS so far (VmHWM), in bytes.
	PeakRSS int64
}

// readMemory reads the memory of process pid from /proc (Linux only).
func readMemory(pid int) (Memory, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Memory{}, fmt.Errorf("reading memory of pid %d: %w", pid, err)
	}
	defer f.Close()
	m, err := parseProcStatus(f)
	if err != nil {
		return Memory{}, fmt.Errorf("reading memory of pid %d: %w", pid, err)
	}
	return m, nil
}

// parseProcStatus extracts VmRSS and VmHWM from the text of /proc/PID/status
// ("VmRSS:	   12345 kB").
func parseProcStatus(r io.Reader) (Memory, error) {
	var m Memory
	var haveRSS bool
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "VmRSS" && key != "VmHWM") {
			continue
		}
		fields := strings.Fields(val)
		if len(fields) != 2 || fields[1] != "kB" {
			return Memory{}, fmt.Errorf("%s: unexpected value %q", key, val)
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return Memory{}, fmt.Errorf("%s: %w", key, err)
		}
		if key == "VmRSS" {
			m.RSS, haveRSS = kb<<10, true
		} else {
			m.PeakRSS = kb << 10
		}
	}
	if err := sc.Err(); err != nil {
		return Memory{}, err
	}
	if !haveRSS {
		return Memory{}, errors.New("no VmRSS line")
	}
	return m, nil
}
