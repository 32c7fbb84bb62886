package confine

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"unsafe"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// The three seccomp policies. The daemons get allowlists (anything not
// listed fails with EPERM: the library's ActionErrno default; exec,
// namespace, tracing and other kernel-surface calls kill the process);
// the downloader domain gets a deny list of calls no downloader needs,
// which kill the process so the worker sees SIGSYS.
//
// Every filter starts with a prefix of our own: a system call of another
// architecture (e.g. i386 via int 0x80) or of the x32 ABI kills the
// process, and so does socket(…, IPPROTO_MPTCP), which Landlock's TCP
// rules do not cover; socket(AF_UNIX, …) fails with EACCES. Each domain's
// filter then has guards of our own (see guards): clone with a namespace
// flag kills; socket creation is held to the families the domains use
// (AF_INET and AF_INET6 pass, AF_NETLINK fails with EAFNOSUPPORT, any
// other family kills, and so does socketpair of any family but AF_UNIX).
// Both compare only the low 32 bits of int arguments, as the kernel does,
// so junk in the upper half cannot slip past.
//
// Argument conditions are never left to go-seccomp-bpf: a condition that
// does not match leaves the argument, not the call's number, in the
// accumulator, and the groups after it compare that argument with call
// numbers. (A conditional clone rule ahead of an allowlist refused the Go
// runtime's threads with EPERM: their clone flags matched no allowed
// number.) Our guards reload the number before the policy starts, and the
// policy reloads it itself.

// Domain selects a policy.
type Domain string

// The domains.
const (
	Receiver Domain = "receiver"
	// ReceiverSocket is the receiver in Socket Mode: no listening socket,
	// so not accept4 either (nor bind or listen, which Receiver lacks).
	ReceiverSocket Domain = "receiver-socket"
	Worker         Domain = "worker"
	Downloader     Domain = "downloader"
	// Courier posts to Slack: a client's calls (ReceiverSocket's), no
	// listening socket.
	Courier Domain = "courier"
)

// goRuntime are the calls of the Go runtime and standard library seen in
// the daemons (traced with strace -f during the end-to-end test), plus
// their documented fallbacks.
var goRuntime = []string{
	"arch_prctl", "brk", "clock_gettime", "clock_nanosleep", "clone", "close", "close_range",
	"dup", "dup3", "epoll_create1", "epoll_ctl", "epoll_pwait", "epoll_pwait2", "eventfd2",
	"exit", "exit_group", "fcntl", "fstat", "futex", "getdents64", "getegid", "geteuid",
	"getgid", "getpid", "getppid", "getrandom", "getrlimit", "gettid", "getuid", "lseek",
	"madvise", "membarrier", "mincore", "mmap", "mprotect", "munmap", "nanosleep", "newfstatat",
	"openat", "pipe2", "prlimit64", "pread64", "pwrite64", "read", "readlinkat", "readv",
	"restart_syscall", "rseq", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sched_getaffinity",
	"sched_yield", "set_robust_list", "set_tid_address", "sigaltstack", "statx", "sysinfo",
	"tgkill", "uname", "write", "writev", "getcwd", "faccessat2", "timer_create", "timer_settime",
	"timer_delete", "timerfd_create", "timerfd_settime",
}

// spoolCalls are the file calls of the spool and the download store.
var spoolCalls = []string{
	"fchmod", "fchown", "fsync", "fdatasync", "inotify_add_watch", "inotify_init1", "inotify_rm_watch",
	"mkdirat", "renameat", "renameat2", "unlinkat", "copy_file_range", "sendfile", "splice", "ftruncate",
	"fchdir",
}

// netCalls are the socket calls of the receiver (server, HTTPS client,
// DNS). Not bind or listen: its one listening socket exists before the
// filter, so a compromised receiver cannot open another port (EPERM).
var netCalls = []string{
	"accept4", "connect", "getpeername", "getsockname", "getsockopt",
	"recvfrom", "recvmsg", "sendmsg", "sendto", "setsockopt", "shutdown", "socket",
}

// socketNetCalls are the receiver's socket calls in Socket Mode: a
// client's, without accept4.
var socketNetCalls = slices.DeleteFunc(slices.Clone(netCalls), func(n string) bool { return n == "accept4" })

// receiverAllowed is the receiver's allowlist in d's mode (HTTP, or
// Socket Mode without accept4), and the courier's (a client's, as Socket
// Mode's).
func receiverAllowed(d Domain) []string {
	if d == ReceiverSocket || d == Courier {
		return join(goRuntime, spoolCalls, socketNetCalls)
	}
	return join(goRuntime, spoolCalls, netCalls)
}

// workerIPC are the calls the worker uses to talk to the launcher server.
var workerIPC = []string{"recvmsg", "sendmsg", "shutdown", "getsockopt", "setsockopt"}

// execCalls start programs: the daemons never do (their children are
// started before the filter), the downloader does nothing else.
var execCalls = []string{"execve", "execveat"}

// dangerous are the calls no domain needs, which kill on sight: tracing,
// namespaces and mounts, kernel keys and modules, io_uring, BPF, setsid
// (so that the downloader's process group kill reaches every
// descendant; setpgid has a filter of its own, KeepGroup), anonymous
// memory files and System V IPC.
var dangerous = join([]string{
	"ptrace", "process_vm_readv", "process_vm_writev", "mount", "umount2",
	"unshare", "setns", "bpf", "keyctl", "add_key", "request_key", "io_uring_setup",
	"io_uring_enter", "io_uring_register", "userfaultfd", "perf_event_open", "kexec_load",
	"kexec_file_load", "init_module", "finit_module", "delete_module", "pivot_root", "chroot",
	"open_by_handle_at", "name_to_handle_at", "fanotify_init", "iopl", "ioperm", "swapon", "swapoff",
	"reboot", "acct", "quotactl", "lookup_dcookie", "vhangup", "syslog", "mount_setattr",
	"move_mount", "open_tree", "fsopen", "fsmount", "fsconfig", "fspick", "pidfd_getfd",
	"personality", "setsid",
}, memfdCalls, sysvIPC)

// memfdCalls make files that live on no mount Landlock sees: written
// with a program and run with execveat(fd, "", AT_EMPTY_PATH), a memfd
// would let the downloader execute what it wrote, which Landlock forbids
// for every directory it can write (downloader-seccomp-memfd-exec).
// Nothing the downloader runs uses them (yt-dlp, python, ffmpeg and Deno
// traced with strace -f). Should a runtime need memfd_create one day, allow
// it only with MFD_NOEXEC_SEAL (Linux 6.3), whose files cannot be executed.
var memfdCalls = []string{"memfd_create", "memfd_secret"}

// sysvIPC is System V shared memory, message queues and semaphores:
// kernel surface nothing in ytkeep or its downloads uses (python's
// multiprocessing and glibc use POSIX shared memory in /dev/shm, which
// Landlock keeps out of reach). The units add PrivateIPC=yes.
var sysvIPC = []string{
	"shmget", "shmat", "shmdt", "shmctl", "msgget", "msgsnd", "msgrcv", "msgctl",
	"semget", "semop", "semtimedop", "semctl",
}

// deadly kill the daemons on sight.
var deadly = join(execCalls, dangerous)

// downloaderDenied kill the downloader on sight: nothing yt-dlp, python
// or ffmpeg does needs them. process_vm_readv is the exception: the
// launcher server reads with it the address each of its children asks
// to connect to (the connect broker, sandbox/broker.go); the children's
// own filter (ChildJail) kills it.
var downloaderDenied = slices.DeleteFunc(slices.Clone(dangerous), func(n string) bool { return n == "process_vm_readv" })

// clone3 fails with ENOSYS, so that glibc falls back to clone, whose flags
// the filter can see (clone3 passes them in memory). With EPERM, glibc's
// pthread_create would fail in a cgo build.
var clone3 = seccomp.SyscallGroup{Action: errno(unix.ENOSYS), Names: []string{"clone3"}}

// groupCalls move a process to another process group or session, out of
// reach of the launcher's kill of a child's group (finding C2): setsid,
// which every domain's filter kills (dangerous), and setpgid, which is
// also how setpgrp is made (glibc's setpgrp, Python's os.setpgrp and
// subprocess's process_group all call setpgid(0, 0); x86_64 has no
// setpgrp call, and i386's dies in the prefix with every foreign call).
// getpgid, getpgrp and getsid only read, and stay allowed.
//
// setpgid cannot join the downloader domain's deny list: the launcher
// server runs under that filter and puts each child in a group of its
// own with setpgid, between fork and exec. So the child launcher, once
// in its group, stacks KeepGroup's filter before it executes the program.
var groupCalls = []uint32{unix.SYS_SETPGID, unix.SYS_SETSID}

// KeepGroup adds a seccomp filter, on top of the downloader's, that kills
// the process on setpgid or setsid: neither it nor anything it starts can
// leave its process group, which the launcher kills whole when the job
// ends. It kills, as the downloader's filter does setsid and every call it
// denies, so that the worker sees SIGSYS and alerts (an EPERM would be a
// quiet failure inside the download). Nothing the downloader runs calls
// them: yt-dlp's subprocess.Popen asks for neither process_group nor
// start_new_session (CPython's _posixsubprocess calls setpgid and setsid
// only when asked), and ffmpeg, ffprobe and Deno start nothing in a group
// of their own. It applies to every thread and to whatever the process
// executes.
func KeepGroup() error {
	if ablated(LayerSeccomp) {
		return nil
	}
	raw, err := keepGroupProgram()
	if err != nil {
		return err
	}
	return load("keep group", raw)
}

func keepGroupProgram() ([]bpf.RawInstruction, error) {
	kill := bpf.RetConstant{Val: uint32(seccomp.ActionKillProcess)}
	allow := bpf.RetConstant{Val: uint32(seccomp.ActionAllow)}
	own := []bpf.Instruction{bpf.LoadAbsolute{Off: offNr, Size: 4}}
	for i, nr := range groupCalls {
		// Call i jumps to the kill after the last comparison.
		own = append(own, bpf.JumpIf{Cond: bpf.JumpEqual, Val: nr, SkipTrue: uint8(len(groupCalls) - i)})
	}
	own = append(own, allow, kill)
	return bpf.Assemble(slices.Concat(prefix(), own))
}

// SeccompPolicy returns the seccomp policy of d (without the prefix).
func SeccompPolicy(d Domain) (*seccomp.Policy, error) {
	kill := seccomp.SyscallGroup{Action: seccomp.ActionKillProcess}
	switch d {
	case Receiver, ReceiverSocket, Courier:
		kill.Names = deadly
		return &seccomp.Policy{DefaultAction: seccomp.ActionErrno, Syscalls: []seccomp.SyscallGroup{
			kill,
			clone3,
			{Action: seccomp.ActionAllow, Names: receiverAllowed(d)},
		}}, nil
	case Worker:
		kill.Names = deadly
		return &seccomp.Policy{DefaultAction: seccomp.ActionErrno, Syscalls: []seccomp.SyscallGroup{
			kill,
			clone3,
			// socket is refused: the worker has no network.
			{Action: errno(unix.EACCES), Names: []string{"socket", "socketpair", "connect", "bind"}},
			{Action: seccomp.ActionAllow, Names: join(goRuntime, spoolCalls, workerIPC)},
		}}, nil
	case Downloader:
		kill.Names = downloaderDenied
		return &seccomp.Policy{DefaultAction: seccomp.ActionAllow, Syscalls: []seccomp.SyscallGroup{
			kill,
			clone3,
			// Nothing it runs serves connections, so listen fails: a
			// second layer behind Landlock's bind rules. (bind itself
			// stays allowed: glibc binds the netlink socket it asks for,
			// which the guards now refuse, and Landlock refuses TCP
			// binds.)
			{Action: errno(unix.EPERM), Names: []string{"listen"}},
		}}, nil
	}
	return nil, fmt.Errorf("unknown seccomp domain %q", d)
}

// namespaceFlags kill clone (guards). CLONE_NEWTIME shares its bit with
// clone's exit signal, which no valid signal sets: it can only reach
// unshare and clone3, which have rules of their own.
const namespaceFlags = unix.CLONE_NEWNS | unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET |
	unix.CLONE_NEWIPC | unix.CLONE_NEWUTS | unix.CLONE_NEWCGROUP | unix.CLONE_NEWTIME

func errno(e unix.Errno) seccomp.Action { return seccomp.ActionErrno | seccomp.Action(e) }

func join(lists ...[]string) []string {
	seen := map[string]bool{}
	var out []string
	for _, l := range lists {
		for _, n := range l {
			if !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
		}
	}
	return out
}

// AllowedCount returns how many system calls the allowlist of a daemon
// (Receiver or Worker) names, for the start-up log. It returns 0 for the
// Downloader, whose policy is a deny list, and for any other domain.
func AllowedCount(d Domain) int {
	switch d {
	case Receiver, ReceiverSocket, Courier:
		return len(receiverAllowed(d))
	case Worker:
		return len(join(goRuntime, spoolCalls, workerIPC))
	}
	return 0
}

const (
	auditArchX86_64 = 0xc000003e
	x32Bit          = 0x40000000
	ipprotoMPTCP    = 262
	// offsets in struct seccomp_data
	offNr   = 0
	offArch = 4
	offArg0 = 16 + 0*8 // low 32 bits on little-endian
	offArg2 = 16 + 2*8
)

// prefix is our own guard in front of every policy.
func prefix() []bpf.Instruction {
	kill := bpf.RetConstant{Val: uint32(seccomp.ActionKillProcess)}
	return []bpf.Instruction{
		bpf.LoadAbsolute{Off: offArch, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: auditArchX86_64, SkipTrue: 1},
		kill, // another architecture
		bpf.LoadAbsolute{Off: offNr, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: x32Bit, SkipFalse: 1},
		kill, // the x32 ABI
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.SYS_SOCKET, SkipFalse: 6},
		// socket(AF_UNIX, …) is refused: Landlock ABI < 9 does not restrict
		// connecting to pathname unix sockets, and no domain needs one
		// (the launcher's pair is made with socketpair before any filter).
		bpf.LoadAbsolute{Off: offArg0, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.AF_UNIX, SkipFalse: 1},
		bpf.RetConstant{Val: uint32(errno(unix.EACCES))},
		bpf.LoadAbsolute{Off: offArg2, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: ipprotoMPTCP, SkipFalse: 1},
		kill, // MPTCP escapes Landlock's TCP rules
		// fall through into the policy, which reloads what it needs
	}
}

// guards follow the prefix in every domain's filter (not in filters that
// only stack on one, such as TCPOnly's), and compare the low 32 bits of
// an argument only, as the kernel does:
//
//   - clone with any namespace flag kills, in every domain: a new user
//     namespace opens most of the kernel's unprivileged attack surface.
//     (The allowlists must allow clone itself: the Go runtime's threads;
//     so does the downloader's: its forks.)
//   - socketpair kills unless it is AF_UNIX (the only family with pairs,
//     bar AF_TIPC, a module nothing needs loaded).
//   - socket: AF_INET and AF_INET6 pass on (the prefix has refused AF_UNIX
//     and killed MPTCP); AF_NETLINK fails with EAFNOSUPPORT; any other
//     family (AF_VSOCK, AF_PACKET, AF_ALG, …) kills. Netlink is refused,
//     not killed: glibc's getaddrinfo opens a NETLINK_ROUTE socket (for
//     AI_ADDRCONFIG, and to sort a host's several addresses, as YouTube's
//     have) and goes on without it, as it does under the units'
//     RestrictAddressFamilies=, which answers the same errno.
//
// The skips are counted by hand: each jump's comment names where it lands
// (index in the list, 16 being the policy, which reloads the call's
// number); TestSeccompLayer and TestSeccompFilter exercise every branch.
func guards() []bpf.Instruction {
	kill := bpf.RetConstant{Val: uint32(seccomp.ActionKillProcess)}
	return []bpf.Instruction{
		/* 0 */ bpf.LoadAbsolute{Off: offNr, Size: 4},
		/* 1 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.SYS_CLONE, SkipFalse: 3}, // → 5
		/* 2 */ bpf.LoadAbsolute{Off: offArg0, Size: 4},
		/* 3 */ bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: namespaceFlags, SkipFalse: 12}, // → 16
		/* 4 */ kill, // a new namespace
		/* 5 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.SYS_SOCKETPAIR, SkipFalse: 3}, // → 9
		/* 6 */ bpf.LoadAbsolute{Off: offArg0, Size: 4},
		/* 7 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.AF_UNIX, SkipTrue: 8}, // → 16
		/* 8 */ kill, // a pair of any other family
		/* 9 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.SYS_SOCKET, SkipFalse: 6}, // → 16
		/* 10 */ bpf.LoadAbsolute{Off: offArg0, Size: 4},
		/* 11 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.AF_INET, SkipTrue: 4}, // → 16
		/* 12 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.AF_INET6, SkipTrue: 3}, // → 16
		/* 13 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.AF_NETLINK, SkipFalse: 1}, // → 15
		/* 14 */ bpf.RetConstant{Val: uint32(errno(unix.EAFNOSUPPORT))},
		/* 15 */ kill, // AF_VSOCK, AF_PACKET, AF_ALG, …
		// 16: fall through into the policy, which reloads what it needs
	}
}

// msgFastOpen is MSG_FASTOPEN: a send that also connects (TCP Fast Open).
const msgFastOpen = 0x20000000

// transportGuards refuse (EACCES), in every domain, what Landlock's TCP
// rules do not see:
//   - a send with MSG_FASTOPEN (sendto, sendmsg, sendmmsg), which connects
//     a TCP socket without connect(2): on Linux 6.18 that connection
//     passes no Landlock connect check, so it reaches any port;
//   - a socket of IPPROTO_SCTP or IPPROTO_SMC, stream protocols that
//     Landlock's TCP rules do not cover (MPTCP is killed by the prefix).
//
// Like guards, they compare the low 32 bits only and reload the call's
// number before the policy.
func transportGuards() []bpf.Instruction {
	refuse := bpf.RetConstant{Val: uint32(errno(unix.EACCES))}
	const offArg3 = 16 + 3*8
	return []bpf.Instruction{
		/* 0 */ bpf.LoadAbsolute{Off: offNr, Size: 4},
		/* 1 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.SYS_SENDTO, SkipFalse: 2}, // → 4
		/* 2 */ bpf.LoadAbsolute{Off: offArg3, Size: 4},
		/* 3 */ bpf.Jump{Skip: 5}, // → 9
		/* 4 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.SYS_SENDMMSG, SkipFalse: 2}, // → 7
		/* 5 */ bpf.LoadAbsolute{Off: offArg3, Size: 4},
		/* 6 */ bpf.Jump{Skip: 2}, // → 9
		/* 7 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.SYS_SENDMSG, SkipFalse: 3}, // → 11
		/* 8 */ bpf.LoadAbsolute{Off: offArg2, Size: 4},
		/* 9 */ bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: msgFastOpen, SkipFalse: 6}, // → 16
		/* 10 */ refuse,
		/* 11 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.SYS_SOCKET, SkipFalse: 4}, // → 16
		/* 12 */ bpf.LoadAbsolute{Off: offArg2, Size: 4},
		/* 13 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.IPPROTO_SCTP, SkipTrue: 1}, // → 15
		/* 14 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: ipprotoSMC, SkipFalse: 1}, // → 16
		/* 15 */ refuse,
		/* 16 */ bpf.LoadAbsolute{Off: offNr, Size: 4}, // for what follows
	}
}

// ipprotoSMC is IPPROTO_SMC (Linux 6.11): SMC over an AF_INET socket.
const ipprotoSMC = 256

// Program assembles the full filter of d.
func Program(d Domain) ([]bpf.RawInstruction, error) {
	if runtime.GOARCH != "amd64" {
		return nil, fmt.Errorf("seccomp: ytkeep's filters are written for amd64, not %s", runtime.GOARCH)
	}
	p, err := SeccompPolicy(d)
	if err != nil {
		return nil, err
	}
	body, err := p.Assemble()
	if err != nil {
		return nil, fmt.Errorf("seccomp (%s): %w", d, err)
	}
	return bpf.Assemble(slices.Concat(prefix(), guards(), transportGuards(), body))
}

// Seccomp loads the filter of d on every thread of the process (TSYNC),
// after setting no_new_privs.
func Seccomp(d Domain) error {
	if ablated(LayerSeccomp) {
		return nil
	}
	raw, err := Program(d)
	if err != nil {
		return err
	}
	// Each domain changes its own limits only (ownProcessRules): its
	// user's other processes are out of reach. First: the daemons'
	// allowlists refuse the prctl that loading sets no_new_privs with.
	own, err := ownProcessProgram()
	if err != nil {
		return err
	}
	if err := load(string(d)+" own process", own); err != nil {
		return err
	}
	return load(string(d), raw)
}

// load sets no_new_privs and installs the filter raw on every thread of
// the process (TSYNC), on top of any it has.
func load(name string, raw []bpf.RawInstruction) error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("seccomp: couldn't set no_new_privs: %w", err)
	}
	filter := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		filter[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	_, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&prog)))
	runtime.KeepAlive(filter)
	if e != 0 {
		return fmt.Errorf("seccomp (%s): %w", name, e)
	}
	return nil
}

// SeccompAvailable reports whether the kernel supports seccomp filters.
func SeccompAvailable() bool {
	err := unix.Prctl(unix.PR_GET_SECCOMP, 0, 0, 0, 0)
	return err == nil || !errors.Is(err, unix.EINVAL)
}
