package confine

import (
	"slices"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// TCPOnly adds a seccomp filter, on top of the downloader's, that refuses
// (EACCES) every socket but an IPv4 or IPv6 TCP socket (protocol 0 or
// IPPROTO_TCP: not SCTP or SMC, which Landlock's TCP rules do not cover),
// and every send with MSG_FASTOPEN (transportGuards): no UDP (so no
// DNS of its own, and no datagrams to anyone: Landlock has no UDP rules),
// no raw, packet, netlink or vsock sockets. A download child needs TCP to
// the egress proxy and nothing else. It applies to every thread and to
// whatever the process executes.
func TCPOnly() error {
	if ablated(LayerSeccomp) {
		return nil
	}
	raw, err := tcpOnlyProgram()
	if err != nil {
		return err
	}
	return load("tcp only", raw)
}

func tcpOnlyProgram() ([]bpf.RawInstruction, error) {
	refuse := bpf.RetConstant{Val: uint32(errno(unix.EACCES))}
	allow := bpf.RetConstant{Val: uint32(seccomp.ActionAllow)}
	const offArg1 = 16 + 1*8
	own := []bpf.Instruction{
		/* 0 */ bpf.LoadAbsolute{Off: offNr, Size: 4},
		/* 1 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.SYS_SOCKET, SkipFalse: 10}, // → 12
		/* 2 */ bpf.LoadAbsolute{Off: offArg0, Size: 4},
		/* 3 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.AF_INET, SkipTrue: 1}, // → 5
		/* 4 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.AF_INET6, SkipFalse: 6}, // → 11
		/* 5 */ bpf.LoadAbsolute{Off: offArg1, Size: 4},
		/* 6 */ bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0xf}, // the type without SOCK_NONBLOCK, SOCK_CLOEXEC
		/* 7 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.SOCK_STREAM, SkipFalse: 3}, // → 11
		/* 8 */ bpf.LoadAbsolute{Off: offArg2, Size: 4},
		/* 9 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0, SkipTrue: 2}, // → 12
		/* 10 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.IPPROTO_TCP, SkipTrue: 1}, // → 12
		/* 11 */ refuse,
		/* 12 */ allow,
	}
	return bpf.Assemble(slices.Concat(prefix(), transportGuards(), own))
}
