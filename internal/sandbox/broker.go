package sandbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ytkeep/ytkeep/internal/confine"
	"github.com/ytkeep/ytkeep/internal/egress"
	"github.com/ytkeep/ytkeep/internal/job"
)

// The connect broker: a second layer, behind Landlock's port rule, that
// keeps a download's processes to their egress proxy port.
//
// Each download child stacks a seccomp filter (confine.BrokerFilter) that
// turns its socket and connect calls, and those of everything it starts,
// into notifications its launcher server answers:
//
//   - a send with MSG_FASTOPEN (TCP Fast Open, a connect without
//     connect) is refused with EPERM.
//   - kill and rt_sigqueueinfo naming a thread of the server's are
//     refused (EPERM): the child jail refuses the server's pid, but any
//     of its thread ids signals it as well, and only the server knows
//     them. Other pids go on as asked (a pid is a value).
//
// With the seccomp layer on, the children's own filters answer first for
// what they refuse (TCPOnly's EACCES for a socket that is not TCP or a
// Fast Open send): the broker's refusals show when that layer is off.
//   - socket: an IPv4 or IPv6 stream socket of TCP goes on as asked (its
//     arguments are values, which the child cannot change once made); any
//     other socket is refused with EPERM.
//   - connect: the server reads the address the child asks for. Unless it
//     is the child's own proxy port on 127.0.0.1, the call fails with
//     EPERM and the server reports the refusal (an egress event the
//     worker raises as an alert). If it is, the server does not let the
//     child's call go on (another thread of the child could change the
//     address between the server's read and the kernel's): it connects a
//     socket of its own to the proxy port and puts it in place of the
//     child's descriptor (SECCOMP_IOCTL_NOTIF_ADDFD with SETFD), and the
//     call returns 0. Whatever the child asked, its connection goes to its
//     proxy port, where the egress proxy's policy applies.
//
// The socket put in place is in blocking mode (the child's own mode is
// not known: Python makes a socket non-blocking after socket(), when it
// sets a timeout) with TCP_NODELAY. Python and ffmpeg, which poll a socket
// before they read or write it when they use timeouts, work the same on
// it; a read that finds half a TLS record waits for the rest, where the
// caller's timeout would have ended it, and the job's timeout still
// holds. (Connecting the child's own socket instead, through
// pidfd_getfd, would keep its mode, but pidfd_getfd is in systemd's
// @debug group, which the unit denies: exposure 1.2.)
//
// The layer stands on its own: without Landlock (the breach suite's
// ablation) the children's direct connections are refused by the broker
// alone. It is kernel surface of the server's own (seccomp notifications,
// process_vm_readv of its children, which the children's filter kills).

// seccompNotif is struct seccomp_notif (linux/seccomp.h).
type seccompNotif struct {
	ID    uint64
	PID   uint32
	Flags uint32
	Nr    int32
	Arch  uint32
	IP    uint64
	Args  [6]uint64
}

// seccompNotifResp is struct seccomp_notif_resp.
type seccompNotifResp struct {
	ID    uint64
	Val   int64
	Error int32
	Flags uint32
}

// seccompNotifAddfd is struct seccomp_notif_addfd.
type seccompNotifAddfd struct {
	ID         uint64
	Flags      uint32
	Srcfd      uint32
	Newfd      uint32
	NewfdFlags uint32
}

// ioctlNotifAddfd is SECCOMP_IOCTL_NOTIF_ADDFD: _IOW('!', 3, struct
// seccomp_notif_addfd), which x/sys/unix does not define.
const ioctlNotifAddfd = 0x40182103

// broker answers one download's notifications.
type broker struct {
	fd   int
	port uint16 // the download's proxy port; 0: no connection at all
	// refused is told of each connection refused (the address asked for).
	refused func(addr netip.AddrPort)
}

// Why a wait ended.
const (
	endExit = iota
	endTimeout
	endKill
)

// wait waits for the child's exit, its timeout or a kill request, and
// meanwhile answers b's notifications (b may be nil: it only waits). It
// runs on the thread that forked the child: with Landlock's per-thread
// domains (ABI < 8), only that thread's domain is an ancestor of the
// child's, which process_vm_readv needs as ptrace does.
func (b *broker) wait(exited <-chan struct{}, timeout <-chan time.Time, killReq <-chan struct{}) int {
	var wakeR, wakeW *os.File
	err := errors.New("no broker")
	if b != nil {
		wakeR, wakeW, err = os.Pipe()
	}
	if err != nil {
		select {
		case <-exited:
			return endExit
		case <-timeout:
			return endTimeout
		case <-killReq:
			return endKill
		}
	}
	defer wakeR.Close()
	ended := make(chan int, 1)
	go func() {
		defer wakeW.Close()
		select {
		case <-exited:
			ended <- endExit
		case <-timeout:
			ended <- endTimeout
		case <-killReq:
			ended <- endKill
		}
	}()
	fds := []unix.PollFd{{Fd: int32(b.fd), Events: unix.POLLIN}, {Fd: int32(wakeR.Fd()), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || fds[1].Revents != 0 {
			return <-ended
		}
		switch {
		case fds[0].Revents&unix.POLLIN != 0:
			b.handle()
		case fds[0].Revents != 0:
			// POLLHUP: no process uses the filter any more.
			fds[0].Fd, fds[0].Events = -1, 0
		}
	}
}

// handle receives one notification and answers it.
func (b *broker) handle() {
	var req seccompNotif
	if err := ioctlPtr(b.fd, unix.SECCOMP_IOCTL_NOTIF_RECV, unsafe.Pointer(&req)); err != nil {
		return // interrupted, or the caller died meanwhile (ENOENT)
	}
	// ENOENT: the caller is gone (killed, or interrupted by a signal).
	ioctlPtr(b.fd, unix.SECCOMP_IOCTL_NOTIF_SEND, unsafe.Pointer(b.answer(&req)))
}

func (b *broker) answer(req *seccompNotif) *seccompNotifResp {
	resp := &seccompNotifResp{ID: req.ID}
	refuse := func(e unix.Errno) *seccompNotifResp {
		resp.Error = -int32(e)
		return resp
	}
	switch req.Nr {
	case unix.SYS_SOCKET:
		if !tcpSocket(uint32(req.Args[0]), uint32(req.Args[1]), uint32(req.Args[2])) {
			return refuse(unix.EPERM)
		}
		resp.Flags = unix.SECCOMP_USER_NOTIF_FLAG_CONTINUE
		return resp
	case unix.SYS_CONNECT:
		fd := int32(req.Args[0])
		addr, ok := readSockaddr(int(req.PID), uintptr(req.Args[1]), uint32(req.Args[2]))
		if !ok || b.port == 0 || addr != netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), b.port) {
			if b.refused != nil {
				b.refused(addr)
			}
			return refuse(unix.EPERM)
		}
		if fd < 0 {
			return refuse(unix.EBADF)
		}
		if e := b.connectInPlace(req.ID, fd); e != 0 {
			return refuse(e)
		}
		return resp
	case unix.SYS_KILL, unix.SYS_RT_SIGQUEUEINFO:
		// A pid is a value: the call goes on with the pid read here. A
		// thread of the server's is refused (its pid, the jail's to
		// refuse, is one of them too).
		if pid := int32(req.Args[0]); pid > 0 && serverThread(int(pid)) {
			return refuse(unix.EPERM)
		}
		resp.Flags = unix.SECCOMP_USER_NOTIF_FLAG_CONTINUE
		return resp
	case unix.SYS_SENDTO, unix.SYS_SENDMSG, unix.SYS_SENDMMSG:
		// Only with MSG_FASTOPEN (the filter): a connect around connect.
		if b.refused != nil {
			b.refused(netip.AddrPort{})
		}
		return refuse(unix.EPERM)
	}
	return refuse(unix.ENOSYS)
}

// serverThread reports whether tid is a thread of this process (the
// server's: its /proc/self/task lists them).
func serverThread(tid int) bool {
	_, err := os.Stat("/proc/self/task/" + strconv.Itoa(tid))
	return err == nil
}

// tcpSocket reports whether socket(domain, typ, proto) makes a TCP
// socket (compared on the low 32 bits, as the kernel reads int
// arguments).
func tcpSocket(domain, typ, proto uint32) bool {
	return (domain == unix.AF_INET || domain == unix.AF_INET6) &&
		typ&0xf == unix.SOCK_STREAM && (proto == 0 || proto == unix.IPPROTO_TCP)
}

// readSockaddr reads the address a connect of thread tid names: an IPv4
// or IPv6 address and port, anything else is not ok.
func readSockaddr(tid int, ptr uintptr, size uint32) (netip.AddrPort, bool) {
	if size < unix.SizeofSockaddrInet4 || size > 128 {
		return netip.AddrPort{}, false
	}
	buf := make([]byte, min(size, unix.SizeofSockaddrInet6))
	local := []unix.Iovec{{Base: &buf[0], Len: uint64(len(buf))}}
	remote := []unix.RemoteIovec{{Base: ptr, Len: len(buf)}}
	n, err := unix.ProcessVMReadv(tid, local, remote, 0)
	if err != nil || n < unix.SizeofSockaddrInet4 {
		return netip.AddrPort{}, false
	}
	buf = buf[:n]
	port := binary.BigEndian.Uint16(buf[2:4])
	switch binary.NativeEndian.Uint16(buf[0:2]) {
	case unix.AF_INET:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(buf[4:8])), port), true
	case unix.AF_INET6:
		if len(buf) < unix.SizeofSockaddrInet6 {
			return netip.AddrPort{}, false
		}
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(buf[8:24])), port), true
	}
	return netip.AddrPort{}, false
}

// connectInPlace connects a socket of the server's to the proxy port and
// puts it in the caller's descriptor fd, in place of what was there.
func (b *broker) connectInPlace(id uint64, fd int32) unix.Errno {
	// A loopback port answers at once; the wait holds the answers to
	// the download's other calls, and its timeout and kill requests.
	c, err := net.DialTimeout("tcp4", net.JoinHostPort("127.0.0.1", fmt.Sprint(b.port)), 2*time.Second)
	if err != nil {
		return unix.ECONNREFUSED
	}
	f, err := c.(*net.TCPConn).File() // a blocking duplicate
	c.Close()
	if err != nil {
		return unix.EMFILE
	}
	defer f.Close()
	add := seccompNotifAddfd{ID: id, Flags: unix.SECCOMP_ADDFD_FLAG_SETFD, Srcfd: uint32(f.Fd()), Newfd: uint32(fd), NewfdFlags: unix.O_CLOEXEC}
	if err := ioctlPtr(b.fd, ioctlNotifAddfd, unsafe.Pointer(&add)); err != nil {
		var e syscall.Errno
		if errors.As(err, &e) {
			return e
		}
		return unix.EBADF
	}
	return 0
}

func ioctlPtr(fd int, req uint, arg unsafe.Pointer) error {
	for {
		_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(arg))
		switch e {
		case 0:
			return nil
		case unix.EINTR:
			if req == unix.SECCOMP_IOCTL_NOTIF_RECV {
				return e
			}
			continue
		}
		return e
	}
}

// maxReportedRefusals bounds the refusals one download reports to the
// worker (each an alert there): a child that asks for a thousand
// addresses is one story, told a few times.
const maxReportedRefusals = 8

// brokerFor receives the child's notification descriptor from end (the
// child sends it, or a message without one when the broker is switched
// off) and returns the broker of request id, or nil when there is none
// (the child died first, or the broker is off).
func (s *server) brokerFor(id uint64, req *job.Launch, end *os.File) *broker {
	fd := int(end.Fd())
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	deadline := time.Now().Add(brokerHello)
	for {
		n, err := unix.Poll(fds, int(time.Until(deadline)/time.Millisecond))
		if errors.Is(err, unix.EINTR) && time.Now().Before(deadline) {
			continue
		}
		if err != nil || n == 0 {
			fmt.Fprintf(os.Stderr, "ytkeep launcher server: request %d: no word from the child's connect broker (%v)\n", id, err)
			return nil
		}
		break
	}
	buf := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return nil
	}
	got := parseRights(oob[:oobn])
	if len(got) != 1 {
		closeAll(got)
		return nil
	}
	b := &broker{fd: got[0]}
	s.mu.Lock()
	b.port = s.jobPorts[id]
	s.mu.Unlock()
	if id == 0 {
		b.port = 0 // a probe connects nowhere
	}
	if req != nil {
		n := 0
		b.refused = func(a netip.AddrPort) {
			if n++; n > maxReportedRefusals {
				return
			}
			host := "(unreadable address)"
			if a.IsValid() {
				host = a.Addr().String()
			}
			s.send(&response{Egress: &egress.Event{Job: req.JobDir, Video: req.Video, Host: host, Port: a.Port(),
				Refused: "a direct connection: the downloads may reach only their egress proxy"}})
		}
	}
	return b
}

// brokerOrKill returns the broker of request id, whose child leads
// process group pgid; with none (the child died or did not send its
// descriptor), it kills the group and reports failed: a download never
// runs without its broker (only the assume-breach suite's switch takes
// it away).
func (s *server) brokerOrKill(id uint64, req *job.Launch, end *os.File, pgid int) (b *broker, failed bool) {
	if b = s.brokerFor(id, req, end); b != nil || confine.Ablated(confine.LayerBroker) {
		return b, false
	}
	unix.Kill(-pgid, unix.SIGKILL)
	return nil, true
}

// brokerHello bounds the wait for a child's notification descriptor: the
// child sends it before it executes anything.
const brokerHello = 10 * time.Second

// sendBrokerFD is the child's half: it sends fd (or, when fd < 0, a
// message without one) on the socket the server gave it as fd 5.
func sendBrokerFD(sock, fd int) error {
	var rights []byte
	if fd >= 0 {
		rights = unix.UnixRights(fd)
	}
	return unix.Sendmsg(sock, []byte{1}, rights, nil, 0)
}
