package confine

import (
	"fmt"
	"slices"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// A download child's second layer behind Landlock for what it does to
// files and to its launcher server. Landlock already refuses each of
// these; the filter refuses them again by the call's number and its
// value arguments, so that a Landlock that is missing, misconfigured or
// bypassed still leaves them refused (the breach suite's ablation shows
// both layers):
//
//   - mknod and mknodat (a FIFO or a device node in the job directory:
//     breach B23). Nothing a download runs makes a node.
//   - symlink, symlinkat, link and linkat (a link in the job directory to
//     a file outside it: B21). yt-dlp renames its parts into place and
//     ffmpeg writes files; neither links.
//   - an execute bit on a file: chmod, fchmod, fchmodat and fchmodat2
//     with a mode that has one, and creat, open and openat that create a
//     file (O_CREAT, O_TMPFILE) with one. What a download writes can then
//     never be executed (the kernel's DAC check wants an execute bit, even
//     for root), so a program dropped in the job directory does not run
//     (B30). Python opens its files 0666 and ffmpeg 0666; yt-dlp never
//     changes a mode. Directories are made with mkdir, which stays
//     allowed: a directory is searched, not executed. Extended
//     attributes are refused too (setxattr and its kin answer EOPNOTSUPP,
//     which Python's copy of metadata ignores): an access ACL
//     (system.posix_acl_access) would grant execution as a chmod does.
//     openat2, whose mode is in memory the filter cannot read, answers
//     ENOSYS, so that a library falls back to openat.
//   - a signal to the launcher server (B52): kill, tgkill,
//     rt_sigqueueinfo and rt_tgsigqueueinfo naming its pid, kill of its
//     process group or of every process (-1), pidfd_open of its pid;
//     tkill and pidfd_send_signal always (glibc signals with tgkill, and
//     nothing a download runs signals through a pidfd, which a process
//     can also get by opening /proc/PID); a descriptor's owner (who gets
//     its SIGIO) set to anyone with F_SETOWN, F_SETOWN_EX, FIOSETOWN or
//     SIOCSPGRP, and F_SETSIG. A thread id of the server's signals it as
//     its pid does, and the filter cannot know them all: kill and
//     rt_sigqueueinfo naming one are the connect broker's to refuse
//     (sandbox/broker.go), behind Landlock's signal scope.
//   - another process's resource limits, priority and scheduling
//     (prlimit64, setpriority, sched_set*, ioprio_set with a pid or a
//     user): the kernel allows them between processes of one user, and
//     RLIMIT_CPU or RLIMIT_NOFILE cut on the server would end or starve
//     it. Each is allowed for the caller itself only.
//   - bind: nothing a download runs binds, and a bound unix socket would
//     leave a socket node in the job directory.
//   - process_vm_readv kills, as the downloader's filter kills it in the
//     daemons: that filter allows it for the launcher server, which reads
//     the address of each connect its children make (the connect broker,
//     sandbox/broker.go); the children never need it.
//
// The rest is refused with EPERM (EOPNOTSUPP, ENOSYS where said), not
// killed: the refusals are ones a program can meet in normal life (a
// file system without links, a mode the umask clears), and the worker
// still sees the download fail.

// jailRule refuses (or otherwise answers) one system call when all of
// its argument conditions hold.
type jailRule struct {
	nr     uint32
	conds  []argCond
	action uint32
}

// argCond holds when the low 32 bits of argument arg are equal to val
// (mask zero) or share a set bit with mask.
type argCond struct {
	arg  int
	val  uint32
	mask uint32
}

func eq(arg int, v uint32) argCond   { return argCond{arg: arg, val: v} }
func bits(arg int, m uint32) argCond { return argCond{arg: arg, mask: m} }

// execBits are the mode bits that would let a file be executed.
const execBits = 0o111

// oTmpfile is the bit of O_TMPFILE that is not O_DIRECTORY.
const oTmpfile = unix.O_TMPFILE &^ unix.O_DIRECTORY

// ioprioWhoProcess is IOPRIO_WHO_PROCESS (linux/ioprio.h).
const ioprioWhoProcess = 1

// fioSetown is FIOSETOWN (asm-generic/sockios.h), which x/sys/unix does
// not define.
const fioSetown = 0x8901

// sysFchmodat2 is fchmodat2 (Linux 6.6), sysSetxattrat setxattrat (6.13).
const (
	sysFchmodat2  = 452
	sysSetxattrat = 463
)

// JailParams are what the child jail's filter needs to know of its
// launcher server.
type JailParams struct {
	ServerPID  int // the server's process id (the child's parent)
	ServerPGID int // the server's process group
}

func jailRules(p JailParams) []jailRule {
	perm := uint32(errno(unix.EPERM))
	notsup := uint32(errno(unix.EOPNOTSUPP))
	enosys := uint32(errno(unix.ENOSYS))
	server := uint32(int32(p.ServerPID))
	var rules []jailRule
	always := func(action uint32, nrs ...uint32) {
		for _, nr := range nrs {
			rules = append(rules, jailRule{nr: nr, action: action})
		}
	}
	always(perm, unix.SYS_MKNOD, unix.SYS_MKNODAT, unix.SYS_SYMLINK, unix.SYS_SYMLINKAT, unix.SYS_LINK, unix.SYS_LINKAT)
	always(notsup, unix.SYS_SETXATTR, unix.SYS_LSETXATTR, unix.SYS_FSETXATTR, sysSetxattrat)
	always(enosys, unix.SYS_OPENAT2)
	// An execute bit: the mode's argument, and for the opens the flags'.
	rules = append(rules,
		jailRule{nr: unix.SYS_CHMOD, conds: []argCond{bits(1, execBits)}, action: perm},
		jailRule{nr: unix.SYS_FCHMOD, conds: []argCond{bits(1, execBits)}, action: perm},
		jailRule{nr: unix.SYS_FCHMODAT, conds: []argCond{bits(2, execBits)}, action: perm},
		jailRule{nr: sysFchmodat2, conds: []argCond{bits(2, execBits)}, action: perm},
		jailRule{nr: unix.SYS_CREAT, conds: []argCond{bits(1, execBits)}, action: perm},
	)
	for _, create := range []uint32{unix.O_CREAT, oTmpfile} {
		rules = append(rules,
			jailRule{nr: unix.SYS_OPEN, conds: []argCond{bits(1, create), bits(2, execBits)}, action: perm},
			jailRule{nr: unix.SYS_OPENAT, conds: []argCond{bits(2, create), bits(3, execBits)}, action: perm},
		)
	}
	// Signals to the server.
	for _, pid := range []uint32{server, uint32(int32(-p.ServerPGID)), ^uint32(0)} {
		rules = append(rules, jailRule{nr: unix.SYS_KILL, conds: []argCond{eq(0, pid)}, action: perm})
	}
	for _, nr := range []uint32{unix.SYS_TGKILL, unix.SYS_RT_SIGQUEUEINFO, unix.SYS_RT_TGSIGQUEUEINFO, unix.SYS_PIDFD_OPEN} {
		rules = append(rules, jailRule{nr: nr, conds: []argCond{eq(0, server)}, action: perm})
	}
	always(perm, unix.SYS_TKILL, unix.SYS_PIDFD_SEND_SIGNAL)
	// SIGIO and SIGURG (or any signal, with F_SETSIG) sent to a
	// descriptor's owner: no owner but none (0) may be set, since a
	// thread id of the server's would do (F_SETOWN), nor one through
	// memory the filter cannot read (F_SETOWN_EX, ioctl FIOSETOWN and
	// SIOCSPGRP), nor the signal. Nothing a download runs uses SIGIO.
	rules = append(rules,
		jailRule{nr: unix.SYS_FCNTL, conds: []argCond{eq(1, unix.F_SETOWN), eq(2, 0)}, action: uint32(seccomp.ActionAllow)},
		jailRule{nr: unix.SYS_FCNTL, conds: []argCond{eq(1, unix.F_SETOWN)}, action: perm},
		jailRule{nr: unix.SYS_FCNTL, conds: []argCond{eq(1, unix.F_SETSIG)}, action: perm},
		jailRule{nr: unix.SYS_FCNTL, conds: []argCond{eq(1, unix.F_SETOWN_EX)}, action: perm},
		jailRule{nr: unix.SYS_IOCTL, conds: []argCond{eq(1, fioSetown)}, action: perm},
		jailRule{nr: unix.SYS_IOCTL, conds: []argCond{eq(1, unix.SIOCSPGRP)}, action: perm},
	)
	rules = append(rules, ownProcessRules()...)
	// Nothing a download runs binds an address: a socket node in the job
	// directory (bind of a unix socket) is refused too, as FIFOs are.
	always(perm, unix.SYS_BIND)
	always(uint32(seccomp.ActionKillProcess), unix.SYS_PROCESS_VM_READV)
	return rules
}

// ownProcessRules refuse changing another process's limits, priority or
// scheduling, which the kernel allows between processes of one user:
// each call is allowed for the caller itself (0) only. A limit cut on a
// daemon or the launcher server (RLIMIT_CPU, RLIMIT_NOFILE) would end or
// starve it; PRIO_USER and IOPRIO_WHO_USER reach every process of the
// user. (Reading another's limits, prlimit64 without new ones, is
// refused too: nothing needs it.)
func ownProcessRules() []jailRule {
	perm := uint32(errno(unix.EPERM))
	allowed := uint32(seccomp.ActionAllow)
	var rules []jailRule
	for _, nr := range []uint32{unix.SYS_PRLIMIT64, unix.SYS_SCHED_SETAFFINITY, unix.SYS_SCHED_SETSCHEDULER, unix.SYS_SCHED_SETPARAM, unix.SYS_SCHED_SETATTR} {
		rules = append(rules, jailRule{nr: nr, conds: []argCond{eq(0, 0)}, action: allowed}, jailRule{nr: nr, action: perm})
	}
	return append(rules,
		jailRule{nr: unix.SYS_SETPRIORITY, conds: []argCond{eq(0, unix.PRIO_PROCESS), eq(1, 0)}, action: allowed},
		jailRule{nr: unix.SYS_SETPRIORITY, action: perm},
		jailRule{nr: unix.SYS_IOPRIO_SET, conds: []argCond{eq(0, ioprioWhoProcess), eq(1, 0)}, action: allowed},
		jailRule{nr: unix.SYS_IOPRIO_SET, action: perm},
	)
}

func ownProcessProgram() ([]bpf.RawInstruction, error) {
	return bpf.Assemble(slices.Concat(prefix(), compileRules(ownProcessRules())))
}

// compileRules assembles rules, each a block that reloads the call's
// number, and allows what no rule matches.
func compileRules(rules []jailRule) []bpf.Instruction {
	var out []bpf.Instruction
	for _, r := range rules {
		n := 2 + 2*len(r.conds) + 1 // load nr, compare, 2 per condition, return
		block := []bpf.Instruction{
			bpf.LoadAbsolute{Off: offNr, Size: 4},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: r.nr, SkipFalse: uint8(n - 2)},
		}
		for _, c := range r.conds {
			block = append(block, bpf.LoadAbsolute{Off: uint32(16 + 8*c.arg), Size: 4})
			at := len(block) // this jump's index; a miss skips to the next block
			if c.mask != 0 {
				block = append(block, bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: c.mask, SkipFalse: uint8(n - at - 1)})
			} else {
				block = append(block, bpf.JumpIf{Cond: bpf.JumpEqual, Val: c.val, SkipFalse: uint8(n - at - 1)})
			}
		}
		block = append(block, bpf.RetConstant{Val: r.action})
		out = append(out, block...)
	}
	return append(out, bpf.RetConstant{Val: uint32(seccomp.ActionAllow)})
}

func childJailProgram(p JailParams) ([]bpf.RawInstruction, error) {
	if p.ServerPID <= 1 || p.ServerPGID <= 1 {
		return nil, fmt.Errorf("child jail: no launcher server to protect (pid %d, group %d)", p.ServerPID, p.ServerPGID)
	}
	return bpf.Assemble(slices.Concat(prefix(), compileRules(jailRules(p))))
}

// ChildJail adds the child jail's filter (see above) on top of the
// downloader's. It applies to every thread and to whatever the process
// executes.
func ChildJail(p JailParams) error {
	if ablated(LayerSeccomp) {
		return nil
	}
	raw, err := childJailProgram(p)
	if err != nil {
		return err
	}
	return load("child jail", raw)
}
