// Package cputime reads the CPU time the running process has used. The
// project's benchmarks report it per operation beside the wall-clock time,
// because the work a call hands to other goroutines (an actor, Badger's
// writer, a committer) is part of its cost and does not show in ns/op.
//
// It owns nothing and touches no state; it is imported by tests only.
package cputime
