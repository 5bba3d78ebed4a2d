package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/dgraph-io/badger/v4/table"
	"github.com/dgraph-io/ristretto/v2/z"
)

// DamageError says why a database directory must not be opened.
type DamageError struct {
	Dir  string
	What string
}

func (e *DamageError) Error() string {
	return "database " + e.Dir + " is damaged: " + e.What
}

func damaged(dir, format string, a ...any) error {
	return &DamageError{Dir: dir, What: fmt.Sprintf(format, a...)}
}

// Check inspects the database directory dir without opening it: its
// MANIFEST must be readable, every table it names must exist and pass its
// checksums, and tables or value logs must not be present without a
// MANIFEST. An absent or empty directory is fine (a first start).
func Check(dir string) error {
	files, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading database directory %s: %w", dir, err)
	}
	var tables, vlogs int
	hasManifest := false
	for _, f := range files {
		switch name := f.Name(); {
		case name == badger.ManifestFilename:
			hasManifest = true
		case strings.HasSuffix(name, ".sst"):
			tables++
		case strings.HasSuffix(name, ".vlog"):
			if fi, err := f.Info(); err == nil && fi.Size() > 0 {
				vlogs++
			}
		}
	}
	if !hasManifest {
		if tables > 0 {
			return damaged(dir, "its MANIFEST is missing but %d tables and %d value-log files are present", tables, vlogs)
		}
		return nil
	}
	m, err := readManifest(dir)
	if err != nil {
		return err
	}
	ids := make([]uint64, 0, len(m.Tables))
	for id := range m.Tables {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	bo := badgerOptions(dir, Options{})
	for _, id := range ids {
		if err := checkTable(table.NewFilename(id, dir), m.Tables[id], bo); err != nil {
			return damaged(dir, "table %s: %v", table.IDToFilename(id), err)
		}
	}
	return nil
}

func readManifest(dir string) (badger.Manifest, error) {
	fh, err := os.Open(filepath.Join(dir, badger.ManifestFilename))
	if err != nil {
		return badger.Manifest{}, damaged(dir, "its MANIFEST cannot be read: %v", err)
	}
	defer fh.Close()
	m, _, err := badger.ReplayManifestFile(fh, 0, badgerOptions(dir, Options{}))
	if err != nil {
		return badger.Manifest{}, damaged(dir, "its MANIFEST cannot be read: %v", err)
	}
	return m, nil
}

// checkTable opens one table read-only and verifies every block's checksum.
// A table truncated or overwritten can make Badger's reader panic; here
// that is an answer, not a crash.
func checkTable(path string, tm badger.TableManifest, bo badger.Options) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("unreadable (%s)", strings.Join(strings.Fields(fmt.Sprint(r)), " "))
		}
	}()
	fi, err := os.Stat(path)
	if err != nil {
		return errors.New("missing")
	}
	if fi.Size() == 0 {
		return errors.New("empty")
	}
	mf, err := z.OpenMmapFile(path, os.O_RDONLY, 0)
	if err != nil && !errors.Is(err, z.NewFile) {
		return err
	}
	t, err := table.OpenTable(mf, table.Options{
		ReadOnly: true, ChkMode: options.OnTableRead, BlockSize: bo.BlockSize,
		Compression: tm.Compression, BloomFalsePositive: bo.BloomFalsePositive,
	})
	if err != nil {
		return err // OpenTable closes the file on failure
	}
	// Close, never DecrRef: the last reference deletes the table's file.
	return t.MmapFile.Close(-1)
}

// record is what a clean close leaves beside the database: how many keys
// each owner's prefix held, and when those with a TTL expire. The next
// start must find at least the keys that cannot have expired since.
type record struct {
	WrittenAt time.Time                `json:"written_at"`
	Prefixes  map[string]*prefixRecord `json:"prefixes"`
}

type prefixRecord struct {
	Lasting  int64           `json:"lasting"`  // keys without a TTL
	Expiring map[int64]int64 `json:"expiring"` // keys by the minute (Unix) they expire in
}

func recordPath(dir string) string { return filepath.Clean(dir) + ".record.json" }

// countKeys tallies the live keys of db by prefix (the part up to and
// including the first '/').
func countKeys(db *badger.DB) (map[string]*prefixRecord, error) {
	out := map[string]*prefixRecord{}
	err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			k := item.Key()
			p := "other"
			if i := bytes.IndexByte(k, '/'); i >= 0 && i < 16 {
				p = string(k[:i+1])
			}
			pr := out[p]
			if pr == nil {
				pr = &prefixRecord{Expiring: map[int64]int64{}}
				out[p] = pr
			}
			if exp := item.ExpiresAt(); exp > 0 {
				pr.Expiring[int64(exp)/60]++
			} else {
				pr.Lasting++
			}
		}
		return nil
	})
	return out, err
}

// writeRecord writes the record of db's keys atomically.
func writeRecord(db *badger.DB, dir string) error {
	counts, err := countKeys(db)
	if err != nil {
		return err
	}
	b, err := json.Marshal(record{WrittenAt: time.Now().UTC(), Prefixes: counts})
	if err != nil {
		return err
	}
	return writeFileAtomic(recordPath(dir), b)
}

// checkRecord compares the opened database with the record of the last
// clean close, then removes the record: from now on the database changes,
// and after a crash there is nothing to compare with (the checks of files
// and tables still apply).
func checkRecord(db *badger.DB, dir string, now time.Time) error {
	path := recordPath(dir)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	var rec record
	if err := json.Unmarshal(b, &rec); err != nil {
		return damaged(dir, "its entry record %s cannot be read: %v", path, err)
	}
	counts, err := countKeys(db)
	if err != nil {
		return damaged(dir, "its keys cannot be read: %v", err)
	}
	// A key recorded to expire after the next minute must still be here.
	soon := now.Unix()/60 + 1
	prefixes := make([]string, 0, len(rec.Prefixes))
	for p := range rec.Prefixes {
		prefixes = append(prefixes, p)
	}
	slices.Sort(prefixes)
	for _, p := range prefixes {
		want := rec.Prefixes[p].Lasting
		for min, n := range rec.Prefixes[p].Expiring {
			if min > soon {
				want += n
			}
		}
		var have int64
		if c := counts[p]; c != nil {
			have = c.Lasting
			for min, n := range c.Expiring {
				if min > soon {
					have += n
				}
			}
		}
		if have < want {
			return damaged(dir, "it holds %d of the %d keys under %q recorded at its last clean shutdown (%s)",
				have, want, p, rec.WrittenAt.Format(time.RFC3339))
		}
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("removing %s: %w", path, err)
	}
	return nil
}
