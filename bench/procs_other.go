//go:build !linux

package bench

import (
	"os"
	"syscall"
)

// stopSignal asks a child to shut down gracefully. os.Interrupt is the one
// signal every platform's os.Process.Signal can send; llmgate treats it as it
// treats SIGTERM.
var stopSignal os.Signal = os.Interrupt

// childAttr has no parent-death signal to ask for outside Linux.
func childAttr() *syscall.SysProcAttr { return nil }
