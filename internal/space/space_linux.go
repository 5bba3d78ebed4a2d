package space

import (
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
