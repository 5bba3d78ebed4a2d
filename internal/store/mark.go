package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// The mark is how a start after a crash (kill -9, power loss) checks that
// the database still holds its newest writes, which the entry record of a
// clean close cannot do: a record of counts written while running would be
// contradicted by every delete since (cache evictions, purges, revoked keys)
// and refuse a healthy directory after a kill -9.
//
// So the store keeps one key of its own, markKey, whose value only grows:
// every MarkInterval it writes the next number, syncs the database (the
// memtable log and value log reach the disk) and only then writes that
// number to the mark file beside the directory. The key is never deleted, so
// compaction keeps its newest version; a start that finds it lower than the
// file (or missing) has lost writes that had reached the disk: a memtable
// log or table deleted or truncated, a directory rolled back to an older
// copy. Deletes, expiries and a kill -9 at any moment never lower it: what
// a kill -9 interrupts is either not yet in the file or already on disk.
const markKey = PrefixStore + "mark"

// markPath is the mark file beside the database directory dir.
func markPath(dir string) string { return filepath.Clean(dir) + ".mark.json" }

type markFile struct {
	Mark      uint64    `json:"mark"`
	WrittenAt time.Time `json:"written_at"`
}

// readMarkKey returns the mark the database holds, 0 if none.
func readMarkKey(db *badger.DB) (uint64, error) {
	var m uint64
	err := db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(markKey))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			if len(v) != 8 {
				return fmt.Errorf("the mark is %d bytes, want 8", len(v))
			}
			m = binary.BigEndian.Uint64(v)
			return nil
		})
	})
	return m, err
}

// checkMark compares the opened database's mark with the mark file and
// returns the mark to continue from.
func checkMark(db *badger.DB, dir string) (uint64, error) {
	have, err := readMarkKey(db)
	if err != nil {
		return 0, damaged(dir, "its mark cannot be read: %v", err)
	}
	b, err := os.ReadFile(markPath(dir))
	if errors.Is(err, os.ErrNotExist) {
		return have, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", markPath(dir), err)
	}
	var f markFile
	if err := json.Unmarshal(b, &f); err != nil {
		return 0, damaged(dir, "its mark file %s cannot be read: %v", markPath(dir), err)
	}
	if have < f.Mark {
		if have == 0 {
			return 0, damaged(dir, "it holds none of the writes synced up to %s (mark %d in %s); if it was emptied on purpose, remove that file to start empty",
				f.WrittenAt.Format(time.RFC3339), f.Mark, markPath(dir))
		}
		return 0, damaged(dir, "it lacks writes that had reached the disk: its mark is %d, %d was synced at %s (a memtable log or table lost, or an older copy of the directory)",
			have, f.Mark, f.WrittenAt.Format(time.RFC3339))
	}
	return have, nil
}

// advanceMark writes mark+1 into the database, syncs it, then records it in
// the mark file, and returns the new mark. On an error the file keeps the
// previous mark, which the database already holds.
func advanceMark(db *badger.DB, dir string, mark uint64) (uint64, error) {
	next := mark + 1
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], next)
	if err := db.Update(func(txn *badger.Txn) error { return txn.Set([]byte(markKey), v[:]) }); err != nil {
		return mark, fmt.Errorf("writing the mark: %w", err)
	}
	if err := db.Sync(); err != nil {
		return mark, fmt.Errorf("syncing the database: %w", err)
	}
	b, err := json.Marshal(markFile{Mark: next, WrittenAt: time.Now().UTC()})
	if err != nil {
		return mark, err
	}
	if err := writeFileAtomic(markPath(dir), b); err != nil {
		return mark, fmt.Errorf("writing the mark file: %w", err)
	}
	return next, nil
}

// markLoop advances the mark every interval until ctx is done.
func (db *DB) markLoop(ctx context.Context, every time.Duration, mark uint64) {
	defer db.done.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			next, err := advanceMark(db.DB, db.dir, mark)
			if err != nil && !failing {
				db.log.Warn("advancing the database's mark; a start after a crash checks an older one", "err", err)
			}
			failing = err != nil
			mark = next
		}
	}
}

// writeFileAtomic writes b to path through a synced temporary file.
func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	fh, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
	if err != nil {
		return err
	}
	if _, err := fh.Write(b); err != nil {
		fh.Close()
		return err
	}
	if err := fh.Sync(); err != nil {
		fh.Close()
		return err
	}
	if err := fh.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
