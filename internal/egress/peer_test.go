package egress

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// TestLoopbackPeerUID finds the owner of a loopback connection's other
// end: this process, and (as root) a process of another user, whose
// connection a proxy vetting its peers closes unanswered.
func TestLoopbackPeerUID(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if uid, err := LoopbackPeerUID(s); err != nil || uid != os.Getuid() {
		t.Fatalf("LoopbackPeerUID = %d, %v; want %d", uid, err, os.Getuid())
	}
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("CI must run this as root")
		}
		t.Skip("SKIPPED: a connection from another user needs root")
	}
	// A proxy that admits only its own user.
	p := &Proxy{Policy: Policy{Hosts: []string{"*.googlevideo.com"}, Ports: []uint16{443}},
		Peer: func(c net.Conn) error {
			uid, err := LoopbackPeerUID(c)
			if err == nil && uid != os.Getuid() {
				err = fmt.Errorf("uid %d", uid)
			}
			return err
		}}
	pl, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pl.Close()
	go p.Serve(pl)
	ask := func(uid uint32) string {
		cmd := exec.Command("/usr/bin/python3", "-c", `import socket, sys
h, p = sys.argv[1].split(":")
c = socket.create_connection((h, int(p)), timeout=5)
c.sendall(b"CONNECT example.com:443 HTTP/1.1\r\n\r\n")
try:
    print(c.recv(100).decode().split("\r\n")[0] or "closed")
except OSError as e:
    print("closed:", e)`, pl.Addr().String())
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("as uid %d: %v\n%s", uid, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if got := ask(0); !strings.HasPrefix(got, "HTTP/1.1 407 ") {
		t.Errorf("our own user got %q, want the proxy's 407 (no credentials)", got)
	}
	if got := ask(65534); !strings.HasPrefix(got, "closed") {
		t.Errorf("another user got %q, want the connection closed unanswered", got)
	}
}
