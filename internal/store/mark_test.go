package store

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// crashCopy copies the database directory dir of a running node, and its
// mark file, to a new place: what a kill -9 leaves (the memory-mapped writes
// are in the page cache, which the copy reads). The mark file goes first: a
// kill can happen at any moment after it was written.
func crashCopy(t *testing.T, dir string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "db")
	if b, err := os.ReadFile(markPath(dir)); err == nil {
		if err := os.WriteFile(markPath(dst), b, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(dst, 0o750); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		in, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // removed meanwhile (a flushed memtable)
		}
		out, err := os.Create(filepath.Join(dst, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.Copy(out, in)
		in.Close()
		if cerr := out.Close(); err != nil || cerr != nil {
			t.Fatal(err, cerr)
		}
	}
	return dst
}

func waitMark(t *testing.T, dir string, atLeast int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(markPath(dir)); err == nil && strings.Contains(string(b), `"mark":`) {
			var n int
			if _, err := fmt.Sscanf(string(b), `{"mark":%d`, &n); err == nil && n >= atLeast {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("the mark file did not reach %d", atLeast)
}

func TestMarkAfterACrash(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	db, err := Open(dir, Options{MarkInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	wb := db.NewWriteBatch()
	for i := range 500 {
		if err := wb.Set(fmt.Appendf(nil, "%s%04d", PrefixCache, i), []byte(strings.Repeat("v", 100))); err != nil {
			t.Fatal(err)
		}
	}
	if err := wb.Flush(); err != nil {
		t.Fatal(err)
	}
	waitMark(t, dir, 2)
	// Deletes after the mark lower no count a crash would be checked against.
	del := db.NewWriteBatch()
	for i := range 400 {
		if err := del.Delete(fmt.Appendf(nil, "%s%04d", PrefixCache, i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := del.Flush(); err != nil {
		t.Fatal(err)
	}
	waitMark(t, dir, 4)
	killed, lost := crashCopy(t, dir), crashCopy(t, dir)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	t.Run("a kill -9 at any moment starts", func(t *testing.T) {
		db, err := Open(killed, Options{})
		if err != nil {
			t.Fatalf("a healthy directory after a crash was refused: %v", err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a lost memtable log is refused", func(t *testing.T) {
		mems, _ := filepath.Glob(filepath.Join(lost, "*.mem"))
		if len(mems) == 0 {
			t.Fatal("no memtable log in the copy")
		}
		for _, m := range mems {
			if err := os.Remove(m); err != nil {
				t.Fatal(err)
			}
		}
		db, err := Open(lost, Options{})
		var de *DamageError
		if !errors.As(err, &de) || !strings.Contains(err.Error(), "mark") {
			if err == nil {
				db.Close()
			}
			t.Fatalf("a directory without its newest writes opened: %v", err)
		}
	})
	t.Run("a clean restart continues the mark", func(t *testing.T) {
		db, err := Open(dir, Options{MarkInterval: 20 * time.Millisecond})
		if err != nil {
			t.Fatalf("reopening after a clean close: %v", err)
		}
		waitMark(t, dir, 6)
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	})
}
