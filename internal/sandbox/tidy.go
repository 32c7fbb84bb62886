package sandbox

import (
	"fmt"
	"io"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// tidy leaves in a job directory only what the worker takes from it: the
// regular files at its top, readable by the group (the worker's). Every
// subdirectory (the download's .home, whatever a hostile download made)
// and every other kind of file goes. The children run as the downloader
// user, which the worker is not: only this user may empty a directory
// they made, whatever modes they left on it. It runs once the child and
// its process group are gone.
func tidy(dir *os.File) error {
	fd, err := unix.Openat(int(dir.Fd()), ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	return tidyDir(fd, true)
}

// tidyDir empties the directory fd (and closes it). At the top it keeps
// regular files, made group-readable.
func tidyDir(fd int, top bool) error {
	d := os.NewFile(uintptr(fd), "dir")
	defer d.Close()
	var first error
	keep := func(err error) {
		if first == nil && err != nil {
			first = err
		}
	}
	for {
		names, err := d.Readdirnames(256)
		for _, name := range names {
			var st unix.Stat_t
			if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				keep(err)
				continue
			}
			switch st.Mode & unix.S_IFMT {
			case unix.S_IFREG:
				if top {
					keep(chmodNoFollow(fd, name, 0o640))
					continue
				}
				keep(unix.Unlinkat(fd, name, 0))
			case unix.S_IFDIR:
				// Ours: make it ours to empty, whatever mode was left.
				if err := chmodNoFollow(fd, name, 0o700); err != nil {
					keep(err)
					continue
				}
				sub, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
				if err != nil {
					keep(err)
					continue
				}
				keep(tidyDir(sub, false))
				keep(unix.Unlinkat(fd, name, unix.AT_REMOVEDIR))
			default:
				keep(unix.Unlinkat(fd, name, 0))
			}
		}
		if err == io.EOF || (err == nil && len(names) == 0) {
			break
		}
		if err != nil {
			keep(err)
			break
		}
	}
	if first != nil {
		return fmt.Errorf("tidying the job directory: %w", first)
	}
	return nil
}

// chmodNoFollow changes the mode of name in dirfd, never through a
// symbolic link: an entry swapped for a link after it was looked at (the
// worker can write the job directory) fails instead of changing the mode
// of whatever the link names. fchmodat2 (Linux 6.6) takes the flag; the
// daemons need Linux 6.12 for Landlock ABI 6.
func chmodNoFollow(dirfd int, name string, mode uint32) error {
	p, err := unix.BytePtrFromString(name)
	if err != nil {
		return err
	}
	_, _, e := unix.Syscall6(sysFchmodat2, uintptr(dirfd), uintptr(unsafe.Pointer(p)), uintptr(mode), unix.AT_SYMLINK_NOFOLLOW, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// sysFchmodat2 is fchmodat2's number on amd64 (the only architecture the
// seccomp filters admit).
const sysFchmodat2 = 452
