package bench

import "syscall"

// childAttr makes the kernel kill a child when the benchmark process dies, so
// even a kill -9 of the benchmark leaves no mock, node or proxy running.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
