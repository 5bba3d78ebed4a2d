package space

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
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
	w := &Watcher{o: o, stop: make(chan struct{}),
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
	if !w.paused.Load() {
		w.lay(free, StartBallastName, w.o.startBallastSize())
		if f, err := w.o.free(w.o.Dir); err == nil {
			free = f
		}
		w.lay(free, BallastName, w.o.ballastSize())
	}
	return nil
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
