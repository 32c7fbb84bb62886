package sandbox

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
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
//
// It holds at most tidyMaxDepth+1 descriptors, however deep the tree: a
// directory found below that depth is moved up to the top (a rename in
// the same file system) and emptied in a later pass, so that a download
// cannot leave a tree too deep to remove (thousands of levels, built
// within the disk walk's bounds and then joined into one chain).
func tidy(dir *os.File) error {
	top, err := unix.Openat(int(dir.Fd()), ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(top)
	t := &tidier{top: top}
	// Each pass empties what it can reach and moves the rest up; a tree
	// of n directories needs at most n/tidyMaxDepth+1 passes.
	for pass := 0; ; pass++ {
		t.moved = 0
		if err := t.dir(top, 0); err != nil {
			return err
		}
		if t.moved == 0 {
			break
		}
		if pass > tidyMaxPasses {
			return errors.New("tidying the job directory: it keeps growing")
		}
	}
	if t.errs > 0 {
		return fmt.Errorf("tidying the job directory: %d entries could not be removed, first: %w", t.errs, t.first)
	}
	return nil
}

const (
	tidyMaxDepth  = 32
	tidyMaxPasses = 1 << 16
)

type tidier struct {
	top         int
	moved, errs int
	first       error
	next        int // for the names of moved directories
}

func (t *tidier) keep(err error) {
	if err != nil {
		if t.errs == 0 {
			t.first = err
		}
		t.errs++
	}
}

// dir empties the directory fd, depth levels below the top (where it
// keeps regular files, made group-readable, and directories it moved up
// for the next pass are emptied as any other).
func (t *tidier) dir(fd int, depth int) error {
	// A descriptor of our own to read with: fd stays usable for *at calls.
	rfd, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	d := os.NewFile(uintptr(rfd), "dir")
	defer d.Close()
	for {
		names, err := d.Readdirnames(256)
		for _, name := range names {
			var st unix.Stat_t
			if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				t.keep(err)
				continue
			}
			switch st.Mode & unix.S_IFMT {
			case unix.S_IFREG:
				if depth == 0 {
					t.keep(chmodNoFollow(fd, name, 0o640))
				} else {
					t.keep(unix.Unlinkat(fd, name, 0))
				}
			case unix.S_IFDIR:
				// Ours: make it ours to empty, whatever mode was left.
				if err := chmodNoFollow(fd, name, 0o700); err != nil {
					t.keep(err)
					continue
				}
				if depth >= tidyMaxDepth {
					// Too deep to hold another descriptor: up to the top,
					// for the next pass.
					if err := t.moveUp(fd, name); err != nil {
						t.keep(err)
						continue
					}
					t.moved++
					continue
				}
				sub, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
				if err != nil {
					t.keep(err)
					continue
				}
				err = t.dir(sub, depth+1)
				unix.Close(sub)
				if err != nil {
					t.keep(err)
					continue
				}
				if err := unix.Unlinkat(fd, name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOTEMPTY) {
					t.keep(err)
				}
			default:
				t.keep(unix.Unlinkat(fd, name, 0))
			}
		}
		if err == io.EOF || (err == nil && len(names) == 0) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// moveUp renames directory name of fd to the top, under a name no entry
// there has (the download may have made any).
func (t *tidier) moveUp(fd int, name string) error {
	for {
		t.next++
		err := unix.Renameat2(fd, name, t.top, ".tidy-"+strconv.Itoa(t.next), unix.RENAME_NOREPLACE)
		if !errors.Is(err, unix.EEXIST) {
			return err
		}
	}
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
