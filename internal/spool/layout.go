package spool

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"golang.org/x/sys/unix"
)

// Layout names the directories under the spool root. Owners and modes in
// production (see deploy/ and the README):
//
//	incoming/            worker:ytkeep-spool 1730  receiver creates job files
//	results/             recv:ytkeep-spool   1730  worker creates result files
//	receiver/{tmp,claimed,quarantine,replies,alerts} recv 0700 (and reply.key 0600)
//	worker/{tmp,claimed,quarantine,work}     worker 0700
type Layout struct{ Root string }

// Incoming is where the receiver puts jobs for the worker.
func (l Layout) Incoming() string { return filepath.Join(l.Root, "incoming") }

// Results is where the worker puts results for the receiver.
func (l Layout) Results() string { return filepath.Join(l.Root, "results") }

// Receiver is the receiver's private directory.
func (l Layout) Receiver(sub string) string { return filepath.Join(l.Root, "receiver", sub) }

// Worker is the worker's private directory.
func (l Layout) Worker(sub string) string { return filepath.Join(l.Root, "worker", sub) }

// Owner returns the uid owning path (not following a final symlink).
func Owner(path string) (int, error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return 0, fmt.Errorf("couldn't stat %s: %w", path, err)
	}
	return int(st.Uid), nil
}

// Group returns the gid of an open directory.
func (d *Dir) Group() (int, error) {
	var st unix.Stat_t
	if err := unix.Fstat(d.fd, &st); err != nil {
		return 0, err
	}
	return int(st.Gid), nil
}

// Owners are the ids the tree belongs to in production.
type Owners struct {
	ReceiverUID, WorkerUID int
	SpoolGID, MediaGID     int
}

// CreateSingleUser makes the tree owned by the current user with the
// production modes, for the demo and tests run without root.
func (l Layout) CreateSingleUser(downloads string) error { return l.Create(downloads, nil) }

// Create makes the spool tree and the downloads directory with the
// production modes, and, when o is not nil, the production owners:
//
//	incoming  worker:spool 1730    results  receiver:spool 1730
//	receiver/ receiver 0700        worker/  worker 0700 (and their subdirs)
//	downloads worker:media 2750
func (l Layout) Create(downloads string, o *Owners) error {
	type entry struct {
		mode     uint32 // raw kernel mode: 01000 sticky, 02000 setgid
		uid, gid int
	}
	e := func(mode uint32, uid, gid int) entry { return entry{mode, uid, gid} }
	root, recv, work, spoolG, mediaG := 0, -1, -1, -1, -1
	if o != nil {
		recv, work, spoolG, mediaG = o.ReceiverUID, o.WorkerUID, o.SpoolGID, o.MediaGID
	} else {
		root = -1
	}
	dirs := map[string]entry{
		l.Root:                            e(0o755, root, root),
		l.Incoming():                      e(0o1730, work, spoolG),
		l.Results():                       e(0o1730, recv, spoolG),
		filepath.Join(l.Root, "receiver"): e(0o700, recv, recv),
		filepath.Join(l.Root, "worker"):   e(0o700, work, work),
		downloads:                         e(0o2750, work, mediaG),
	}
	for _, s := range []string{"tmp", "claimed", "quarantine", "replies", "alerts"} {
		dirs[l.Receiver(s)] = e(0o700, recv, recv)
	}
	for _, s := range []string{"tmp", "claimed", "quarantine", "work"} {
		dirs[l.Worker(s)] = e(0o700, work, work)
	}
	// Parents before children: shorter paths first.
	paths := make([]string, 0, len(dirs))
	for p := range dirs {
		paths = append(paths, p)
	}
	sort.Slice(paths, func(i, j int) bool { return len(paths[i]) < len(paths[j]) })
	for _, p := range paths {
		d := dirs[p]
		if err := os.MkdirAll(p, 0o700); err != nil {
			return err
		}
		if err := unix.Lchown(p, d.uid, d.gid); err != nil {
			return fmt.Errorf("couldn't set the owner of %s: %w", p, err)
		}
		if err := unix.Chmod(p, d.mode); err != nil { // after chown, which clears setgid
			return err
		}
	}
	return nil
}
