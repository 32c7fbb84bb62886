package confine

import (
	"encoding/binary"
	"fmt"
	"testing"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// call is one system call as the filter sees it (struct seccomp_data).
type call struct {
	nr   uint32
	arch uint32
	args [6]uint64
}

func sys(nr uint32, args ...uint64) call {
	c := call{nr: nr, arch: auditArchX86_64}
	copy(c.args[:], args)
	return c
}

// data lays c out for x/net/bpf's interpreter, which loads 32-bit words
// big-endian where the kernel loads them in native (little-endian) order:
// each word is stored big-endian at the offset the kernel reads it from,
// so every load sees the value the kernel's would (an argument's low half
// at its offset, its high half 4 bytes on).
func (c call) data() []byte {
	b := make([]byte, 64)
	be := binary.BigEndian
	be.PutUint32(b[offNr:], c.nr)
	be.PutUint32(b[offArch:], c.arch)
	for i, a := range c.args {
		be.PutUint32(b[16+8*i:], uint32(a))
		be.PutUint32(b[16+8*i+4:], uint32(a>>32))
	}
	return b
}

const (
	allow = uint32(seccomp.ActionAllow)
	kill  = uint32(seccomp.ActionKillProcess)
	junk  = uint64(1) << 32 // ignored by the kernel for int arguments
	// goThread are the Go runtime's clone flags for a new thread
	// (runtime.cloneFlags); glibcThread glibc's for pthread_create (after
	// clone3's ENOSYS), glibcFork its flags for fork.
	goThread    = unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND | unix.CLONE_SYSVSEM | unix.CLONE_THREAD
	glibcThread = goThread | unix.CLONE_SETTLS | unix.CLONE_PARENT_SETTID | unix.CLONE_CHILD_CLEARTID
	glibcFork   = unix.CLONE_CHILD_SETTID | unix.CLONE_CHILD_CLEARTID | uint64(unix.SIGCHLD)
)

func refuse(e unix.Errno) uint32 { return uint32(errno(e)) }

// filterCase is one made-up call and the filter's expected answer.
type filterCase struct {
	name string
	c    call
	want uint32
}

// runCases runs each case in vm, a subtest each.
func runCases(t *testing.T, vm *bpf.VM, cases []filterCase) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			got, err := vm.Run(tt.c.data())
			if err != nil {
				t.Fatal(err)
			}
			if uint32(got) != tt.want {
				t.Errorf("got %#x, want %#x", got, tt.want)
			}
		})
	}
}

// vmOf returns x/net/bpf's interpreter loaded with the assembled filter
// raw (err is its assembler's error).
func vmOf(t *testing.T, raw []bpf.RawInstruction, err error) *bpf.VM {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	insts, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatal("the filter does not disassemble")
	}
	vm, err := bpf.NewVM(insts)
	if err != nil {
		t.Fatal(err)
	}
	return vm
}

// TestSeccompFilter runs each domain's assembled filter in x/net/bpf's
// interpreter on made-up system calls: the prefix's and the guards'
// branches, with junk in the upper half of int arguments, and the calls
// the runtimes make all the time. It needs no process to kill, so it
// checks what the layer tests cannot afford to (every domain, every
// branch); TestSeccompLayer shows the kernel doing the same.
func TestSeccompFilter(t *testing.T) {
	// want: receiver, worker, downloader.
	cases := []struct {
		name string
		c    call
		want [3]uint32
	}{
		{"getpid", sys(unix.SYS_GETPID), [3]uint32{allow, allow, allow}},
		{"i386 call", call{nr: 20, arch: 0x40000003}, [3]uint32{kill, kill, kill}},
		{"x32 call", sys(x32Bit | unix.SYS_GETPID), [3]uint32{kill, kill, kill}},
		// C9: clone with a namespace flag kills everywhere; threads and
		// forks stay allowed.
		{"clone go thread", sys(unix.SYS_CLONE, goThread), [3]uint32{allow, allow, allow}},
		{"clone glibc thread", sys(unix.SYS_CLONE, glibcThread), [3]uint32{allow, allow, allow}},
		{"clone glibc fork", sys(unix.SYS_CLONE, glibcFork), [3]uint32{allow, allow, allow}},
		{"clone plain", sys(unix.SYS_CLONE, uint64(unix.SIGCHLD)), [3]uint32{allow, allow, allow}},
		{"clone newuser", sys(unix.SYS_CLONE, unix.CLONE_NEWUSER|uint64(unix.SIGCHLD)), [3]uint32{kill, kill, kill}},
		{"clone newnet thread", sys(unix.SYS_CLONE, goThread|unix.CLONE_NEWNET), [3]uint32{kill, kill, kill}},
		{"clone newns newpid", sys(unix.SYS_CLONE, unix.CLONE_NEWNS|unix.CLONE_NEWPID), [3]uint32{kill, kill, kill}},
		{"clone newuser junk", sys(unix.SYS_CLONE, junk|unix.CLONE_NEWUSER), [3]uint32{kill, kill, kill}},
		{"clone3", sys(unix.SYS_CLONE3), [3]uint32{refuse(unix.ENOSYS), refuse(unix.ENOSYS), refuse(unix.ENOSYS)}},
		{"unshare", sys(unix.SYS_UNSHARE, unix.CLONE_NEWUSER), [3]uint32{kill, kill, kill}},
		// C8: socket families.
		{"socket inet", sys(unix.SYS_SOCKET, unix.AF_INET, unix.SOCK_STREAM), [3]uint32{allow, refuse(unix.EACCES), allow}},
		{"socket inet6", sys(unix.SYS_SOCKET, unix.AF_INET6, unix.SOCK_DGRAM), [3]uint32{allow, refuse(unix.EACCES), allow}},
		{"socket mptcp", sys(unix.SYS_SOCKET, unix.AF_INET, unix.SOCK_STREAM, unix.IPPROTO_MPTCP), [3]uint32{kill, kill, kill}},
		{"socket unix", sys(unix.SYS_SOCKET, unix.AF_UNIX, unix.SOCK_STREAM), [3]uint32{refuse(unix.EACCES), refuse(unix.EACCES), refuse(unix.EACCES)}},
		{"socket netlink", sys(unix.SYS_SOCKET, unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE), [3]uint32{refuse(unix.EAFNOSUPPORT), refuse(unix.EAFNOSUPPORT), refuse(unix.EAFNOSUPPORT)}},
		{"socket netlink junk", sys(unix.SYS_SOCKET, junk|unix.AF_NETLINK, unix.SOCK_RAW), [3]uint32{refuse(unix.EAFNOSUPPORT), refuse(unix.EAFNOSUPPORT), refuse(unix.EAFNOSUPPORT)}},
		{"socket vsock", sys(unix.SYS_SOCKET, unix.AF_VSOCK, unix.SOCK_STREAM), [3]uint32{kill, kill, kill}},
		{"socket vsock junk", sys(unix.SYS_SOCKET, junk|unix.AF_VSOCK, unix.SOCK_STREAM), [3]uint32{kill, kill, kill}},
		{"socket packet", sys(unix.SYS_SOCKET, unix.AF_PACKET, unix.SOCK_RAW), [3]uint32{kill, kill, kill}},
		{"socket alg", sys(unix.SYS_SOCKET, unix.AF_ALG, unix.SOCK_SEQPACKET), [3]uint32{kill, kill, kill}},
		{"socketpair unix", sys(unix.SYS_SOCKETPAIR, unix.AF_UNIX, unix.SOCK_STREAM), [3]uint32{refuse(unix.EPERM), refuse(unix.EACCES), allow}},
		{"socketpair inet", sys(unix.SYS_SOCKETPAIR, unix.AF_INET, unix.SOCK_STREAM), [3]uint32{kill, kill, kill}},
		{"socketpair tipc junk", sys(unix.SYS_SOCKETPAIR, junk|unix.AF_TIPC, unix.SOCK_SEQPACKET), [3]uint32{kill, kill, kill}},
		// TCP Fast Open and stream protocols Landlock does not see.
		{"sendto fastopen", sys(unix.SYS_SENDTO, 3, 0, 1, unix.MSG_FASTOPEN), [3]uint32{refuse(unix.EACCES), refuse(unix.EACCES), refuse(unix.EACCES)}},
		{"sendto fastopen junk", sys(unix.SYS_SENDTO, 3, 0, 1, junk|unix.MSG_FASTOPEN|unix.MSG_NOSIGNAL), [3]uint32{refuse(unix.EACCES), refuse(unix.EACCES), refuse(unix.EACCES)}},
		{"sendmsg fastopen", sys(unix.SYS_SENDMSG, 3, 0, unix.MSG_FASTOPEN), [3]uint32{refuse(unix.EACCES), refuse(unix.EACCES), refuse(unix.EACCES)}},
		{"sendmmsg fastopen", sys(unix.SYS_SENDMMSG, 3, 0, 1, unix.MSG_FASTOPEN), [3]uint32{refuse(unix.EACCES), refuse(unix.EACCES), refuse(unix.EACCES)}},
		{"sendmsg plain", sys(unix.SYS_SENDMSG, 3, 0, unix.MSG_NOSIGNAL), [3]uint32{allow, allow, allow}},
		{"socket sctp", sys(unix.SYS_SOCKET, unix.AF_INET, unix.SOCK_STREAM, unix.IPPROTO_SCTP), [3]uint32{refuse(unix.EACCES), refuse(unix.EACCES), refuse(unix.EACCES)}},
		{"socket smc", sys(unix.SYS_SOCKET, unix.AF_INET6, unix.SOCK_STREAM, 256), [3]uint32{refuse(unix.EACCES), refuse(unix.EACCES), refuse(unix.EACCES)}},
		// C6: memfd.
		{"memfd_create", sys(unix.SYS_MEMFD_CREATE, 0, 0), [3]uint32{kill, kill, kill}},
		{"memfd_create noexec seal", sys(unix.SYS_MEMFD_CREATE, 0, unix.MFD_NOEXEC_SEAL), [3]uint32{kill, kill, kill}},
		{"memfd_secret", sys(unix.SYS_MEMFD_SECRET), [3]uint32{kill, kill, kill}},
		{"execveat", sys(unix.SYS_EXECVEAT, 3, 0, 0, 0, unix.AT_EMPTY_PATH), [3]uint32{kill, kill, allow}},
		// C8: System V IPC.
		{"shmget", sys(unix.SYS_SHMGET), [3]uint32{kill, kill, kill}},
		{"shmat", sys(unix.SYS_SHMAT), [3]uint32{kill, kill, kill}},
		{"msgget", sys(unix.SYS_MSGGET), [3]uint32{kill, kill, kill}},
		{"msgsnd", sys(unix.SYS_MSGSND), [3]uint32{kill, kill, kill}},
		{"semget", sys(unix.SYS_SEMGET), [3]uint32{kill, kill, kill}},
		{"semtimedop", sys(unix.SYS_SEMTIMEDOP), [3]uint32{kill, kill, kill}},
		// After the guards the policy must see the call's number again
		// (not an argument the guards loaded): calls whose first argument
		// is some other call's number.
		{"read after guards", sys(unix.SYS_READ, unix.SYS_EXECVE), [3]uint32{allow, allow, allow}},
		{"listen", sys(unix.SYS_LISTEN, 3, 1), [3]uint32{refuse(unix.EPERM), refuse(unix.EPERM), refuse(unix.EPERM)}},
	}
	for i, d := range []Domain{Receiver, Worker, Downloader} {
		raw, err := Program(d)
		if err != nil {
			t.Fatal(err)
		}
		insts, ok := bpf.Disassemble(raw)
		if !ok {
			t.Fatalf("%s: the filter does not disassemble", d)
		}
		vm, err := bpf.NewVM(insts)
		if err != nil {
			t.Fatalf("%s: %v", d, err)
		}
		for _, tt := range cases {
			t.Run(fmt.Sprintf("%s/%s", d, tt.name), func(t *testing.T) {
				got, err := vm.Run(tt.c.data())
				if err != nil {
					t.Fatal(err)
				}
				if uint32(got) != tt.want[i] {
					t.Fatalf("got %s, want %s", action(uint32(got)), action(tt.want[i]))
				}
			})
		}
	}
}

func action(v uint32) string {
	switch {
	case v == allow:
		return "allow"
	case v == kill:
		return "kill"
	case v&0xffff0000 == uint32(seccomp.ActionErrno):
		return unix.ErrnoName(unix.Errno(v & 0xffff))
	}
	return fmt.Sprintf("%#x", v)
}

// TestClientFilters: the courier's filter and the Socket Mode receiver's
// (a client's: no listening socket) in the same interpreter: no accept4,
// bind or listen; connect and socket allowed; execve and ptrace kill.
func TestClientFilters(t *testing.T) {
	cases := []struct {
		name string
		c    call
		want uint32
	}{
		{"connect", sys(unix.SYS_CONNECT, 3, 0, 16), allow},
		{"socket", sys(unix.SYS_SOCKET, unix.AF_INET, unix.SOCK_STREAM, 0), allow},
		{"accept4", sys(unix.SYS_ACCEPT4, 3, 0, 0, 0), refuse(unix.EPERM)},
		{"bind", sys(unix.SYS_BIND, 3, 0, 16), refuse(unix.EPERM)},
		{"listen", sys(unix.SYS_LISTEN, 3, 1), refuse(unix.EPERM)},
		{"execve", sys(unix.SYS_EXECVE), kill},
		{"ptrace", sys(unix.SYS_PTRACE), kill},
	}
	for _, d := range []Domain{Courier, ReceiverSocket} {
		raw, err := Program(d)
		if err != nil {
			t.Fatal(err)
		}
		insts, ok := bpf.Disassemble(raw)
		if !ok {
			t.Fatalf("%s: the filter does not disassemble", d)
		}
		vm, err := bpf.NewVM(insts)
		if err != nil {
			t.Fatalf("%s: %v", d, err)
		}
		for _, tt := range cases {
			t.Run(fmt.Sprintf("%s/%s", d, tt.name), func(t *testing.T) {
				got, err := vm.Run(tt.c.data())
				if err != nil {
					t.Fatal(err)
				}
				if uint32(got) != tt.want {
					t.Fatalf("got %s, want %s", action(uint32(got)), action(tt.want))
				}
			})
		}
	}
}
