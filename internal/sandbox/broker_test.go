package sandbox

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestBrokerRefusesDirectConnections: a download that connects around its
// proxy is refused by the connect broker (EPERM; Landlock's port rule,
// behind it, answers EACCES, so the test fails without the broker), and
// its connection to the proxy, through the broker, is answered by the
// proxy. The worker hears of the refusals as egress events.
func TestBrokerRefusesDirectConnections(t *testing.T) {
	l, root, err := downloader(t, "testdata/proxy-yt-dlp")
	if err != nil {
		t.Fatal(err)
	}
	const id = "dddddddddddddddddddddddddd"
	var out bytes.Buffer
	var errb bytes.Buffer
	o, err := l.Download(context.Background(), id, "directAAAAA", "best", jobDir(t, root, id), &out, &errb)
	if err != nil || o.ExitCode != 0 {
		t.Fatalf("download: %v %+v\n%s\n%s", err, o, out.String(), errb.String())
	}
	got := out.String()
	for _, want := range []string{"direct 127.0.0.1 EPERM", "direct 169.254.169.254 EPERM", "proxy HTTP/1.1 407 "} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "connected") {
		t.Errorf("a direct connection went through:\n%s", got)
	}
}

// TestBrokerAnswers: the broker's decisions, on calls made up here (the
// address is read from this process's own memory).
func TestBrokerAnswers(t *testing.T) {
	b := &broker{port: 4000}
	var refused []netip.AddrPort
	b.refused = func(a netip.AddrPort) { refused = append(refused, a) }
	sa := func(ip [4]byte, port uint16) *unix.RawSockaddrInet4 {
		r := &unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: ip}
		r.Port = port<<8 | port>>8
		return r
	}
	for _, tt := range []struct {
		name  string
		req   seccompNotif
		error int32
		flags uint32
	}{
		{"tcp socket", seccompNotif{Nr: unix.SYS_SOCKET, Args: [6]uint64{unix.AF_INET, unix.SOCK_STREAM | unix.SOCK_CLOEXEC, 0}}, 0, unix.SECCOMP_USER_NOTIF_FLAG_CONTINUE},
		{"tcp6 socket", seccompNotif{Nr: unix.SYS_SOCKET, Args: [6]uint64{unix.AF_INET6, unix.SOCK_STREAM, unix.IPPROTO_TCP}}, 0, unix.SECCOMP_USER_NOTIF_FLAG_CONTINUE},
		{"udp socket", seccompNotif{Nr: unix.SYS_SOCKET, Args: [6]uint64{unix.AF_INET, unix.SOCK_DGRAM, 0}}, -int32(unix.EPERM), 0},
		{"mptcp socket", seccompNotif{Nr: unix.SYS_SOCKET, Args: [6]uint64{unix.AF_INET, unix.SOCK_STREAM, 262}}, -int32(unix.EPERM), 0},
		{"raw socket", seccompNotif{Nr: unix.SYS_SOCKET, Args: [6]uint64{unix.AF_INET, unix.SOCK_RAW, 1}}, -int32(unix.EPERM), 0},
		{"connect elsewhere", connectReq(sa([4]byte{169, 254, 169, 254}, 80)), -int32(unix.EPERM), 0},
		{"connect loopback, other port", connectReq(sa([4]byte{127, 0, 0, 1}, 4001)), -int32(unix.EPERM), 0},
		{"connect short address", seccompNotif{Nr: unix.SYS_CONNECT, PID: uint32(os.Getpid()), Args: [6]uint64{3, 0, 2}}, -int32(unix.EPERM), 0},
		{"fast open", seccompNotif{Nr: unix.SYS_SENDTO, Args: [6]uint64{3, 0, 1, unix.MSG_FASTOPEN}}, -int32(unix.EPERM), 0},
		{"kill a server thread", seccompNotif{Nr: unix.SYS_KILL, Args: [6]uint64{uint64(unix.Gettid()), 9}}, -int32(unix.EPERM), 0},
		{"kill the server", seccompNotif{Nr: unix.SYS_RT_SIGQUEUEINFO, Args: [6]uint64{uint64(os.Getpid()), 10}}, -int32(unix.EPERM), 0},
		{"kill another", seccompNotif{Nr: unix.SYS_KILL, Args: [6]uint64{uint64(os.Getppid()), 0}}, 0, unix.SECCOMP_USER_NOTIF_FLAG_CONTINUE},
		{"kill own group", seccompNotif{Nr: unix.SYS_KILL, Args: [6]uint64{0, 9}}, 0, unix.SECCOMP_USER_NOTIF_FLAG_CONTINUE},
		{"another call", seccompNotif{Nr: unix.SYS_BIND}, -int32(unix.ENOSYS), 0},
	} {
		r := b.answer(&tt.req)
		if r.Error != tt.error || r.Flags != tt.flags || r.Val != 0 {
			t.Errorf("%s: %+v, want error %d flags %d", tt.name, r, tt.error, tt.flags)
		}
	}
	want := []netip.AddrPort{netip.MustParseAddrPort("169.254.169.254:80"), netip.MustParseAddrPort("127.0.0.1:4001"), {}, {}}
	if len(refused) != len(want) {
		t.Fatalf("refusals reported: %v, want %v", refused, want)
	}
	for i := range want {
		if refused[i] != want[i] {
			t.Errorf("refusal %d: %v, want %v", i, refused[i], want[i])
		}
	}
	if !tcpSocket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0) || tcpSocket(unix.AF_UNIX, unix.SOCK_STREAM, 0) {
		t.Error("tcpSocket")
	}
}

// keep holds the addresses connectReq points into, for the test's life.
var keep []*unix.RawSockaddrInet4

func connectReq(sa *unix.RawSockaddrInet4) seccompNotif {
	keep = append(keep, sa)
	return seccompNotif{Nr: unix.SYS_CONNECT, PID: uint32(os.Getpid()),
		Args: [6]uint64{3, uint64(uintptr(unsafe.Pointer(sa))), unix.SizeofSockaddrInet4}}
}

// TestNoDownloadWithoutBroker: when the child does not send its
// notification descriptor (it died first, or sent a message without
// one), the server kills the child's process group and fails the
// request: the download never runs on Landlock alone. The control, a
// child that sends one, keeps running. Without the kill in brokerOrKill,
// the group survives and this fails.
func TestNoDownloadWithoutBroker(t *testing.T) {
	for _, tt := range []struct {
		name   string
		send   func(end int) error
		killed bool
	}{
		{"closed without a word", func(int) error { return nil }, true},
		{"a message without a descriptor", func(end int) error { return sendBrokerFD(end, -1) }, true},
		{"control: a descriptor", func(end int) error {
			var p [2]int
			if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
				return err
			}
			defer unix.Close(p[0])
			defer unix.Close(p[1])
			return sendBrokerFD(end, p[0])
		}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			serverEnd := os.NewFile(uintptr(pair[0]), "broker")
			defer serverEnd.Close()
			// The download: a process group of two (the leader and a
			// helper), as yt-dlp and ffmpeg would be.
			cmd := exec.Command("/bin/sh", "-c", "sleep 60 & wait")
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			pgid := cmd.Process.Pid
			defer unix.Kill(-pgid, unix.SIGKILL)
			if err := tt.send(pair[1]); err != nil {
				t.Fatal(err)
			}
			unix.Close(pair[1])
			s := &server{children: map[uint64]chan struct{}{}, jobPorts: map[uint64]uint16{}}
			b, failed := s.brokerOrKill(7, nil, serverEnd, pgid)
			if failed != tt.killed || (b == nil) != tt.killed {
				t.Fatalf("broker %v, failed %v; want failed %v", b, failed, tt.killed)
			}
			if b != nil {
				unix.Close(b.fd)
				unix.Kill(-pgid, unix.SIGTERM)
			}
			err = cmd.Wait()
			ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
			if got := ws.Signaled() && ws.Signal() == syscall.SIGKILL; got != tt.killed {
				t.Errorf("the download's group was killed: %v, want %v (%v)", got, tt.killed, err)
			}
			// The helper went with its group (once its new parent has
			// reaped it, it is gone).
			deadline := time.Now().Add(time.Minute) // a hang guard
			for unix.Kill(-pgid, 0) == nil && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if unix.Kill(-pgid, 0) == nil {
				t.Errorf("a process of the group lives on")
			}
		})
	}
}
