package space

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// BallastName is the ballast file's name in the data directory: released
// while running when the disk is nearly full. StartBallastName is a smaller
// one released only at start, so that a node stopped on a full disk (its
// running ballast spent) can open its database again.
const (
	BallastName      = "space.ballast"
	StartBallastName = "space.ballast.start"
)

// Options configure a Watcher; zero fields get defaults.
type Options struct {
	// Dir is the data directory.
	Dir string
	// DBDir is the database's directory: while storing is paused, the files
	// Badger writes through memory maps there (memtable logs *.mem, value
	// logs *.vlog) are given real blocks, so that the writes that go on
	// cannot fault on a full disk. "" leaves them as they are.
	DBDir string
	// Reserve is the free space below which storing stops (default 256 MiB).
	Reserve int64
	// Interval is how often free space is measured (default 1s).
	Interval time.Duration
	Logger   *slog.Logger
	Registry prometheus.Registerer
	// free measures free bytes (tests); nil = statfs of Dir.
	free func(dir string) (int64, error)
}

func (o *Options) defaults() {
	if o.Reserve <= 0 {
		o.Reserve = 256 << 20
	}
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.free == nil {
		o.free = freeBytes
	}
}

// ballastSize is half the reserve: room for Badger's flushes and the small
// writes that go on while storing is paused; the start ballast is a quarter.
func (o *Options) ballastSize() int64      { return o.Reserve / 2 }
func (o *Options) startBallastSize() int64 { return o.Reserve / 4 }

// Prepare runs before the database opens: on a disk with less than the
// reserve free it releases the ballast, so that opening (which writes)
// finds room. It returns the free bytes it measured.
func Prepare(o Options) (int64, error) {
	o.defaults()
	free, err := o.free(o.Dir)
	if err != nil {
		return 0, fmt.Errorf("measuring free space of %s: %w", o.Dir, err)
	}
	if free < o.Reserve {
		released := false
		for _, name := range []string{StartBallastName, BallastName} {
			released = os.Remove(filepath.Join(o.Dir, name)) == nil || released
		}
		if released {
			o.Logger.Warn("data disk below its reserve at start: ballast released so the database can open",
				"dir", o.Dir, "free_bytes", free, "reserve_bytes", o.Reserve)
			if f, err := o.free(o.Dir); err == nil {
				free = f
			}
		}
	}
	return free, nil
}

// Watcher measures free space and holds the paused state. One goroutine
// owns the measurements and the ballast; readers see atomics.
type Watcher struct {
	o       Options
	pinned  map[string]int64 // DBDir files allocated in full, by name: their size then
	noPin   bool             // the filesystem cannot allocate: stop trying
	paused  atomic.Bool
	free    atomic.Int64
	stop    chan struct{}
	done    sync.WaitGroup
	gPaused prometheus.Gauge
	gFree   prometheus.Gauge
}

// Start measures once, lays the ballast if there is room and watches.
func Start(o Options) (*Watcher, error) {
	o.defaults()
	w := &Watcher{o: o, stop: make(chan struct{}), pinned: map[string]int64{},
		gPaused: prometheus.NewGauge(prometheus.GaugeOpts{Name: "llmgate_storage_paused",
			Help: "1 while the data disk is below node.disk_reserve_bytes and new cache entries are not stored."}),
		gFree: prometheus.NewGauge(prometheus.GaugeOpts{Name: "llmgate_data_disk_free_bytes",
			Help: "Free bytes on the data directory's filesystem, as last measured."}),
	}
	if o.Registry != nil {
		for _, c := range []prometheus.Collector{w.gPaused, w.gFree} {
			if err := o.Registry.Register(c); err != nil {
				return nil, fmt.Errorf("registering storage metrics: %w", err)
			}
		}
	}
	if err := w.check(); err != nil {
		return nil, err
	}
	w.done.Add(1)
	go w.loop()
	return w, nil
}

func (w *Watcher) loop() {
	defer w.done.Done()
	t := time.NewTicker(w.o.Interval)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
			if err := w.check(); err != nil {
				w.o.Logger.Warn("measuring free space of the data disk", "err", err)
			}
		}
	}
}

// check measures and moves between storing and paused, with hysteresis so
// that a disk hovering at the reserve does not flap.
func (w *Watcher) check() error {
	free, err := w.o.free(w.o.Dir)
	if err != nil {
		return err
	}
	w.free.Store(free)
	w.gFree.Set(float64(free))
	reserve, ballast := w.o.Reserve, filepath.Join(w.o.Dir, BallastName)
	switch paused := w.paused.Load(); {
	case !paused && free < reserve:
		w.paused.Store(true)
		w.gPaused.Set(1)
		w.o.Logger.Warn("data disk below its reserve: new cache entries are not stored until space returns; requests are served",
			"dir", w.o.Dir, "free_bytes", free, "reserve_bytes", reserve)
	case paused && free < reserve/4:
		if err := os.Remove(ballast); err == nil {
			w.o.Logger.Warn("data disk nearly full: ballast released for the database's own writes",
				"dir", w.o.Dir, "free_bytes", free, "released_bytes", w.o.ballastSize())
		}
	case paused && free >= reserve+reserve/4:
		w.paused.Store(false)
		w.gPaused.Set(0)
		w.o.Logger.Info("data disk above its reserve again: storing resumed", "dir", w.o.Dir, "free_bytes", free)
	}
	if w.paused.Load() {
		w.pin(free)
	}
	if !w.paused.Load() {
		w.lay(free, StartBallastName, w.o.startBallastSize())
		if f, err := w.o.free(w.o.Dir); err == nil {
			free = f
		}
		w.lay(free, BallastName, w.o.ballastSize())
	}
	return nil
}

// pin gives the database's memory-mapped write files real blocks on disk.
// Badger creates them sparse (ftruncate) and writes through a mapping: a
// page of a hole written on a full disk is a SIGBUS, a page of an allocated
// block is not, and no other process can take an allocated block. A file is
// allocated in full, and only when what it lacks is at most half the free
// space, so pinning never fills the disk itself (and what it takes is the
// room Badger would fill anyway, returned when it truncates or removes the
// file). Allocation never changes a file's contents or size
// (FALLOC_FL_KEEP_SIZE), so it is safe beside Badger's writes and truncations.
func (w *Watcher) pin(free int64) {
	if w.o.DBDir == "" || w.noPin {
		return
	}
	entries, err := os.ReadDir(w.o.DBDir)
	if err != nil {
		return
	}
	seen := make(map[string]bool, len(entries))
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".mem") && !strings.HasSuffix(name, ".vlog") {
			continue
		}
		seen[name] = true
		path := filepath.Join(w.o.DBDir, name)
		fi, err := e.Info()
		if err != nil || fi.Size() == 0 || w.pinned[name] == fi.Size() {
			continue
		}
		have, err := allocated(path)
		if err != nil || fi.Size()-have > free/2 {
			continue // does not fit: the ballast is what covers it
		}
		switch err := allocate(path, fi.Size()); {
		case err == nil:
			w.pinned[name] = fi.Size()
			w.o.Logger.Info("database file preallocated on a nearly full disk", "file", name, "bytes", fi.Size()-have)
			if f, err := w.o.free(w.o.Dir); err == nil {
				free = f
			}
		case errors.Is(err, errNoAllocate):
			w.noPin = true
			w.o.Logger.Warn("the data disk's filesystem cannot preallocate; the database's files stay sparse", "dir", w.o.DBDir, "err", err)
			return
		case !errors.Is(err, os.ErrNotExist):
			w.o.Logger.Warn("preallocating a database file on a nearly full disk", "file", name, "err", err)
		}
	}
	for name := range w.pinned {
		if !seen[name] {
			delete(w.pinned, name) // flushed or rotated away
		}
	}
}

// lay creates a missing ballast file when the disk has room for it above the reserve.
func (w *Watcher) lay(free int64, name string, size int64) {
	path := filepath.Join(w.o.Dir, name)
	if free < w.o.Reserve+size {
		return
	}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		if err := layBallast(path, size); err != nil {
			w.o.Logger.Warn("laying the data disk's ballast", "file", path, "err", err)
		}
	}
}

// Storing reports whether new entries may be stored.
func (w *Watcher) Storing() bool { return !w.paused.Load() }

// Detail is the readiness detail while storing is paused, else "".
func (w *Watcher) Detail() string {
	if !w.paused.Load() {
		return ""
	}
	return fmt.Sprintf("paused: %d MiB free on the data disk, below the reserve of %d MiB; serving without storing",
		w.free.Load()>>20, w.o.Reserve>>20)
}

// Close stops watching. The ballast stays for the next start.
func (w *Watcher) Close() {
	close(w.stop)
	w.done.Wait()
}
