package worker

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestDiskUse builds hostile job directories and checks that diskUse finds
// each over budget, whatever depth or width it hides its bytes at.
func TestDiskUse(t *testing.T) {
	const (
		small = 512 << 10 // a budget in bytes; a directory takes 4 KiB on ext4
		large = 1 << 30   // a budget that no bytes in these trees reach
		big   = 1 << 20   // a file that alone passes small
	)
	// chain makes n nested directories under root and returns the last;
	// with mkdirat/openat so that no path grows past PATH_MAX.
	chain := func(t *testing.T, root string, n int) int {
		t.Helper()
		fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		for range n {
			if err := unix.Mkdirat(fd, "d", 0o700); err != nil {
				t.Fatal(err)
			}
			sub, err := unix.Openat(fd, "d", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			unix.Close(fd)
			if err != nil {
				t.Fatal(err)
			}
			fd = sub
		}
		t.Cleanup(func() { unix.Close(fd) })
		return fd
	}
	// writeAt writes a file of size bytes of data in the directory fd.
	writeAt := func(t *testing.T, fd int, name string, size int) {
		t.Helper()
		f, err := unix.Openat(fd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(f)
		if size == 0 {
			return
		}
		if _, err := unix.Write(f, make([]byte, size)); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name   string
		budget int64
		build  func(t *testing.T, root string)
		want   string // the limit passed, "" for within budget
	}{
		{"small tree", small, func(t *testing.T, root string) {
			writeAt(t, chain(t, root, 0), "abcdefghijk.mp4", 8<<10)
			writeAt(t, chain(t, root, 2), "frag1", 8<<10)
		}, ""},
		{"files at the depth bound", small, func(t *testing.T, root string) {
			writeAt(t, chain(t, root, diskWalkMaxDepth), "f", 8<<10)
		}, ""},
		{"directory of 100 files", small, func(t *testing.T, root string) {
			fd := chain(t, root, 1)
			for i := range 100 {
				writeAt(t, fd, strconv.Itoa(i), 0)
			}
		}, ""},
		{"big file at depth 12", small, func(t *testing.T, root string) {
			writeAt(t, chain(t, root, 12), "f", big)
		}, diskOverBytes},
		{"big file at depth 20", small, func(t *testing.T, root string) {
			writeAt(t, chain(t, root, 20), "f", big)
		}, diskOverDepth},
		{"empty chain past the depth bound", large, func(t *testing.T, root string) {
			chain(t, root, 10*diskWalkMaxDepth)
		}, diskOverDepth},
		{"wide directory of empty files", large, func(t *testing.T, root string) {
			if testing.Short() {
				t.Skip("creates over 10000 files")
			}
			fd := chain(t, root, 1)
			for i := range diskWalkMaxEntries + 1 {
				writeAt(t, fd, strconv.Itoa(i), 0)
			}
		}, diskOverEntries},
		{"sparse file", small, func(t *testing.T, root string) {
			f, err := os.Create(filepath.Join(root, "sparse"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := f.Truncate(big); err != nil {
				t.Fatal(err)
			}
		}, diskOverBytes},
		{"preallocated file", small, func(t *testing.T, root string) {
			f, err := os.Create(filepath.Join(root, "prealloc"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			err = unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_KEEP_SIZE, 0, big)
			if err == unix.EOPNOTSUPP {
				t.Skip("no fallocate here")
			} else if err != nil {
				t.Fatal(err)
			}
		}, diskOverBytes},
		{"hard links", small, func(t *testing.T, root string) {
			writeAt(t, chain(t, root, 0), "f", small/2)
			for i := range 3 {
				if err := os.Link(filepath.Join(root, "f"), filepath.Join(root, "l"+strconv.Itoa(i))); err != nil {
					t.Fatal(err)
				}
			}
		}, diskOverBytes},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			tt.build(t, root)
			dir, err := os.Open(root)
			if err != nil {
				t.Fatal(err)
			}
			defer dir.Close()
			used, limit := diskUse(int(dir.Fd()), tt.budget)
			if limit != tt.want {
				t.Fatalf("diskUse = %d, %q; want limit %q", used, limit, tt.want)
			}
			if limit == diskOverBytes && used <= tt.budget {
				t.Fatalf("diskUse stopped for bytes at %d, within %d", used, tt.budget)
			}
		})
	}
}

// TestDiskUseUnreadable checks that a directory the walk cannot open
// counts as over budget rather than as empty.
func TestDiskUseUnreadable(t *testing.T) {
	if root := os.Getenv("YTKEEP_DISKUSE_DIR"); root != "" {
		diskUseUnreadable(t, root) // in the child, as another user
		return
	}
	root := t.TempDir()
	hidden := filepath.Join(root, "hidden")
	if err := os.Mkdir(hidden, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(hidden, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(hidden, 0o700) })
	if os.Geteuid() != 0 {
		diskUseUnreadable(t, root)
		return
	}
	// Root reads any directory: walk as an unprivileged user instead, as
	// the worker does, from a copy of this test binary it can execute.
	for _, d := range []string{filepath.Dir(root), root} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	self, _ := os.Executable()
	bin, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	child := filepath.Join(root, "worker.test")
	if err := os.WriteFile(child, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(child, "-test.run=^TestDiskUseUnreadable$")
	cmd.Env = []string{"YTKEEP_DISKUSE_DIR=" + root}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 61002, Gid: 61010, NoSetGroups: true}}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("as uid 61002: %v\n%s", err, out)
	}
}

func diskUseUnreadable(t *testing.T, root string) {
	dir, err := os.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	if used, limit := diskUse(int(dir.Fd()), 1<<30); limit != diskOverUnreadable {
		t.Fatalf("diskUse = %d, %q; want %q", used, limit, diskOverUnreadable)
	}
}
