package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// filled returns a closed database directory holding n cache keys with
// values large enough for the value log, flushed into tables.
func filled(t *testing.T, n int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "db")
	db, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	val := []byte(strings.Repeat("v", 2048))
	wb := db.NewWriteBatch()
	for i := range n {
		if err := wb.Set([]byte(fmt.Sprintf("%s%06d", PrefixCache, i)), val); err != nil {
			t.Fatal(err)
		}
		if err := wb.Set([]byte(fmt.Sprintf("%s%06d", PrefixQuota, i)), []byte("small")); err != nil {
			t.Fatal(err)
		}
	}
	if err := wb.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func tables(t *testing.T, dir string) []string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
	if len(m) == 0 {
		t.Fatal("the test database has no tables")
	}
	return m
}

func TestDamagedDirectoriesAreRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, dir string)
		want   string
	}{
		{"MANIFEST deleted", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, badger.ManifestFilename)); err != nil {
				t.Fatal(err)
			}
		}, "MANIFEST is missing"},
		{"garbage in a table", func(t *testing.T, dir string) {
			path := tables(t, dir)[0]
			b, _ := os.ReadFile(path)
			for i := len(b) / 4; i < len(b)/4+4096 && i < len(b); i++ {
				b[i] ^= 0x5a
			}
			if err := os.WriteFile(path, b, 0o640); err != nil {
				t.Fatal(err)
			}
		}, "table"},
		{"truncated table", func(t *testing.T, dir string) {
			path := tables(t, dir)[0]
			fi, _ := os.Stat(path)
			if err := os.Truncate(path, fi.Size()/2); err != nil {
				t.Fatal(err)
			}
		}, "table"},
		{"table deleted", func(t *testing.T, dir string) {
			if err := os.Remove(tables(t, dir)[0]); err != nil {
				t.Fatal(err)
			}
		}, "missing"},
		{"everything deleted but the record", func(t *testing.T, dir string) {
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
		}, "holds 0 of the 2000 keys"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filled(t, 2000)
			tc.damage(t, dir)
			db, err := Open(dir, Options{})
			if err == nil {
				db.Close()
				t.Fatal("a damaged directory opened")
			}
			var de *DamageError
			if !errors.As(err, &de) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want a DamageError saying %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("the reason is not one line: %q", err)
			}
		})
	}
}

func TestHealthyDirectoryReopens(t *testing.T) {
	dir := filled(t, 2000)
	for range 2 { // the second time without a record: as after a crash
		db, err := Open(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		counts, err := countKeys(db.DB)
		if err != nil || counts[PrefixCache].Lasting != 2000 || counts[PrefixQuota].Lasting != 2000 {
			t.Fatalf("reopened with %+v %v", counts[PrefixCache], err)
		}
		db.record = false // leave no record behind
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRepairSalvagesWhatIsReadable(t *testing.T) {
	for _, tc := range []struct {
		name    string
		damage  func(t *testing.T, dir string)
		allKept bool // nothing was lost, only the MANIFEST
	}{
		{"MANIFEST deleted", func(t *testing.T, dir string) {
			_ = os.Remove(filepath.Join(dir, badger.ManifestFilename))
		}, true},
		{"truncated table", func(t *testing.T, dir string) {
			path := tables(t, dir)[0]
			fi, _ := os.Stat(path)
			_ = os.Truncate(path, fi.Size()/2)
		}, false},
		{"garbage in a table", func(t *testing.T, dir string) {
			path := tables(t, dir)[0]
			b, _ := os.ReadFile(path)
			for i := len(b) / 4; i < len(b)/4+4096 && i < len(b); i++ {
				b[i] ^= 0x5a
			}
			_ = os.WriteFile(path, b, 0o640)
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filled(t, 2000)
			tc.damage(t, dir)
			rep, err := Repair(dir)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(rep.Original); err != nil {
				t.Fatalf("the damaged original was not kept: %v", err)
			}
			db, err := Open(dir, Options{})
			if err != nil {
				t.Fatalf("the repaired directory does not open: %v", err)
			}
			counts, _ := countKeys(db.DB)
			db.Close()
			kept := rep.Kept[PrefixCache] + rep.Kept[PrefixQuota]
			var have int64
			for _, c := range counts {
				have += c.Lasting
			}
			if have != kept {
				t.Fatalf("the report keeps %d keys, the database holds %d", kept, have)
			}
			if tc.allKept != (kept == 4000 && len(rep.TablesDropped) == 0 && rep.ValuesDropped == 0) {
				t.Fatalf("report %+v", rep)
			}
		})
	}
}
