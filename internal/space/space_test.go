package space

import (
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
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
