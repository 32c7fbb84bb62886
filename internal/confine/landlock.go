// Package confine applies the kernel confinement of a privilege domain to
// the calling process: Landlock (file system, TCP, IPC scopes), seccomp,
// and the switch to an unprivileged user. Every layer fails closed: an
// error means the caller must not go on, unless the configuration asked
// for the weakening explicitly (and then it is announced).
//
// Restrictions apply to all threads of the process and survive execve;
// they cannot be undone, so tests apply them in a subprocess.
package confine

import (
	"fmt"
	"path/filepath"
	"runtime"
	"sort"

	"github.com/landlock-lsm/go-landlock/landlock"
	llsyscall "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"
)

// MinLandlockABI is the oldest Landlock ABI ytkeep accepts: 6 adds the IPC
// scopes (signals, abstract unix sockets) to file system and TCP rules.
const MinLandlockABI = 6

// LandlockABI returns the running kernel's Landlock ABI version, or 0.
func LandlockABI() int {
	v, err := llsyscall.LandlockGetABIVersion()
	if err != nil {
		return 0
	}
	return v
}

// Rules are what a domain may reach. Paths that do not exist are skipped
// only when listed in Optional*; a missing required path is an error.
type Rules struct {
	Name string
	// ReadDirs: read files and list directories beneath (no execute).
	ReadDirs []string
	// ExecDirs: read and execute beneath.
	ExecDirs []string
	// ReadFiles: read these files.
	ReadFiles []string
	// ExecFiles: read and execute these files.
	ExecFiles []string
	// WriteDirs: read, write, create and rename beneath (writeDirRights);
	// never execute.
	WriteDirs []string
	// DropDirs: only create regular files and rename them in, the other
	// side's spool directory (no read, no list, no remove).
	DropDirs []string
	// RWFiles: read and write these files (e.g. /dev/null).
	RWFiles []string
	// FileDirs: only create regular files, write them and replace or
	// remove files in the directory (the metrics file, written to a
	// temporary file and renamed over the old one in the same
	// directory); no read, no list, no directory.
	FileDirs []string
	// Optional lists paths above that may be missing on some systems.
	Optional []string
	// ConnectTCP and BindTCP are the only TCP ports allowed.
	ConnectTCP []uint16
	BindTCP    []uint16
}

// writeDirRights are what a WriteDirs entry grants: read, write, create
// files and directories, remove, rename between them. Not execute (nothing
// runs from a writable directory), not device, socket, FIFO or symlink
// creation, not device ioctl.
const writeDirRights = llsyscall.AccessFSReadFile | llsyscall.AccessFSReadDir | llsyscall.AccessFSWriteFile |
	llsyscall.AccessFSTruncate | llsyscall.AccessFSRemoveFile | llsyscall.AccessFSRemoveDir |
	llsyscall.AccessFSMakeReg | llsyscall.AccessFSMakeDir | llsyscall.AccessFSRefer

const (
	fsReadFile = llsyscall.AccessFSReadFile
	fsReadDir  = llsyscall.AccessFSReadDir
	fsExecute  = llsyscall.AccessFSExecute
)

// Landlock restricts the calling process to p, with every file system
// right, TCP bind and connect, and the signal and abstract-unix-socket
// scopes handled. It fails if the kernel's ABI is older than
// MinLandlockABI.
func Landlock(p *Rules) error {
	if ablated(LayerLandlock) {
		return nil
	}
	if abi := LandlockABI(); abi < MinLandlockABI {
		return fmt.Errorf("landlock: kernel ABI %d, need %d or newer (Linux 6.12+)", abi, MinLandlockABI)
	}
	if err := landlock.V6.Restrict(p.rules()...); err != nil {
		return fmt.Errorf("landlock (%s): %w", p.Name, err)
	}
	return nil
}

// rules translates p into go-landlock rules.
func (p *Rules) rules() []landlock.Rule {
	optional := map[string]bool{}
	for _, o := range p.Optional {
		optional[filepath.Clean(o)] = true
	}
	var rules []landlock.Rule
	add := func(mk func(string) landlock.FSRule, paths []string) {
		for _, path := range paths {
			r := mk(path)
			if optional[filepath.Clean(path)] {
				r = r.IgnoreIfMissing()
			}
			rules = append(rules, r)
		}
	}
	access := func(a landlock.AccessFSSet) func(string) landlock.FSRule {
		return func(path string) landlock.FSRule { return landlock.PathAccess(a, path) }
	}
	add(access(fsReadFile|fsReadDir), p.ReadDirs)
	add(access(fsReadFile|fsReadDir|fsExecute), p.ExecDirs)
	add(access(fsReadFile), p.ReadFiles)
	add(access(fsReadFile|fsExecute), p.ExecFiles)
	add(access(writeDirRights), p.WriteDirs)
	add(access(llsyscall.AccessFSMakeReg|llsyscall.AccessFSRefer), p.DropDirs)
	add(access(fsReadFile|llsyscall.AccessFSWriteFile|llsyscall.AccessFSTruncate), p.RWFiles)
	add(access(llsyscall.AccessFSMakeReg|llsyscall.AccessFSWriteFile|llsyscall.AccessFSRemoveFile), p.FileDirs)
	for _, port := range p.ConnectTCP {
		rules = append(rules, landlock.ConnectTCP(port))
	}
	for _, port := range p.BindTCP {
		rules = append(rules, landlock.BindTCP(port))
	}
	return rules
}

// LandlockExec restricts only the calling thread to p and replaces the
// process with path. It is for a launcher about to exec: exec discards
// every other thread, so no all-threads mechanism is needed (with cgo,
// that mechanism lists /proc/self/task, which a confined launcher may not
// read). It returns only on failure.
func LandlockExec(p *Rules, path string, argv, env []string) error {
	if ablated(LayerLandlock) {
		return unix.Exec(path, argv, env)
	}
	if abi := LandlockABI(); abi < MinLandlockABI {
		return fmt.Errorf("landlock: kernel ABI %d, need %d or newer (Linux 6.12+)", abi, MinLandlockABI)
	}
	fd, flags, err := landlock.V6.NewRulesetFD(p.rules()...)
	if err != nil {
		return fmt.Errorf("landlock (%s): %w", p.Name, err)
	}
	defer unix.Close(fd)
	runtime.LockOSThread() // never unlocked: this thread becomes the program
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return err
	}
	if err := llsyscall.LandlockRestrictSelf(fd, flags); err != nil {
		return fmt.Errorf("landlock (%s): %w", p.Name, err)
	}
	return unix.Exec(path, argv, env)
}

// uniq sorts and de-duplicates paths.
func uniq(paths []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range paths {
		p = filepath.Clean(p)
		if p != "." && !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

// NoDump makes the process non-dumpable: its /proc files (environ, mem,
// maps…) become root's and ptrace-style access needs CAP_SYS_PTRACE, even
// for a process of the same user (the downloader runs as the worker's
// user). It also means no core dumps.
func NoDump() error {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("couldn't clear the dumpable flag: %w", err)
	}
	return nil
}

// DaemonMaxData is each daemon's RLIMIT_DATA (writable private memory):
// they need tens of MiB, and the cap turns memory exhaustion into ENOMEM
// for the daemon alone, before the unit's MemoryMax= would act.
const DaemonMaxData = 1 << 30

// UseLandlock is the one decision on Landlock, made before anything is
// confined or started: true when the kernel's ABI is enough; false (run
// without it) only when the configuration allows that; an error, fail
// closed, otherwise.
func UseLandlock(abi int, allowNoLandlock bool) (bool, error) {
	if abi >= MinLandlockABI {
		return true, nil
	}
	if !allowNoLandlock {
		return false, fmt.Errorf("landlock is not available: kernel ABI %d, need %d (Linux 6.12+); set security.insecure_no_landlock to run without it", abi, MinLandlockABI)
	}
	return false, nil
}

// Enter confines the calling process to domain d: RLIMIT_DATA, Landlock
// rules r, then the seccomp filter of d. Without Landlock it fails unless
// allowNoLandlock is set, in which case it returns a warning to announce.
func Enter(d Domain, r *Rules, allowNoLandlock bool) (warning string, err error) {
	if !ablated(LayerRlimit) {
		if err := unix.Setrlimit(unix.RLIMIT_DATA, &unix.Rlimit{Cur: DaemonMaxData, Max: DaemonMaxData}); err != nil {
			return "", fmt.Errorf("couldn't set RLIMIT_DATA: %w", err)
		}
	}
	// no_new_privs on its own, not only as seccomp's precondition: it
	// must hold (setuid programs gain nothing) even without the filter.
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return "", fmt.Errorf("couldn't set no_new_privs: %w", err)
	}
	if err := NoDump(); err != nil {
		return "", err
	}
	abi := LandlockABI()
	use, err := UseLandlock(abi, allowNoLandlock)
	if err != nil {
		return "", err
	}
	if !use {
		warning = fmt.Sprintf("INSECURE: %s runs WITHOUT Landlock (kernel ABI %d): no file system or network confinement, for it and anything it starts", d, abi)
	} else if err := Landlock(r); err != nil { // (a no-op when ablated)
		return "", err
	}
	if err := Seccomp(d); err != nil {
		return warning, err
	}
	return warning, nil
}
