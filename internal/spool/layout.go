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
//	receiver/{tmp,claimed,quarantine,replies} recv 0700 (and reply.key 0600)
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

// CreateSingleUser makes the whole tree owned by the current user, with
// the production modes, for the demo and tests. Production trees are made
// by deploy/ (systemd-tmpfiles) with the real owners.
func (l Layout) CreateSingleUser(downloads string) error {
	modes := map[string]uint32{ // raw kernel modes: 01000 sticky, 02000 setgid
		l.Root:                            0o755,
		l.Incoming():                      0o1730,
		l.Results():                       0o1730,
		filepath.Join(l.Root, "receiver"): 0o700,
		filepath.Join(l.Root, "worker"):   0o700,
		downloads:                         0o2750,
	}
	for _, s := range []string{"tmp", "claimed", "quarantine", "replies"} {
		modes[l.Receiver(s)] = 0o700
	}
	for _, s := range []string{"tmp", "claimed", "quarantine", "work"} {
		modes[l.Worker(s)] = 0o700
	}
	// Parents before children: shorter paths first.
	paths := make([]string, 0, len(modes))
	for p := range modes {
		paths = append(paths, p)
	}
	sort.Slice(paths, func(i, j int) bool { return len(paths[i]) < len(paths[j]) })
	for _, p := range paths {
		if err := os.MkdirAll(p, 0o700); err != nil {
			return err
		}
		if err := unix.Chmod(p, modes[p]); err != nil {
			return err
		}
	}
	return nil
}
