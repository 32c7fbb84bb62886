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
//	incoming/            worker:ytkeep-spool   1730  receiver creates job files
//	results/             courier:ytkeep-spool  1730  worker creates result files
//	receiver/            recv:ytkeep-courier   2710  reply.key 0640 (the courier reads it)
//	receiver/{tmp,alerts}                      recv 0700
//	worker/{tmp,claimed,quarantine,seen,final} worker 0700
//	courier/{tmp,claimed,quarantine,replies,alerts,status,history,quota} courier 0700
//
// Tree lists them with their owners and modes.
type Layout struct{ Root string }

// Incoming is where the receiver puts jobs for the worker.
func (l Layout) Incoming() string { return filepath.Join(l.Root, "incoming") }

// Results is where the worker puts results for the receiver.
func (l Layout) Results() string { return filepath.Join(l.Root, "results") }

// Receiver is the receiver's private directory.
func (l Layout) Receiver(sub string) string { return filepath.Join(l.Root, "receiver", sub) }

// Worker is the worker's private directory.
func (l Layout) Worker(sub string) string { return filepath.Join(l.Root, "worker", sub) }

// Courier is the courier's private directory, or sub in it.
func (l Layout) Courier(sub string) string { return filepath.Join(l.Root, "courier", sub) }

// Work holds the job directories: the worker makes each and lends it to
// the downloader's group for the time of its download.
func (l Layout) Work() string { return filepath.Join(l.Root, "work") }

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
	DownloaderGID          int // the downloader user's primary group
	CourierUID, CourierGID int // the courier user and its primary group
}

// Role is who a directory of the tree belongs to (an owner or a group).
type Role int

// The roles, and their names in deploy/ (sysusers.d, tmpfiles.d).
const (
	RoleRoot         Role = iota // root
	RoleReceiver                 // user ytkeep-recv
	RoleWorker                   // user ytkeep-work
	RoleSpool                    // group ytkeep-spool
	RoleMedia                    // group ytkeep-media
	RoleDownloader               // group ytkeep-dl (the downloader user's own; the worker is a member)
	RoleCourier                  // user ytkeep-courier
	RoleCourierGroup             // group ytkeep-courier (the courier user's own)
)

// Names are the deploy/ names of the roles.
var Names = map[Role]string{RoleRoot: "root", RoleReceiver: "ytkeep-recv", RoleWorker: "ytkeep-work",
	RoleSpool: "ytkeep-spool", RoleMedia: "ytkeep-media", RoleDownloader: "ytkeep-dl",
	RoleCourier: "ytkeep-courier", RoleCourierGroup: "ytkeep-courier"}

// Entry is one directory of the production tree.
type Entry struct {
	Path         string
	Mode         uint32 // raw kernel mode: 01000 sticky, 02000 setgid
	Owner, Group Role
}

// Tree is the spool tree and the downloads directory, with the owners,
// groups and modes they have in production; the security model rests on
// them (docs/confinement.md). It is the one definition: Create makes it,
// doctor checks it, and a test holds deploy/tmpfiles.d to it.
func (l Layout) Tree(downloads string) []Entry {
	t := []Entry{
		{l.Root, 0o755, RoleRoot, RoleRoot},
		{l.Incoming(), 0o1730, RoleWorker, RoleSpool},
		{l.Results(), 0o1730, RoleCourier, RoleSpool},
		// The courier may enter (not list) the receiver's directory to
		// read the reply key, 0640 with the group the setgid bit gives
		// it; every other file there is the receiver's alone (0600).
		{filepath.Join(l.Root, "receiver"), 0o2710, RoleReceiver, RoleCourierGroup},
		{filepath.Join(l.Root, "worker"), 0o700, RoleWorker, RoleSpool},
		{filepath.Join(l.Root, "courier"), 0o700, RoleCourier, RoleCourierGroup},
	}
	for _, s := range []string{"tmp", "alerts"} {
		t = append(t, Entry{l.Receiver(s), 0o700, RoleReceiver, RoleSpool})
	}
	// history/: each user's last jobs (for list and send); quota/: each
	// user's uploads of the day.
	for _, s := range []string{"tmp", "claimed", "quarantine", "replies", "alerts", "status", "history", "quota"} {
		t = append(t, Entry{l.Courier(s), 0o700, RoleCourier, RoleCourierGroup})
	}
	for _, s := range []string{"tmp", "claimed", "quarantine", "seen", "final"} {
		t = append(t, Entry{l.Worker(s), 0o700, RoleWorker, RoleSpool})
	}
	// The downloader may pass through to a job directory it is given,
	// never list them; each is lent to its group while it downloads.
	t = append(t, Entry{l.Work(), 0o2710, RoleWorker, RoleDownloader})
	return append(t, Entry{downloads, 0o2750, RoleWorker, RoleMedia})
}

// CreateSingleUser makes the tree owned by the current user with the
// production modes, for the demo and tests run without root.
func (l Layout) CreateSingleUser(downloads string) error { return l.Create(downloads, nil) }

// Create makes Tree(downloads) with the production modes and, when o is
// not nil, the production owners (else the current user's).
func (l Layout) Create(downloads string, o *Owners) error {
	ids := map[Role]int{RoleRoot: -1, RoleReceiver: -1, RoleWorker: -1, RoleSpool: -1, RoleMedia: -1, RoleDownloader: -1,
		RoleCourier: -1, RoleCourierGroup: -1}
	if o != nil {
		ids = map[Role]int{RoleRoot: 0, RoleReceiver: o.ReceiverUID, RoleWorker: o.WorkerUID, RoleSpool: o.SpoolGID,
			RoleMedia: o.MediaGID, RoleDownloader: o.DownloaderGID, RoleCourier: o.CourierUID, RoleCourierGroup: o.CourierGID}
	}
	type entry struct {
		mode     uint32
		uid, gid int
	}
	dirs := map[string]entry{}
	for _, e := range l.Tree(downloads) {
		dirs[e.Path] = entry{e.Mode, ids[e.Owner], ids[e.Group]}
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
