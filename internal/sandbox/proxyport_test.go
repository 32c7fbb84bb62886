package sandbox

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestProxyPortPerDownload: each download reaches the egress proxy on a
// port of its own, so one that holds a hundred connections without a
// request (more than the proxy's pending heads) leaves another download's
// request answered. With one port for all, the second request would find
// the heads full and be dropped unanswered (review finding R4).
func TestProxyPortPerDownload(t *testing.T) {
	// Time limits of minutes: hang guards. The flood holds on until the
	// test is done with it.
	l, root, err := downloaderWithin(t, "testdata/proxy-yt-dlp", 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	const flood, ask = "ffffffffffffffffffffffffff", "aaaaaaaaaaaaaaaaaaaaaaaaaa"
	var wg sync.WaitGroup
	floodOut := newSyncWriter()
	floodDir := jobDir(t, root, flood)
	release := func() { os.WriteFile(filepath.Join(root, flood, "done"), nil, 0o644) }
	defer release()
	wg.Add(1)
	go func() {
		defer wg.Done()
		l.Download(context.Background(), flood, "floodAAAAAA", "best", floodDir, floodOut, nil)
	}()
	// The flood in place first: each of its four processes holds its
	// connections.
	for deadline := time.Now().Add(time.Minute); strings.Count(floodOut.String(), "holding") < 4; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the flood is not in place after a minute: %q", floodOut.String())
		}
	}
	var out bytes.Buffer
	o, err := l.Download(context.Background(), ask, "askAAAAAAAA", "best", jobDir(t, root, ask), &out, nil)
	release()
	wg.Wait()
	if err != nil || o.ExitCode != 0 {
		t.Fatalf("download: %v %+v\n%s", err, o, out.String())
	}
	if got := strings.TrimSpace(out.String()); !strings.HasPrefix(got, "HTTP/1.1 407 ") {
		t.Errorf("the second download's request got %q, want the proxy's 407 (no credentials); the flood: %q", got, floodOut.String())
	}
}

// TestProxyAdmitsOnlyItsUser: a download's proxy port is on the host's
// loopback, where another local user could connect and hold it; the
// server's proxy closes such a connection unanswered and answers its own
// user (egress.LoopbackPeerUID, review finding R4).
func TestProxyAdmitsOnlyItsUser(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("CI must run this as root")
		}
		t.Skip("SKIPPED: a connection from another user needs root")
	}
	// The download holds its port until the test is done (./done); its
	// time limit is a hang guard.
	l, root, err := downloaderWithin(t, "testdata/proxy-yt-dlp", 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	const id = "pppppppppppppppppppppppppp"
	dir := jobDir(t, root, id)
	release := func() { os.WriteFile(filepath.Join(root, id, "done"), nil, 0o644) }
	defer release()
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.Download(context.Background(), id, "peerAAAAAAA", "best", dir, nil, nil)
	}()
	var port string
	for deadline := time.Now().Add(time.Minute); port == "" && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		b, _ := os.ReadFile(filepath.Join(root, id, "port"))
		port = strings.TrimSpace(string(b))
	}
	if port == "" {
		t.Fatal("the download never said its proxy port")
	}
	ask := func(uid uint32) string {
		cmd := exec.Command("/usr/bin/python3", "-c", `import socket, sys
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=60)
c.sendall(b"CONNECT example.com:443 HTTP/1.1\r\n\r\n")
try:
    print(c.recv(100).decode().split("\r\n")[0] or "closed")
except OSError as e:
    print("closed:", e)`, port)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("as uid %d: %v\n%s", uid, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if got := ask(65534); !strings.HasPrefix(got, "closed") {
		t.Errorf("another user got %q from the download's proxy port, want the connection closed unanswered", got)
	}
	if got := ask(uint32(os.Getuid())); !strings.HasPrefix(got, "HTTP/1.1 407 ") {
		t.Errorf("the server's own user got %q, want the proxy's 407 (no credentials)", got)
	}
	release()
	<-done
}
