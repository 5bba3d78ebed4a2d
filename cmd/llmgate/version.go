package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func runVersion(w io.Writer) error {
	rev, modified, when := "unknown", "", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					modified = " (modified)"
				}
			case "vcs.time":
				when = " " + s.Value
			}
		}
	}
	_, err := fmt.Fprintf(w, "llmgate %s\ncommit %s%s%s\n%s %s/%s\n", version, rev, modified, when, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return err
}
