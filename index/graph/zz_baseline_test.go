package graph

import "testing"

type dotKernel struct{ name string }

func dotKernels() []dotKernel                     { return []dotKernel{{"go"}} }
func useKernel(testing.TB, dotKernel) func() { return func() {} }
