package confine

import (
	"fmt"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// TCPOnly adds a seccomp filter, on top of the downloader's, that refuses
// (EACCES) every socket but an IPv4 or IPv6 stream socket: no UDP (so no
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
	refuse := errno(unix.EACCES)
	cond := func(op seccomp.Operation, arg uint32, v uint64) seccomp.Condition {
		return seccomp.Condition{Argument: arg, Operation: op, Value: v}
	}
	p := &seccomp.Policy{DefaultAction: seccomp.ActionAllow, Syscalls: []seccomp.SyscallGroup{
		{Action: refuse, NamesWithCondtions: []seccomp.NameWithConditions{
			// Any family but AF_INET and AF_INET6.
			{Name: "socket", Conditions: []seccomp.Condition{cond(seccomp.NotEqual, 0, unix.AF_INET), cond(seccomp.NotEqual, 0, unix.AF_INET6)}},
			// Any type but SOCK_STREAM (1) in the low four bits (the rest
			// are SOCK_NONBLOCK and SOCK_CLOEXEC).
			{Name: "socket", Conditions: []seccomp.Condition{cond(seccomp.BitsNotSet, 1, 0x1)}},
			{Name: "socket", Conditions: []seccomp.Condition{cond(seccomp.BitsSet, 1, 0x2)}},
			{Name: "socket", Conditions: []seccomp.Condition{cond(seccomp.BitsSet, 1, 0x4)}},
			{Name: "socket", Conditions: []seccomp.Condition{cond(seccomp.BitsSet, 1, 0x8)}},
		}},
	}}
	body, err := p.Assemble()
	if err != nil {
		return nil, fmt.Errorf("seccomp (tcp only): %w", err)
	}
	return bpf.Assemble(append(prefix(), body...))
}
