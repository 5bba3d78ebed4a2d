package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Key prefixes, one per owner of persisted state.
const (
	PrefixCache     = "c/" // index: cache entries
	PrefixTombstone = "t/" // index: deletes and purges, kept so that replicas never bring entries back
	PrefixQuota     = "q/" // quota: window and period counters
	PrefixLimits    = "l/" // quota: run-time limit changes
	PrefixKeys      = "k/" // identity: run-time consumer keys (salted hashes, never the keys)
	PrefixUsage     = "h/" // usage: hourly usage history rows
	PrefixAffinity  = "a/" // affinity: Responses API response id -> consumer and backend
	PrefixStore     = "s/" // store: its own mark (see mark.go)
)

// Options tune the database; zero fields get defaults.
type Options struct {
	Logger *slog.Logger
	// InMemory keeps everything in memory (tests); Dir is ignored.
	InMemory bool
	// GCInterval is how often value-log GC runs (default 1 minute).
	GCInterval time.Duration
	// MarkInterval is how often the mark a start after a crash checks is
	// advanced (default 30 seconds; see mark.go): writes older than this
	// that a crash's survivor lacks are found.
	MarkInterval time.Duration
}

// DB is the node's open database.
type DB struct {
	*badger.DB
	log    *slog.Logger
	cancel context.CancelFunc
	done   sync.WaitGroup
	dir    string
	record bool // write the entry record on a clean close
}

// Open opens (or creates) the database in dir. A locked or corrupt directory
// is an error: the node must not start empty by accident.
func Open(dir string, opts Options) (*DB, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.GCInterval <= 0 {
		opts.GCInterval = time.Minute
	}
	if opts.MarkInterval <= 0 {
		opts.MarkInterval = 30 * time.Second
	}
	bo := badgerOptions(dir, opts)
	if !opts.InMemory {
		// Refuse a damaged directory before Badger opens it: Badger would
		// start empty without its MANIFEST (and delete the tables), serve
		// what it can of a corrupt table, and panic on a truncated one.
		if err := Check(dir); err != nil {
			return nil, err
		}
	}
	bdb, err := badger.Open(bo)
	if err != nil {
		return nil, fmt.Errorf("opening database in %s: %w", dir, err)
	}
	var mark uint64
	if !opts.InMemory {
		if err := checkRecord(bdb, dir, time.Now()); err != nil {
			_ = bdb.Close()
			return nil, err
		}
		if mark, err = checkMark(bdb, dir); err != nil {
			_ = bdb.Close()
			return nil, err
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	db := &DB{DB: bdb, log: opts.Logger, cancel: cancel, dir: dir, record: !opts.InMemory}
	if !opts.InMemory {
		db.done.Add(2)
		go db.gcLoop(ctx, opts.GCInterval)
		go db.markLoop(ctx, opts.MarkInterval, mark)
	}
	return db, nil
}

// gcLoop reclaims value-log space: TTL expiry and deletes hide keys at once,
// but disk space returns only through GC.
func (db *DB) gcLoop(ctx context.Context, every time.Duration) {
	defer db.done.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			for ctx.Err() == nil {
				err := db.RunValueLogGC(0.5)
				if err != nil {
					if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
						db.log.Warn("value-log GC failed", "err", err)
					}
					break
				}
			}
		}
	}
}

// Close stops GC and closes the database, flushing what is buffered. Call it
// once every owner has stopped writing: it records the entries it holds, for
// the next start to check against.
func (db *DB) Close() error {
	db.cancel()
	db.done.Wait()
	if db.record {
		if err := writeRecord(db.DB, db.dir); err != nil {
			db.log.Warn("recording the database's entry counts; the next start cannot check them", "err", err)
		}
	}
	if err := db.DB.Close(); err != nil {
		return fmt.Errorf("closing database: %w", err)
	}
	return nil
}

// badgerLogger routes Badger's messages to slog.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any) {
	b.l.Error(fmt.Sprintf(f, a...), "component", "badger")
}
func (b badgerLogger) Warningf(f string, a ...any) {
	b.l.Warn(fmt.Sprintf(f, a...), "component", "badger")
}
func (b badgerLogger) Infof(f string, a ...any) {
	b.l.Info(fmt.Sprintf(f, a...), "component", "badger")
}
func (b badgerLogger) Debugf(f string, a ...any) {
	b.l.Debug(fmt.Sprintf(f, a...), "component", "badger")
}

// badgerOptions are the database's settings, shared by Open and Repair.
func badgerOptions(dir string, opts Options) badger.Options {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return badger.DefaultOptions(dir).
		WithInMemory(opts.InMemory).
		WithLogger(badgerLogger{opts.Logger}).
		WithLoggingLevel(badger.WARNING).
		// Sized for a gateway, not a database server: Badger's defaults
		// (5 × 64 MB memtables, 256 MB block cache) would dwarf the node.
		WithMemTableSize(16 << 20).
		WithNumMemtables(2).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(8).
		WithValueThreshold(1 << 10).
		WithBlockCacheSize(16 << 20).
		WithIndexCacheSize(16 << 20).
		WithValueLogFileSize(64 << 20).
		WithNumCompactors(2).
		WithDetectConflicts(false)
}
