package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/pb"
	"github.com/dgraph-io/badger/v4/table"
	"google.golang.org/protobuf/proto"
)

// RepairReport says what Repair kept and what it lost.
type RepairReport struct {
	// Original is where the damaged directory was moved, untouched.
	Original string
	// Tables kept and dropped (unreadable, truncated, failing checksums).
	TablesKept    int
	TablesDropped []string
	// Keys kept per prefix, and keys dropped because their value could
	// not be read (a damaged or missing value log).
	Kept          map[string]int64
	ValuesDropped int64
}

// badgerMagicVersion is the MANIFEST format of the Badger this store is
// built with; a rebuilt MANIFEST is checked by Badger's own reader.
const badgerMagicVersion = 8

// Repair salvages what is readable of the database in dir. The damaged
// directory is moved aside, never modified; a new one is built beside it
// from the tables that pass their checksums and the value logs, under a
// MANIFEST rebuilt from the old one (or from the tables, if it is gone);
// keys whose value cannot be read are then dropped. The result opens as a
// healthy database; the report says what was lost.
func Repair(dir string) (*RepairReport, error) {
	dir = filepath.Clean(dir)
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("database directory %s: %w", dir, err)
	}
	rep := &RepairReport{Original: dir + ".damaged-" + time.Now().UTC().Format("20060102T150405Z"), Kept: map[string]int64{}}
	if err := os.Rename(dir, rep.Original); err != nil {
		return nil, fmt.Errorf("moving the damaged database aside: %w", err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	_ = os.Remove(recordPath(dir)) // its counts describe what was lost
	_ = os.Remove(markPath(dir))   // and its mark may be among it

	bo := badgerOptions(dir, Options{})
	levels := map[uint64]badger.TableManifest{}
	if m, err := readManifest(rep.Original); err == nil {
		levels = m.Tables
	}
	files, err := os.ReadDir(rep.Original)
	if err != nil {
		return nil, err
	}
	keep := map[uint64]badger.TableManifest{}
	for _, f := range files {
		name := f.Name()
		src, dst := filepath.Join(rep.Original, name), filepath.Join(dir, name)
		switch {
		case strings.HasSuffix(name, ".sst"):
			id, ok := table.ParseFileID(name)
			if !ok {
				continue
			}
			tm, known := levels[id]
			if !known {
				// No MANIFEST entry: level 0, where tables may overlap
				// and versions decide; compaction sorts them out.
				tm = badger.TableManifest{Level: 0, Compression: bo.Compression}
			}
			if err := checkTable(src, tm, bo); err != nil {
				rep.TablesDropped = append(rep.TablesDropped, name+": "+err.Error())
				continue
			}
			if err := copyFile(src, dst); err != nil {
				return nil, err
			}
			keep[id] = tm
		case strings.HasSuffix(name, ".vlog"), strings.HasSuffix(name, ".mem"), name == "KEYREGISTRY":
			if err := copyFile(src, dst); err != nil {
				return nil, err
			}
		}
	}
	rep.TablesKept = len(keep)
	slices.Sort(rep.TablesDropped)
	if err := writeManifest(dir, keep); err != nil {
		return nil, err
	}
	if err := salvageValues(dir, rep); err != nil {
		return nil, err
	}
	return rep, nil
}

// writeManifest writes a MANIFEST creating exactly the given tables.
func writeManifest(dir string, tables map[uint64]badger.TableManifest) error {
	set := &pb.ManifestChangeSet{}
	ids := make([]uint64, 0, len(tables))
	for id := range tables {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		tm := tables[id]
		set.Changes = append(set.Changes, &pb.ManifestChange{
			Id: id, Op: pb.ManifestChange_CREATE, Level: uint32(tm.Level), KeyId: tm.KeyID,
			EncryptionAlgo: pb.EncryptionAlgo_aes, Compression: uint32(tm.Compression),
		})
	}
	body, err := proto.Marshal(set)
	if err != nil {
		return err
	}
	buf := make([]byte, 16, 16+len(body))
	copy(buf, "Bdgr")
	binary.BigEndian.PutUint16(buf[4:6], 0) // no external magic
	binary.BigEndian.PutUint16(buf[6:8], badgerMagicVersion)
	binary.BigEndian.PutUint32(buf[8:12], uint32(len(body)))
	binary.BigEndian.PutUint32(buf[12:16], crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli)))
	buf = append(buf, body...)
	path := filepath.Join(dir, badger.ManifestFilename)
	if err := os.WriteFile(path, buf, 0o640); err != nil {
		return err
	}
	if _, err := readManifest(dir); err != nil {
		return fmt.Errorf("the rebuilt MANIFEST does not read back: %w", err)
	}
	return nil
}

// salvageValues opens the rebuilt database, reads every value and deletes
// the keys whose value cannot be read.
func salvageValues(dir string, rep *RepairReport) error {
	bdb, err := badger.Open(badgerOptions(dir, Options{}))
	if err != nil {
		return fmt.Errorf("opening the rebuilt database: %w", err)
	}
	var lost [][]byte
	err = bdb.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			if err := item.Value(func([]byte) error { return nil }); err != nil {
				lost = append(lost, item.KeyCopy(nil))
				continue
			}
			k := item.Key()
			p := "other"
			if i := strings.IndexByte(string(k[:min(len(k), 16)]), '/'); i >= 0 {
				p = string(k[:i+1])
			}
			rep.Kept[p]++
		}
		return nil
	})
	if err == nil && len(lost) > 0 {
		wb := bdb.NewWriteBatch()
		for _, k := range lost {
			if err = wb.Delete(k); err != nil {
				break
			}
		}
		if err == nil {
			err = wb.Flush()
		}
	}
	rep.ValuesDropped = int64(len(lost))
	return errors.Join(err, bdb.Close())
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
