package status

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The spool is read through directory descriptors, one path element at
// a time with O_NOFOLLOW, so no symbolic link anywhere below the spool
// root is followed. Nothing is ever opened for writing, created, renamed,
// chmodded or removed; files and directories are opened with O_NOATIME
// where the kernel allows it (root may), so that even their access times
// stay as they were.

// dir is an open directory of the spool; rel names it in messages.
type dir struct {
	fd  int
	rel string
}

const openFlags = unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOFOLLOW | unix.O_NOCTTY

// openat opens name in parent (AT_FDCWD for a path) with flags and,
// where the kernel allows it, O_NOATIME.
func openat(parent int, name string, flags int) (int, error) {
	for {
		fd, err := unix.Openat(parent, name, flags|unix.O_NOATIME, 0)
		if errors.Is(err, unix.EPERM) {
			// O_NOATIME needs the file's owner or CAP_FOWNER.
			fd, err = unix.Openat(parent, name, flags, 0)
		}
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return fd, err
	}
}

// openRoot opens the spool root, which must be a directory and not a
// symbolic link.
func openRoot(path string) (*dir, error) {
	fd, err := openat(unix.AT_FDCWD, path, openFlags|unix.O_DIRECTORY)
	if err != nil {
		return nil, fmt.Errorf("couldn't open the spool %s: %w", path, err)
	}
	return &dir{fd: fd, rel: "."}, nil
}

// open opens the directory rel ("worker/claimed") below d, element by
// element, refusing symbolic links.
func (d *dir) open(rel string) (*dir, error) {
	fd := d.fd
	for _, elem := range strings.Split(rel, "/") {
		next, err := openat(fd, elem, openFlags|unix.O_DIRECTORY)
		if fd != d.fd {
			unix.Close(fd)
		}
		if err != nil {
			if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
				return nil, fmt.Errorf("couldn't open %s/: not a directory (a symbolic link?)", rel)
			}
			return nil, fmt.Errorf("couldn't open %s/: %w", rel, unwrapErrno(err))
		}
		fd = next
	}
	return &dir{fd: fd, rel: rel}, nil
}

func (d *dir) close() { unix.Close(d.fd) }

// unwrapErrno gives an errno's message alone ("permission denied").
func unwrapErrno(err error) error {
	var e unix.Errno
	if errors.As(err, &e) {
		return e
	}
	return err
}

// names lists at most max entries of d (not "." and ".."), and reports
// whether there were more.
func (d *dir) names(max int) ([]string, bool, error) {
	fd, err := openat(d.fd, ".", openFlags|unix.O_DIRECTORY)
	if err != nil {
		return nil, false, fmt.Errorf("couldn't list %s/: %w", d.rel, unwrapErrno(err))
	}
	f := os.NewFile(uintptr(fd), d.rel)
	defer f.Close()
	var all []string
	for len(all) <= max {
		chunk, err := f.Readdirnames(256)
		all = append(all, chunk...)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, false, fmt.Errorf("couldn't list %s/: %w", d.rel, unwrapErrno(err))
		}
	}
	if len(all) > max {
		return all[:max], true, nil
	}
	return all, false, nil
}

// lstat describes name in d without following a symbolic link.
func (d *dir) lstat(name string) (*unix.Stat_t, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return nil, unwrapErrno(err)
	}
	return &st, nil
}

// fileType names a file's type, for what is not a regular file.
func fileType(st *unix.Stat_t) string {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "file"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFDIR:
		return "directory"
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFSOCK:
		return "socket"
	}
	return "device"
}

// refusal says why the file st describes is not read as a record of at
// most max bytes written by uid (-1: any owner), or "" when it may be.
func refusal(st *unix.Stat_t, uid, max int) string {
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return "a " + fileType(st) + ", not a regular file"
	case st.Nlink != 1:
		return "hard link count " + strconv.FormatUint(uint64(st.Nlink), 10)
	case uid >= 0 && int(st.Uid) != uid:
		return fmt.Sprintf("owned by uid %d, not its writer's uid %d", st.Uid, uid)
	case st.Size > int64(max):
		return fmt.Sprintf("%d bytes, over the %d-byte limit", st.Size, max)
	case st.Mode&(unix.S_ISUID|unix.S_ISGID) != 0:
		return "setuid or setgid bit"
	}
	return ""
}

// errRefused is a file that is not read; its message says why.
type errRefused string

func (e errRefused) Error() string { return string(e) }

// read returns the bytes of the record name in d: a regular file with
// one link, owned by uid (-1: any), of at most max bytes, checked before
// it is opened (never a FIFO or a device) and again on the descriptor
// (the same inode). Nothing more than max+1 bytes is ever read.
func (d *dir) read(name string, uid, max int) ([]byte, error) {
	st, err := d.lstat(name)
	if err != nil {
		return nil, err
	}
	if why := refusal(st, uid, max); why != "" {
		return nil, errRefused(why)
	}
	fd, err := openat(d.fd, name, openFlags|unix.O_NONBLOCK)
	if err != nil {
		return nil, unwrapErrno(err)
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	var again unix.Stat_t
	if err := unix.Fstat(fd, &again); err != nil {
		return nil, unwrapErrno(err)
	}
	if again.Dev != st.Dev || again.Ino != st.Ino {
		return nil, errRefused("replaced while read")
	}
	if why := refusal(&again, uid, max); why != "" {
		return nil, errRefused(why)
	}
	data, err := io.ReadAll(io.LimitReader(f, int64(max)+1))
	if err != nil {
		return nil, unwrapErrno(err)
	}
	if len(data) > max {
		return nil, errRefused("grew past the size limit while read")
	}
	return data, nil
}

// ownerOf returns the uid owning the directory rel below d, or -1.
func (d *dir) ownerOf(rel string) int {
	sub, err := d.open(rel)
	if err != nil {
		return -1
	}
	defer sub.close()
	var st unix.Stat_t
	if unix.Fstat(sub.fd, &st) != nil {
		return -1
	}
	return int(st.Uid)
}
