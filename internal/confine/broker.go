package confine

import (
	"fmt"
	"runtime"
	"unsafe"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// LayerBroker is the connect broker's switch in the assume-breach suite:
// the download children's socket and connect calls, answered by their
// launcher server (sandbox/broker.go).
const LayerBroker = "broker"

// BrokerFilter stacks a filter that hands every socket and connect call
// (and every send with MSG_FASTOPEN, a connect by another name, and
// every kill and rt_sigqueueinfo, whose pid may be a thread of the
// supervisor's) of this process (every thread, and whatever it executes and starts) to
// a supervisor, as seccomp user notifications, and returns the
// notification descriptor the supervisor reads them from. Until a
// supervisor answers, those calls wait; if the descriptor is closed,
// they fail with ENOSYS.
//
// It returns -1 and no error when the broker is switched off (the
// assume-breach suite's ablation).
func BrokerFilter() (int, error) {
	if ablated(LayerBroker) {
		return -1, nil
	}
	raw, err := brokerProgram()
	if err != nil {
		return -1, err
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return -1, fmt.Errorf("seccomp: couldn't set no_new_privs: %w", err)
	}
	filter := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		filter[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	// TSYNC_ESRCH: with TSYNC and a listener, a thread that cannot take
	// the filter is an error (ESRCH), not a thread id in place of the fd.
	flags := uintptr(unix.SECCOMP_FILTER_FLAG_NEW_LISTENER | unix.SECCOMP_FILTER_FLAG_TSYNC | unix.SECCOMP_FILTER_FLAG_TSYNC_ESRCH)
	fd, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, flags, uintptr(unsafe.Pointer(&prog)))
	runtime.KeepAlive(filter)
	if e != 0 {
		return -1, fmt.Errorf("seccomp (connect broker): %w", e)
	}
	return int(fd), nil
}

// brokerProgram notifies socket, connect, Fast Open sends, kill and
// rt_sigqueueinfo. It has an architecture
// guard of its own (not the domains' prefix, which the seccomp layer's
// switch takes away): a call of another architecture or ABI (i386's
// socketcall through int 0x80, x32) would not be seen as socket or
// connect, so it kills.
func brokerProgram() ([]bpf.RawInstruction, error) {
	notify := bpf.RetConstant{Val: unix.SECCOMP_RET_USER_NOTIF}
	allow := bpf.RetConstant{Val: uint32(seccomp.ActionAllow)}
	kill := bpf.RetConstant{Val: uint32(seccomp.ActionKillProcess)}
	return bpf.Assemble([]bpf.Instruction{
		/* 0 */ bpf.LoadAbsolute{Off: offArch, Size: 4},
		/* 1 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: auditArchX86_64, SkipTrue: 1},
		/* 2 */ kill, // another architecture
		/* 3 */ bpf.LoadAbsolute{Off: offNr, Size: 4},
		/* 4 */ bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: x32Bit, SkipFalse: 1},
		/* 5 */ kill, // the x32 ABI
		/* 6 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.SYS_SOCKET, SkipTrue: 12}, // → 19
		/* 7 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.SYS_CONNECT, SkipTrue: 11}, // → 19
		// A signal by pid, which may be a thread id of the server's.
		/* 8 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.SYS_KILL, SkipTrue: 10}, // → 19
		/* 9 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.SYS_RT_SIGQUEUEINFO, SkipTrue: 9}, // → 19
		// A send with MSG_FASTOPEN connects without connect.
		/* 10 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.SYS_SENDMSG, SkipTrue: 3}, // → 14
		/* 11 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.SYS_SENDTO, SkipTrue: 4}, // → 16
		/* 12 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.SYS_SENDMMSG, SkipTrue: 3}, // → 16
		/* 13 */ allow,
		/* 14 */ bpf.LoadAbsolute{Off: offArg2, Size: 4},
		/* 15 */ bpf.Jump{Skip: 1}, // → 17
		/* 16 */ bpf.LoadAbsolute{Off: 16 + 3*8, Size: 4},
		/* 17 */ bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: msgFastOpen, SkipTrue: 1}, // → 19
		/* 18 */ allow,
		/* 19 */ notify,
	})
}
