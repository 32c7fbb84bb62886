package confine

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Identity is a Unix user to run as.
type Identity struct {
	UID, GID int
	Groups   []int // supplementary groups
}

// ResolveIdentity turns configured names or numbers into ids. An empty
// group means the user's primary group; nil groups means the user's
// supplementary groups from /etc/group (none for a numeric user).
func ResolveIdentity(userName, groupName string, groups []string) (*Identity, error) {
	id := &Identity{GID: -1}
	var u *user.User
	if n, err := strconv.Atoi(userName); err == nil && n >= 0 {
		id.UID = n
		u, _ = user.LookupId(userName)
	} else {
		if u, err = user.Lookup(userName); err != nil {
			return nil, fmt.Errorf("unknown user %q: %w", userName, err)
		}
		id.UID, _ = strconv.Atoi(u.Uid)
	}
	switch {
	case groupName != "":
		g, err := resolveGroup(groupName)
		if err != nil {
			return nil, err
		}
		id.GID = g
	case u != nil:
		id.GID, _ = strconv.Atoi(u.Gid)
	default:
		return nil, fmt.Errorf("user %q has no passwd entry: set its group", userName)
	}
	if groups != nil {
		for _, g := range groups {
			n, err := resolveGroup(g)
			if err != nil {
				return nil, err
			}
			id.Groups = append(id.Groups, n)
		}
	} else if u != nil {
		gids, err := u.GroupIds()
		if err == nil {
			for _, g := range gids {
				if n, err := strconv.Atoi(g); err == nil && n != id.GID {
					id.Groups = append(id.Groups, n)
				}
			}
		}
	}
	if id.UID == 0 || id.GID == 0 || slices.Contains(id.Groups, 0) {
		return nil, errors.New("refusing to run as root or with the root group")
	}
	return id, nil
}

func resolveGroup(name string) (int, error) {
	if n, err := strconv.Atoi(name); err == nil && n >= 0 {
		return n, nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, fmt.Errorf("unknown group %q: %w", name, err)
	}
	return strconv.Atoi(g.Gid)
}

// BecomeConfigured resolves a configured user (empty: none configured) and
// calls BecomeUser with it. When it switched from root to that dedicated
// user, it also caps the user's processes at maxProcs (RLIMIT_NPROC):
// seccomp kills a daemon's children at exec, but each stays a zombie the
// daemon never reaps, and nothing else would bound them outside systemd's
// TasksMax. (Without the switch the limit would count every process of
// the account it runs as, so it is left to TasksMax.)
func BecomeConfigured(userName, groupName string, groups []string, maxProcs uint64) error {
	if ablated(LayerDAC) {
		return nil // stays whoever started it, root included
	}
	var id *Identity
	if userName != "" {
		var err error
		if id, err = ResolveIdentity(userName, groupName, groups); err != nil {
			return err
		}
	}
	wasRoot := os.Geteuid() == 0
	if err := BecomeUser(id); err != nil {
		return err
	}
	if wasRoot && maxProcs > 0 && !ablated(LayerRlimit) {
		if err := syscall.Setrlimit(unix.RLIMIT_NPROC, &syscall.Rlimit{Cur: maxProcs, Max: maxProcs}); err != nil {
			return fmt.Errorf("couldn't set RLIMIT_NPROC: %w", err)
		}
	}
	return nil
}

// BecomeUser switches every thread of the process to id, for good. It is
// called as root, before any untrusted input is read. When not root it
// only checks that the process already runs as id (or, with id nil, that
// it does not run as root).
func BecomeUser(id *Identity) error {
	if os.Geteuid() != 0 {
		if id != nil && (os.Getuid() != id.UID || os.Getgid() != id.GID) {
			return fmt.Errorf("configured to run as uid %d gid %d, but running as uid %d gid %d", id.UID, id.GID, os.Getuid(), os.Getgid())
		}
		return nil
	}
	if id == nil {
		return errors.New("refusing to run as root: configure the user to run as (see the README)")
	}
	groups := id.Groups
	if groups == nil {
		groups = []int{}
	}
	// The syscall package applies these to every thread (Go 1.16+).
	// golang.org/x/sys/unix.Setgroups does not: it changes only the
	// calling thread, leaving root's groups on the others.
	if err := syscall.Setgroups(groups); err != nil {
		return fmt.Errorf("couldn't set groups: %w", err)
	}
	if err := syscall.Setresgid(id.GID, id.GID, id.GID); err != nil {
		return fmt.Errorf("couldn't set gid: %w", err)
	}
	if err := syscall.Setresuid(id.UID, id.UID, id.UID); err != nil {
		return fmt.Errorf("couldn't set uid: %w", err)
	}
	if syscall.Setresuid(0, 0, 0) == nil || os.Geteuid() == 0 || os.Getegid() == 0 {
		return errors.New("privileges could be regained after the switch")
	}
	return CheckThreads(id)
}

// CheckThreads verifies, in /proc/self/task, that every thread of the
// process has exactly id's uids, gids and groups.
func CheckThreads(id *Identity) error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return fmt.Errorf("couldn't list threads: %w", err)
	}
	want := map[string]string{
		"Uid:":    fmt.Sprintf("%d\t%d\t%d\t%d", id.UID, id.UID, id.UID, id.UID),
		"Gid:":    fmt.Sprintf("%d\t%d\t%d\t%d", id.GID, id.GID, id.GID, id.GID),
		"Groups:": groupsLine(id.Groups),
	}
	for _, t := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + t.Name() + "/status")
		if err != nil {
			continue // the thread exited
		}
		for _, line := range strings.Split(string(b), "\n") {
			k, v, _ := strings.Cut(line, "\t")
			if w, ok := want[k]; ok && strings.TrimSpace(v) != w {
				return fmt.Errorf("thread %s still has %s %s (want %s)", t.Name(), k, strings.TrimSpace(v), w)
			}
		}
	}
	return nil
}

func groupsLine(groups []int) string {
	g := slices.Clone(groups)
	slices.Sort(g)
	g = slices.Compact(g)
	parts := make([]string, len(g))
	for i, n := range g {
		parts[i] = strconv.Itoa(n)
	}
	return strings.Join(parts, " ")
}
