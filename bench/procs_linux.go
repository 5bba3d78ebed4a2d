package bench

import (
	"os"
	"syscall"
)

// stopSignal asks a child to shut down gracefully: SIGTERM, what systemd and
// container runtimes send, so a stopped node goes through the same path as in
// production.
var stopSignal os.Signal = syscall.SIGTERM

// childAttr makes the kernel kill a child when the benchmark process dies, so
// even a kill -9 of the benchmark leaves no mock, node or proxy running.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
