// Package space watches the free space of the filesystem that holds a node's
// data directory and says whether the node may go on storing.
//
// Badger writes through memory-mapped files: on a full disk a write into one
// of them is not an error but a SIGBUS that kills the process. So the node
// stops storing new cache entries while free space is below a reserve (it
// keeps serving, uncached, with counts in memory), and keeps a ballast file
// of preallocated space in the data directory that it releases when the disk
// fills regardless (another process, the small writes that go on), so that
// Badger's flushes, and a restart on a full disk, always find room.
//
// While paused it also preallocates (fallocate, keeping sizes and contents)
// the files Badger is writing through memory maps, the memtable and value
// logs, so that the writes that go on land on blocks the disk already gave.
//
// It owns the statfs polling, the ballast files and the paused state. It
// never writes the database's contents and knows nothing of what is stored.
package space
