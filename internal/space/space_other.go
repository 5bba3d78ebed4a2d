//go:build !linux

package space

import "errors"

// Elsewhere free space is not measured: the node always stores.
func freeBytes(string) (int64, error) { return 1 << 62, nil }

func layBallast(string, int64) error { return errors.New("no ballast on this platform") }

var errNoAllocate = errors.New("preallocation not supported on this platform")

func allocate(string, int64) error { return errNoAllocate }

func allocated(string) (int64, error) { return 0, errNoAllocate }
