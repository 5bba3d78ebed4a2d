package store

import (
	"testing"

	"github.com/dgraph-io/badger/v4"
)

func TestReopenKeepsWrites(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(txn *badger.Txn) error { return txn.Set([]byte(PrefixQuota+"k"), []byte("v")) }); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.View(func(txn *badger.Txn) error {
		it, err := txn.Get([]byte(PrefixQuota + "k"))
		if err != nil {
			return err
		}
		v, err := it.ValueCopy(nil)
		if string(v) != "v" {
			t.Errorf("value = %q, want v", v)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestLockedDirectoryIsAnError(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if db2, err := Open(dir, Options{}); err == nil {
		db2.Close()
		t.Fatal("second Open of the same directory succeeded")
	}
}

func TestInMemory(t *testing.T) {
	db, err := Open("", Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}
