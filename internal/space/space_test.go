package space

import (
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

func TestWatcherPausesReleasesAndResumes(t *testing.T) {
	dir := t.TempDir()
	var free atomic.Int64
	free.Store(1 << 30)
	o := Options{Dir: dir, Reserve: 8 << 20, free: func(string) (int64, error) { return free.Load(), nil }}
	w, err := Start(o)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ballast := filepath.Join(dir, BallastName)
	fi, err := os.Stat(ballast)
	if _, serr := os.Stat(filepath.Join(dir, StartBallastName)); serr != nil {
		t.Fatalf("no start ballast: %v", serr)
	}
	if err != nil || fi.Size() != 4<<20 || !w.Storing() || w.Detail() != "" {
		t.Fatalf("with room: ballast %v %v, storing %v", fi, err, w.Storing())
	}
	for _, step := range []struct {
		name    string
		free    int64
		storing bool
		ballast bool
	}{
		{"below the reserve pauses", 6 << 20, false, true},
		{"nearly full releases the ballast", 1 << 20, false, false},
		{"just above the reserve stays paused", 9 << 20, false, false},
		{"a quarter above the reserve resumes and lays the ballast", 20 << 20, true, true},
	} {
		free.Store(step.free)
		if err := w.check(); err != nil {
			t.Fatal(err)
		}
		_, err := os.Stat(ballast)
		if w.Storing() != step.storing || (err == nil) != step.ballast || (w.Detail() == "") != step.storing {
			t.Fatalf("%s: storing %v, ballast %v, detail %q", step.name, w.Storing(), err == nil, w.Detail())
		}
	}
}

func TestPrepareReleasesTheBallastOnAFullDisk(t *testing.T) {
	dir := t.TempDir()
	ballast := filepath.Join(dir, BallastName)
	if err := os.WriteFile(ballast, make([]byte, 1024), 0o600); err != nil {
		t.Fatal(err)
	}
	o := Options{Dir: dir, Reserve: 8 << 20, free: func(string) (int64, error) { return 100 << 20, nil }}
	if _, err := Prepare(o); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(ballast); err != nil {
		t.Fatal("a disk with room lost its ballast")
	}
	o.free = func(string) (int64, error) { return 0, nil }
	if _, err := Prepare(o); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(ballast); err == nil {
		t.Fatal("a full disk kept its ballast: the database could not open")
	}
	if err := os.WriteFile(filepath.Join(dir, StartBallastName), make([]byte, 1024), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Prepare(o); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, StartBallastName)); err == nil {
		t.Fatal("a full disk kept its start ballast")
	}
}

func TestPausedStoragePreallocatesTheDatabaseWriteFiles(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "db")
	if err := os.Mkdir(db, 0o700); err != nil {
		t.Fatal(err)
	}
	sparse := func(name string, size int64) string {
		p := filepath.Join(db, name)
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.Write([]byte("header")); err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(size); err != nil {
			t.Fatal(err)
		}
		return p
	}
	vlog, mem, sst := sparse("000001.vlog", 8<<20), sparse("00002.mem", 4<<20), sparse("000003.sst", 4<<20)
	big := sparse("000004.vlog", 64<<20) // more than half the free space
	if a, err := allocated(vlog); err != nil || a >= 8<<20 {
		t.Skipf("this filesystem does not keep files sparse (%d bytes allocated, %v)", a, err)
	}
	var free atomic.Int64
	free.Store(1 << 30)
	w, err := Start(Options{Dir: dir, DBDir: db, Reserve: 64 << 20, Interval: time.Hour,
		free: func(string) (int64, error) { return free.Load(), nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if a, _ := allocated(vlog); a >= 8<<20 {
		t.Fatalf("with room the value log was preallocated: %d bytes", a)
	}
	free.Store(40 << 20) // below the reserve: paused
	if err := w.check(); err != nil {
		t.Fatal(err)
	}
	if w.noPin {
		t.Skip("this filesystem cannot preallocate")
	}
	for _, f := range []struct {
		path string
		size int64
		full bool
	}{{vlog, 8 << 20, true}, {mem, 4 << 20, true}, {sst, 4 << 20, false}, {big, 64 << 20, false}} {
		a, err := allocated(f.path)
		fi, serr := os.Stat(f.path)
		if err != nil || serr != nil || fi.Size() != f.size || (a >= f.size) != f.full {
			t.Fatalf("%s: %d bytes allocated of %v (%v %v), want allocated in full: %v", filepath.Base(f.path), a, fi.Size(), err, serr, f.full)
		}
		if b, _ := os.ReadFile(f.path); string(b[:6]) != "header" || b[len(b)-1] != 0 {
			t.Fatalf("%s: contents changed", filepath.Base(f.path))
		}
	}
	// A file the database truncated since is allocated again, never extended.
	if err := os.Truncate(vlog, 2<<20); err != nil {
		t.Fatal(err)
	}
	if err := w.check(); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(vlog); fi.Size() != 2<<20 {
		t.Fatalf("the truncated value log is %d bytes, want 2 MiB", fi.Size())
	}
}
