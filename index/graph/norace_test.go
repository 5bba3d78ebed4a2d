//go:build !race

package graph

// raceEnabled shrinks the largest tests: the race detector slows the
// distance loops about tenfold.
const raceEnabled = false
