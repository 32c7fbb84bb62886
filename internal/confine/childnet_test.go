package confine

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestTCPOnly: under the download children's socket filter only IPv4 and
// IPv6 stream sockets open; UDP, raw, netlink and packet sockets fail with
// EACCES. Without the filter (the control, in the same run) UDP and
// netlink sockets open, so the test shows the filter doing it.
func TestTCPOnly(t *testing.T) {
	if os.Getenv("YTKEEP_TCPONLY_CHILD") != "" {
		tcpOnlyChild(t, os.Getenv("YTKEEP_TCPONLY_CHILD") == "filter")
		return
	}
	for _, mode := range []string{"control", "filter"} {
		self, _ := os.Executable()
		cmd := exec.Command(self, "-test.run=^TestTCPOnly$", "-test.v")
		cmd.Env = append(os.Environ(), "YTKEEP_TCPONLY_CHILD="+mode)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", mode, err, out)
		}
		if !strings.Contains(string(out), "checked "+mode) {
			t.Fatalf("%s: the child did not run its checks:\n%s", mode, out)
		}
	}
}

func tcpOnlyChild(t *testing.T, filter bool) {
	if filter {
		if err := TCPOnly(); err != nil {
			t.Fatal(err)
		}
	}
	open := func(domain, typ, proto int) error {
		fd, err := unix.Socket(domain, typ, proto)
		if err == nil {
			unix.Close(fd)
		}
		return err
	}
	for _, c := range []struct {
		name              string
		domain, typ, prot int
		always            bool // opens with or without the filter
	}{
		{"tcp4", unix.AF_INET, unix.SOCK_STREAM | unix.SOCK_CLOEXEC | unix.SOCK_NONBLOCK, 0, true},
		{"tcp6", unix.AF_INET6, unix.SOCK_STREAM | unix.SOCK_CLOEXEC, 0, true},
		{"udp4", unix.AF_INET, unix.SOCK_DGRAM, 0, false},
		{"udp6", unix.AF_INET6, unix.SOCK_DGRAM | unix.SOCK_CLOEXEC, 0, false},
		{"netlink", unix.AF_NETLINK, unix.SOCK_RAW | unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE, false},
		{"icmp datagram", unix.AF_INET, unix.SOCK_DGRAM, unix.IPPROTO_ICMP, false},
		{"seqpacket over inet", unix.AF_INET, unix.SOCK_SEQPACKET, unix.IPPROTO_SCTP, false},
		{"packet", unix.AF_PACKET, unix.SOCK_RAW, 0, false},
	} {
		err := open(c.domain, c.typ, c.prot)
		switch {
		case c.always && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case !c.always && filter && !errors.Is(err, unix.EACCES):
			t.Errorf("%s under the filter: %v, want EACCES", c.name, err)
		case !filter && (c.name == "udp4" || c.name == "netlink") && err != nil:
			t.Errorf("control: %s does not open without the filter (%v): the test shows nothing", c.name, err)
		}
	}
	// TCP Fast Open: a send that connects, past Landlock's connect check.
	// Without the filter it reaches the port (or is refused by it); with
	// it, EACCES before anything is sent.
	ln, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ln)
	if err := unix.Bind(ln, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(ln, 1); err != nil {
		t.Fatal(err)
	}
	sa, _ := unix.Getsockname(ln)
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(s)
	err = unix.Sendto(s, []byte("x"), unix.MSG_FASTOPEN, sa)
	switch {
	case filter && !errors.Is(err, unix.EACCES):
		t.Errorf("sendto(MSG_FASTOPEN) under the filter: %v, want EACCES", err)
	case !filter && err != nil:
		t.Errorf("control: sendto(MSG_FASTOPEN) to a listening port failed (%v): the test shows nothing", err)
	}
	// SCTP over IPv4: refused by the filter whether or not the kernel has
	// SCTP (without the filter: a socket, or EPROTONOSUPPORT).
	if err := open(unix.AF_INET, unix.SOCK_STREAM, unix.IPPROTO_SCTP); filter && !errors.Is(err, unix.EACCES) {
		t.Errorf("sctp stream under the filter: %v, want EACCES", err)
	}
	mode := "control"
	if filter {
		mode = "filter"
	}
	t.Logf("checked %s", mode)
}

func TestUseLandlock(t *testing.T) {
	for _, tt := range []struct {
		abi        int
		allow, use bool
		wantErr    bool
	}{
		{MinLandlockABI, false, true, false},
		{MinLandlockABI + 2, true, true, false}, // allowed to run without, but it is there: used
		{MinLandlockABI - 1, false, false, true},
		{0, false, false, true},
		{0, true, false, false},
	} {
		use, err := UseLandlock(tt.abi, tt.allow)
		if use != tt.use || (err != nil) != tt.wantErr {
			t.Errorf("UseLandlock(%d, %v) = %v, %v", tt.abi, tt.allow, use, err)
		}
	}
}
