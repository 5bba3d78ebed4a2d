package main

import (
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"

	"github.com/llmgate/llmgate/internal/store"
)

// runRepair salvages a damaged data directory: see store.Repair. The node
// must be stopped (the directory's lock is taken for the duration).
func runRepair(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("repair", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", "", "the node's data directory (node.data_dir)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dataDir == "" || fs.NArg() > 0 {
		return fmt.Errorf("repair: usage: llmgate repair --data-dir DIR")
	}
	unlock, err := lockDataDir(*dataDir)
	if err != nil {
		return err
	}
	defer unlock()
	dir := filepath.Join(*dataDir, "db")
	before := store.Check(dir)
	rep, err := store.Repair(dir)
	if err != nil {
		return fmt.Errorf("repair: %w", err)
	}
	if before != nil {
		fmt.Fprintf(stdout, "found: %v\n", before)
	} else {
		fmt.Fprintln(stdout, "found: no damage to tables or MANIFEST (values are checked below)")
	}
	fmt.Fprintf(stdout, "the damaged database is kept, untouched, in %s\n", rep.Original)
	fmt.Fprintf(stdout, "tables kept: %d, dropped: %d\n", rep.TablesKept, len(rep.TablesDropped))
	for _, t := range rep.TablesDropped {
		fmt.Fprintf(stdout, "  lost table %s\n", t)
	}
	prefixes := make([]string, 0, len(rep.Kept))
	for p := range rep.Kept {
		prefixes = append(prefixes, p)
	}
	sort.Strings(prefixes)
	var kept []string
	for _, p := range prefixes {
		kept = append(kept, fmt.Sprintf("%s%s %d", p, prefixName(p), rep.Kept[p]))
	}
	fmt.Fprintf(stdout, "keys kept: %s\n", strings.Join(kept, ", "))
	fmt.Fprintf(stdout, "keys dropped for an unreadable value: %d\n", rep.ValuesDropped)
	if len(rep.TablesDropped) > 0 {
		fmt.Fprintln(stdout, "what the lost tables held is gone: cache entries are answered again by the backends; quota counts restart from what remains")
	}
	return nil
}

func prefixName(p string) string {
	switch p {
	case store.PrefixCache:
		return " (cache entries)"
	case store.PrefixTombstone:
		return " (cache deletes)"
	case store.PrefixQuota:
		return " (quota counters)"
	case store.PrefixLimits:
		return " (limit changes)"
	case store.PrefixKeys:
		return " (consumer keys)"
	}
	return ""
}
