package spool

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

type fixture struct {
	root                         string
	tmp, in, claimed, quarantine *Dir
	out                          *Outbox
	box                          *Inbox
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	root := t.TempDir()
	f := &fixture{root: root}
	open := func(name string, mode os.FileMode) *Dir {
		p := filepath.Join(root, name)
		if err := os.Mkdir(p, mode); err != nil {
			t.Fatal(err)
		}
		d, err := OpenDir(p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		return d
	}
	f.tmp = open("tmp", 0o700)
	f.in = open("incoming", 0o1730)
	f.claimed = open("claimed", 0o700)
	f.quarantine = open("quarantine", 0o700)
	f.out = &Outbox{Tmp: f.tmp, Dst: f.in, GID: -1}
	f.box = &Inbox{In: f.in, Claimed: f.claimed, Quarantined: f.quarantine, UID: os.Getuid(), MaxSize: 4096}
	return f
}

func (f *fixture) path(parts ...string) string {
	return filepath.Join(append([]string{f.root}, parts...)...)
}

func (f *fixture) names(t *testing.T, d *Dir) []string {
	t.Helper()
	n, err := d.Names()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestPutClaim(t *testing.T) {
	f := newFixture(t)
	data := []byte(`{"v":1}`)
	if err := f.out.Put("a.job", data); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(f.path("incoming", "a.job"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", st.Mode().Perm())
	}
	if n := f.names(t, f.tmp); len(n) != 0 {
		t.Errorf("temporary files left behind: %v", n)
	}
	if err := f.out.Put("a.job", []byte("other")); err == nil {
		t.Fatal("Put overwrote an existing record")
	}
	got, err := f.box.Claim("a.job", "a.job.1")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("claimed %q, want %q", got, data)
	}
	if _, err := os.Stat(f.path("claimed", "a.job.1")); err != nil {
		t.Fatalf("claimed file missing: %v", err)
	}
	if _, err := f.box.Claim("a.job", "a.job.1"); !errors.Is(err, ErrGone) {
		t.Fatalf("second claim = %v, want ErrGone", err)
	}
}

func TestPutRefusesBadNames(t *testing.T) {
	f := newFixture(t)
	for _, name := range []string{"", ".", "..", "../x", "a/b", "a b", "x\n", strings.Repeat("a", 201)} {
		if err := f.out.Put(name, []byte("x")); err == nil {
			t.Errorf("Put(%q) succeeded", name)
		}
	}
}

func TestClaimHostile(t *testing.T) {
	tests := []struct {
		name   string
		make   func(t *testing.T, f *fixture, p string)
		reason string
		uid    int // expected owner; -2 means "mine"
	}{
		{"symlink", func(t *testing.T, f *fixture, p string) {
			os.WriteFile(f.path("secret"), []byte("s3cret"), 0o600)
			must(t, os.Symlink(f.path("secret"), p))
		}, "symlink", -2},
		{"dangling symlink", func(t *testing.T, f *fixture, p string) {
			must(t, os.Symlink("/nonexistent", p))
		}, "symlink", -2},
		{"hardlink", func(t *testing.T, f *fixture, p string) {
			must(t, os.WriteFile(f.path("other"), []byte(`{"v":1}`), 0o600))
			must(t, os.Link(f.path("other"), p))
		}, "hard link", -2},
		{"fifo", func(t *testing.T, f *fixture, p string) {
			must(t, syscall.Mkfifo(p, 0o600))
		}, "FIFO", -2},
		{"directory", func(t *testing.T, f *fixture, p string) {
			must(t, os.Mkdir(p, 0o700))
		}, "directory", -2},
		{"unix socket", func(t *testing.T, f *fixture, p string) {
			fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
			must(t, err)
			defer syscall.Close(fd)
			must(t, syscall.Bind(fd, &syscall.SockaddrUnix{Name: p}))
		}, "device or socket", -2},
		{"oversize", func(t *testing.T, f *fixture, p string) {
			must(t, os.WriteFile(p, bytes.Repeat([]byte("x"), 4097), 0o600))
		}, "size", -2},
		{"sparse oversize", func(t *testing.T, f *fixture, p string) {
			fh, err := os.Create(p)
			must(t, err)
			must(t, fh.Truncate(1<<30))
			fh.Close()
		}, "size", -2},
		{"wrong owner", func(t *testing.T, f *fixture, p string) {
			must(t, os.WriteFile(p, []byte(`{"v":1}`), 0o600))
		}, "owned by uid", os.Getuid() + 1},
		{"setuid bit", func(t *testing.T, f *fixture, p string) {
			must(t, os.WriteFile(p, []byte(`{"v":1}`), 0o600))
			must(t, syscall.Chmod(p, 0o4600))
		}, "setuid", -2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			if tt.uid != -2 {
				f.box.UID = tt.uid
			}
			tt.make(t, f, f.path("incoming", "x.job"))
			data, err := f.box.Claim("x.job", "x.job.1")
			var he *HostileError
			if !errors.As(err, &he) {
				t.Fatalf("Claim = %q, %v; want a HostileError", data, err)
			}
			if !strings.Contains(he.Reason, tt.reason) {
				t.Fatalf("reason %q, want it to mention %q", he.Reason, tt.reason)
			}
			if n := f.names(t, f.quarantine); len(n) != 1 {
				t.Fatalf("quarantine holds %v, want the one hostile file", n)
			}
			if n := f.names(t, f.claimed); len(n) != 0 {
				t.Fatalf("claimed holds %v after a hostile file", n)
			}
			if n := f.names(t, f.in); len(n) != 0 {
				t.Fatalf("incoming still holds %v", n)
			}
			// The spool keeps working after a hostile file.
			f.box.UID = os.Getuid()
			must(t, f.out.Put("y.job", []byte(`{}`)))
			if _, err := f.box.Claim("y.job", "y.job.1"); err != nil {
				t.Fatalf("claim after hostile file: %v", err)
			}
		})
	}
}

func TestClaimDuplicateIsQuarantined(t *testing.T) {
	f := newFixture(t)
	must(t, f.out.Put("a.job", []byte("1")))
	if _, err := f.box.Claim("a.job", "a.job.1"); err != nil {
		t.Fatal(err)
	}
	must(t, f.out.Put("a.job", []byte("2")))
	_, err := f.box.Claim("a.job", "a.job.1")
	var he *HostileError
	if !errors.As(err, &he) {
		t.Fatalf("replayed record claimed: %v", err)
	}
	got, _ := os.ReadFile(f.path("claimed", "a.job.1"))
	if string(got) != "1" {
		t.Fatalf("claimed record overwritten by replay: %q", got)
	}
}

func TestClaimInvalidName(t *testing.T) {
	f := newFixture(t)
	must(t, os.WriteFile(f.path("incoming", "bad name"), []byte("x"), 0o600))
	_, err := f.box.Claim("bad name", "bad name.1")
	var he *HostileError
	if !errors.As(err, &he) {
		t.Fatalf("Claim(bad name) = %v", err)
	}
	if n := f.names(t, f.quarantine); len(n) != 1 || strings.Contains(n[0], " ") {
		t.Fatalf("quarantine holds %q", n)
	}
}

func TestOpenDirRefusesSymlink(t *testing.T) {
	root := t.TempDir()
	must(t, os.Mkdir(filepath.Join(root, "real"), 0o700))
	must(t, os.Symlink(filepath.Join(root, "real"), filepath.Join(root, "link")))
	if d, err := OpenDir(filepath.Join(root, "link")); err == nil {
		d.Close()
		t.Fatal("OpenDir followed a symlink")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func BenchmarkPut(b *testing.B) {
	root := b.TempDir()
	for _, n := range []string{"tmp", "in"} {
		os.Mkdir(filepath.Join(root, n), 0o700)
	}
	tmp, _ := OpenDir(filepath.Join(root, "tmp"))
	in, _ := OpenDir(filepath.Join(root, "in"))
	o := &Outbox{Tmp: tmp, Dst: in, GID: -1}
	data := bytes.Repeat([]byte("x"), 200)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := o.Put("r"+strconv.Itoa(i), data); err != nil {
			b.Fatal(err)
		}
	}
}

// TestGroupCommit checks that every Sync call is covered by an fsync that
// started after the call (fsyncs are numbered as they start).
func TestGroupCommit(t *testing.T) {
	var g groupCommit
	fd, err := syscall.Open(t.TempDir(), syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	var wg sync.WaitGroup
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.mu.Lock()
			before := g.started // a running fsync may predate our call
			g.mu.Unlock()
			if err := g.sync(fd); err != nil {
				t.Error(err)
			}
			g.mu.Lock()
			defer g.mu.Unlock()
			// The fsync that covered us must have started after we looked.
			if g.done < before+1 {
				t.Errorf("returned after fsync %d, needed one numbered at least %d", g.done, before+1)
			}
		}()
	}
	wg.Wait()
	if g.started == 0 || g.started > 64 {
		t.Fatalf("%d fsyncs for 64 callers", g.started)
	}
	t.Logf("64 concurrent callers shared %d fsyncs", g.started)
}
