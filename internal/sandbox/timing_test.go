package sandbox

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Helpers for tests whose outcome must not depend on a loaded machine's
// timing: they wait for events (a child's "ready", a descriptor's end, a
// process's exit), and bound each wait only to catch a hang.

// hangGuard bounds a wait for what a working machine does at once, even
// loaded: reaching it means the test hung, never that it was slow.
const hangGuard = time.Minute

type runResult struct {
	o   *Outcome
	err error
}

// startRun runs spec on l in the background; runs, if not nil, counts
// it until it returns.
func startRun(runs *sync.WaitGroup, l *Launcher, spec *Spec, dir *os.File, stdout, stderr io.Writer, timeout time.Duration) <-chan runResult {
	ch := make(chan runResult, 1)
	if runs != nil {
		runs.Add(1)
	}
	go func() {
		if runs != nil {
			defer runs.Done()
		}
		o, err := l.Run(context.Background(), spec, dir, stdout, stderr, timeout)
		ch <- runResult{o, err}
	}()
	return ch
}

// awaitRun waits for a run started by startRun, failing the test if it
// has not ended after guard.
func awaitRun(t *testing.T, ch <-chan runResult, guard time.Duration) (*Outcome, error) {
	t.Helper()
	select {
	case r := <-ch:
		return r.o, r.err
	case <-time.After(guard):
		t.Fatalf("the launcher server did not answer in %v", guard)
		return nil, nil
	}
}

// procStat is what the tests read of a /proc/<pid>/stat line.
type procStat struct {
	pid   int
	state string // "Z": a zombie
	start string // starttime: tells a process from a later one with its ID
}

func parseStat(t *testing.T, line string) procStat {
	t.Helper()
	open, end := strings.IndexByte(line, '('), strings.LastIndexByte(line, ')')
	if open < 1 || end < open {
		t.Fatalf("bad stat line %q", line)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line[:open]))
	f := strings.Fields(line[end+1:])
	if err != nil || len(f) < 20 {
		t.Fatalf("bad stat line %q", line)
	}
	return procStat{pid: pid, state: f[0], start: f[19]}
}

// ended reports whether process p has ended (it is a zombie or gone, or
// its ID belongs to another process now), waiting for that at most guard.
// It kills a survivor before it returns false.
func ended(t *testing.T, p procStat, guard time.Duration) bool {
	t.Helper()
	fd, err := unix.PidfdOpen(p.pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return true
	}
	if err != nil {
		t.Fatalf("pidfd_open %d: %v", p.pid, err)
	}
	defer unix.Close(fd)
	// If /proc shows p running after the descriptor was opened, the
	// descriptor is p's: an ID is given again only once its process is
	// gone.
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.pid) + "/stat")
	if err != nil {
		return true
	}
	if now := parseStat(t, string(b)); now.start != p.start || now.state == "Z" {
		return true
	}
	// A pidfd becomes readable when its process exits.
	deadline := time.Now().Add(guard)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
			return false
		}
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, int(left.Milliseconds())+1)
		if n == 1 {
			return true
		}
		if err != nil && !errors.Is(err, unix.EINTR) {
			t.Fatalf("poll: %v", err)
		}
	}
}

// syncWriter is an output buffer safe to read while a launcher writes it.
// It closes ready once the output starts with "ready\n".
type syncWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	ready chan struct{}
}

func newSyncWriter() *syncWriter { return &syncWriter{ready: make(chan struct{})} }

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	was := strings.HasPrefix(w.buf.String(), "ready\n")
	w.buf.Write(p)
	if !was && w.ready != nil && strings.HasPrefix(w.buf.String(), "ready\n") {
		close(w.ready)
	}
	return len(p), nil
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// readAll reads r to its end, which comes when every copy of the pipe's
// write end is closed, failing the test if that takes longer than guard.
func readAll(t *testing.T, r io.Reader, guard time.Duration) []byte {
	t.Helper()
	ch := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(r)
		ch <- b
	}()
	select {
	case b := <-ch:
		return b
	case <-time.After(guard):
		t.Fatalf("a descriptor still open after %v", guard)
		return nil
	}
}
