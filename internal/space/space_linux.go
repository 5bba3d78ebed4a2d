package space

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

func freeBytes(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * st.Bsize, nil
}

// layBallast preallocates size bytes (real blocks, not a sparse file).
func layBallast(path string, size int64) error {
	fh, err := os.OpenFile(path+".tmp", os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if err := unix.Fallocate(int(fh.Fd()), 0, 0, size); err != nil {
		fh.Close()
		os.Remove(path + ".tmp")
		return err
	}
	if err := fh.Close(); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}

// errNoAllocate says the filesystem cannot preallocate (fallocate unsupported).
var errNoAllocate = errors.New("preallocation not supported")

// allocate gives every byte of the file at path up to size a real block,
// without changing its contents or its size (FALLOC_FL_KEEP_SIZE: a file
// the database truncates meanwhile is not extended again).
func allocate(path string, size int64) error {
	fh, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer fh.Close()
	err = unix.Fallocate(int(fh.Fd()), unix.FALLOC_FL_KEEP_SIZE, 0, size)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) {
		return fmt.Errorf("%w: %w", errNoAllocate, err)
	}
	return err
}

// allocated is the space the file at path holds on disk, in bytes.
func allocated(path string) (int64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, err
	}
	return st.Blocks * 512, nil
}
