// Package spool moves records between privilege domains through directories,
// following Postfix's and Maildir's rules. It is the trust boundary for files
// written by the other side.
//
// An Outbox writes into a directory the writer can create in but not list
// (mode 1730, owned by the reader). An Inbox claims files from such a
// directory into a private one and reads them as hostile: no symlinks, no
// FIFOs or devices, one link, the expected owner, a size cap. Anything that
// fails is moved to a quarantine directory and reported; it never stops the
// reader.
//
// All operations are relative to directory file descriptors opened once at
// start, so renaming or replacing a directory path later does not redirect
// them. Methods are safe for concurrent use.
package spool

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Dir is an open directory, used by file descriptor.
type Dir struct {
	fd   int
	path string
	gc   groupCommit
	// writeOnly: we may create entries but not read the directory (a
	// shared spool directory of mode 1730 seen by the writer). fd is then
	// an O_PATH handle, which cannot be fsynced.
	writeOnly bool
}

// OpenDir opens path, which must be a directory and not a symlink. A
// directory we may write but not read (the other side's spool directory)
// is opened write-only.
func OpenDir(path string) (*Dir, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.EACCES) {
		fd, err = unix.Open(path, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err == nil {
			return &Dir{fd: fd, path: path, writeOnly: true}, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("couldn't open directory %s: %w", path, err)
	}
	return &Dir{fd: fd, path: path}, nil
}

// FD returns the directory's descriptor, for *at system calls. It stays
// owned by d.
func (d *Dir) FD() int { return d.fd }

// Path returns the path the directory was opened by, for messages.
func (d *Dir) Path() string { return d.path }

// Close closes the directory descriptor.
func (d *Dir) Close() error { return unix.Close(d.fd) }

// Sync returns once every change made to the directory's entries before
// the call is on disk. Concurrent callers share one fsync (group commit):
// a caller waits for an fsync that started after it called, and one caller
// performs it for all who wait.
func (d *Dir) Sync() error {
	if d.writeOnly {
		return fmt.Errorf("couldn't sync %s: opened write-only", d.path)
	}
	return d.gc.sync(d.fd)
}

type groupCommit struct {
	mu      sync.Mutex
	cond    sync.Cond
	started uint64 // fsyncs started
	done    uint64 // highest fsync finished
	running bool
	err     error // result of the fsync numbered done
}

func (g *groupCommit) sync(fd int) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cond.L == nil {
		g.cond.L = &g.mu
	}
	// A running fsync may have started before our change: we need the
	// next one.
	target := g.started + 1
	for g.done < target {
		if g.running {
			g.cond.Wait()
			continue
		}
		g.running = true
		g.started++
		n := g.started
		g.mu.Unlock()
		err := unix.Fsync(fd)
		g.mu.Lock()
		g.running = false
		g.done, g.err = n, err
		g.cond.Broadcast()
	}
	return g.err
}

// Names lists the entries of the directory, excluding dot-files.
func (d *Dir) Names() ([]string, error) {
	fd, err := unix.Openat(d.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("couldn't list %s: %w", d.path, err)
	}
	f := os.NewFile(uintptr(fd), d.path)
	defer f.Close()
	all, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("couldn't list %s: %w", d.path, err)
	}
	names := all[:0]
	for _, n := range all {
		if n != "" && n[0] != '.' {
			names = append(names, n)
		}
	}
	return names, nil
}

// Remove unlinks name from the directory.
func (d *Dir) Remove(name string) error {
	if err := unix.Unlinkat(d.fd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("couldn't remove %s/%s: %w", d.path, name, err)
	}
	return nil
}

// Rename moves name to dst/newname, refusing to replace an existing entry.
func (d *Dir) Rename(name string, dst *Dir, newname string) error {
	return unix.Renameat2(d.fd, name, dst.fd, newname, unix.RENAME_NOREPLACE)
}

// Replace moves name to dst/newname, replacing any existing entry.
func (d *Dir) Replace(name string, dst *Dir, newname string) error {
	return unix.Renameat(d.fd, name, dst.fd, newname)
}

// validName refuses names that are not a single plain path element.
func validName(name string) bool {
	if name == "" || name == "." || name == ".." || len(name) > 200 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c == '/' || c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

// WriteFile durably creates name in d with the given bytes and mode:
//
//  1. create a temporary file in tmp with O_CREAT|O_EXCL|O_NOFOLLOW,
//  2. write the bytes and fsync the file,
//  3. rename it to d/name (RENAME_NOREPLACE unless replace is set),
//  4. fsync d so the new entry survives a crash; if d is write-only to us
//     (the other side's 1730 spool directory, which we cannot open to
//     fsync), fsync the renamed file instead: on journaling file systems
//     (ext4, xfs) the rename dirtied the inode, so this commits the
//     transaction that holds the new entry.
//
// tmp must be on the same file system as d and writable only by the caller.
// If gid >= 0 the file's group is set to gid before it becomes visible.
func WriteFile(tmp, d *Dir, name string, data []byte, mode uint32, gid int, replace bool) error {
	if !validName(name) {
		return fmt.Errorf("couldn't write %q: invalid file name", name)
	}
	tmpName := fmt.Sprintf(".%s.%d.%d.tmp", name, os.Getpid(), tmpSeq.Add(1))
	fd, err := unix.Openat(tmp.fd, tmpName, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, mode)
	if err != nil {
		return fmt.Errorf("couldn't create %s/%s: %w", tmp.path, tmpName, err)
	}
	f := os.NewFile(uintptr(fd), tmpName)
	defer f.Close()
	committed := false
	defer func() {
		if !committed {
			unix.Unlinkat(tmp.fd, tmpName, 0)
		}
	}()
	if err := writeAll(f, data, mode, gid); err != nil {
		return fmt.Errorf("couldn't write %s/%s: %w", tmp.path, tmpName, err)
	}
	if replace {
		err = tmp.Replace(tmpName, d, name)
	} else {
		err = tmp.Rename(tmpName, d, name)
	}
	if err != nil {
		return fmt.Errorf("couldn't commit %s/%s: %w", d.path, name, err)
	}
	committed = true
	if d.writeOnly {
		err = f.Sync()
	} else {
		err = d.Sync()
	}
	if err != nil {
		return fmt.Errorf("couldn't sync %s/%s: %w", d.path, name, err)
	}
	return nil
}

var tmpSeq atomic.Uint64

// SetGroup gives f the group gid, as read from the directory that is to
// hold it. A file created in a setgid directory has that group already,
// and then nothing is changed: under systemd's PrivateUsers= a group other
// than the unit's own shows as the overflow group, which chown refuses
// (EINVAL) although the kernel gave the file the right group.
func SetGroup(f *os.File, gid int) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return err
	}
	if int(st.Gid) == gid {
		return nil
	}
	return f.Chown(-1, gid)
}

func writeAll(f *os.File, data []byte, mode uint32, gid int) error {
	if gid >= 0 {
		if err := SetGroup(f, gid); err != nil {
			return err
		}
	}
	// The umask may have narrowed the mode at creation; set it exactly.
	if err := f.Chmod(os.FileMode(mode)); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	return f.Sync()
}

// ReadFile reads name from d, which the caller alone can write to, with
// the hostile-file checks of Inbox, and no owner check when uid < 0.
func ReadFile(d *Dir, name string, uid, maxSize int) ([]byte, error) {
	if !validName(name) {
		return nil, &HostileError{Name: name, Reason: "invalid name"}
	}
	// lstat first: never open a device or FIFO, whose open can have effects.
	var st unix.Stat_t
	if err := unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return nil, err
	}
	if err := checkStat(name, &st, uid, maxSize); err != nil {
		return nil, err
	}
	fd, err := unix.Openat(d.fd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, &HostileError{Name: name, Reason: "symlink"}
		}
		return nil, err
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	// Check again on the open descriptor: this is the file we read.
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, err
	}
	if err := checkStat(name, &st, uid, maxSize); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(f, int64(maxSize)+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxSize {
		return nil, &HostileError{Name: name, Reason: "grew past the size limit while read"}
	}
	return data, nil
}

func checkStat(name string, st *unix.Stat_t, uid, maxSize int) error {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
	case unix.S_IFLNK:
		return &HostileError{Name: name, Reason: "symlink"}
	case unix.S_IFIFO:
		return &HostileError{Name: name, Reason: "FIFO"}
	case unix.S_IFDIR:
		return &HostileError{Name: name, Reason: "directory"}
	default:
		return &HostileError{Name: name, Reason: "device or socket"}
	}
	if st.Nlink != 1 {
		return &HostileError{Name: name, Reason: "hard link count " + strconv.FormatUint(uint64(st.Nlink), 10)}
	}
	if uid >= 0 && int(st.Uid) != uid {
		return &HostileError{Name: name, Reason: fmt.Sprintf("owned by uid %d, want %d", st.Uid, uid)}
	}
	if st.Size > int64(maxSize) {
		return &HostileError{Name: name, Reason: fmt.Sprintf("size %d over the %d-byte limit", st.Size, maxSize)}
	}
	if st.Mode&(unix.S_ISUID|unix.S_ISGID) != 0 {
		return &HostileError{Name: name, Reason: "setuid or setgid bit"}
	}
	return nil
}

// HostileError reports a spool file that no honest writer produces.
type HostileError struct {
	Name   string
	Reason string
}

func (e *HostileError) Error() string {
	return fmt.Sprintf("hostile spool file %q: %s", e.Name, e.Reason)
}

// Outbox writes records into a directory another domain reads.
type Outbox struct {
	Tmp *Dir // private temporary directory on the same file system
	Dst *Dir // the shared directory (mode 1730, owned by the reader)
	GID int  // group given to new files, or -1
	// Mode of new files: 0640 when 0 (the reader is in the group). A
	// reader outside the group needs 0644: the shared directory's mode
	// (no access for others) still keeps everyone else out.
	Mode uint32
}

// Put durably writes data as name. It fails if name exists: a record is
// never overwritten. Put returns only once the record survives a crash.
func (o *Outbox) Put(name string, data []byte) error {
	mode := o.Mode
	if mode == 0 {
		mode = 0o640
	}
	return WriteFile(o.Tmp, o.Dst, name, data, mode, o.GID, false)
}

// Inbox claims records from a shared directory.
type Inbox struct {
	In          *Dir // shared directory other domains create files in
	Claimed     *Dir // private: claimed records
	Quarantined *Dir // private: refused files, kept for the incident
	UID         int  // expected owner of records, or -1 for any
	MaxSize     int
}

// ErrGone is returned by Claim when the name no longer exists, usually
// because it was claimed already after a second notification.
var ErrGone = errors.New("spool file is gone")

// Claim moves name from In to Claimed under the name claimedAs and returns
// its bytes. A file that fails the hostile-file checks is moved to
// Quarantine and a *HostileError returned. The caller validates the bytes
// and, if they do not parse, calls Quarantine itself.
func (b *Inbox) Claim(name, claimedAs string) ([]byte, error) {
	if !validName(name) || !validName(claimedAs) {
		b.quarantineFrom(b.In, name)
		return nil, &HostileError{Name: name, Reason: "invalid name"}
	}
	// After this rename the file is in a directory only we can write, so
	// nobody can swap it between our checks and our read.
	if err := b.In.Rename(name, b.Claimed, claimedAs); err != nil {
		switch {
		case errors.Is(err, unix.ENOENT):
			return nil, ErrGone
		case errors.Is(err, unix.EEXIST):
			// A second file for a record we hold already: a replay.
			b.quarantineFrom(b.In, name)
			return nil, &HostileError{Name: name, Reason: "duplicate of a claimed record"}
		}
		return nil, fmt.Errorf("couldn't claim %s: %w", name, err)
	}
	if err := b.Claimed.Sync(); err != nil {
		return nil, fmt.Errorf("couldn't claim %s: %w", name, err)
	}
	data, err := ReadFile(b.Claimed, claimedAs, b.UID, b.MaxSize)
	if err != nil {
		b.quarantineFrom(b.Claimed, claimedAs)
		var he *HostileError
		if errors.As(err, &he) {
			he.Name = name
			return nil, he
		}
		return nil, fmt.Errorf("couldn't read claimed %s: %w", name, err)
	}
	return data, nil
}

// Reject moves name from In straight to Quarantine, for files whose name
// alone shows they are not records. It returns the quarantine name.
func (b *Inbox) Reject(name string) string {
	return b.quarantineFrom(b.In, name)
}

// Quarantine moves a claimed record aside. It returns the quarantine name.
func (b *Inbox) Quarantine(claimedAs string) string {
	return b.quarantineFrom(b.Claimed, claimedAs)
}

func (b *Inbox) quarantineFrom(d *Dir, name string) string {
	q := fmt.Sprintf("%d.%d.%s", time.Now().UnixNano(), tmpSeq.Add(1), sanitizeName(name))
	if err := d.Rename(name, b.Quarantined, q); err != nil {
		// Could not move it (e.g. a directory we may not reparent): try to
		// delete it so it cannot be retried forever; it is reported anyway.
		unix.Unlinkat(d.fd, name, 0)
		return ""
	}
	b.Quarantined.Sync()
	return q
}

func sanitizeName(name string) string {
	b := []byte(name)
	if len(b) > 64 {
		b = b[:64]
	}
	for i, c := range b {
		if c < 0x21 || c > 0x7e || c == '/' {
			b[i] = '_'
		}
	}
	return string(b)
}
