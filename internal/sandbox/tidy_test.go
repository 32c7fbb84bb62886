package sandbox

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestTidy: after a download only the top's regular files stay, readable
// by the worker's group; whatever else the child made goes, even a
// directory it left without write or search permission.
func TestTidy(t *testing.T) {
	d := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(d, "video.mp4"), []byte("v"), 0o600))
	must(os.MkdirAll(filepath.Join(d, ".home", "a", "b"), 0o700))
	must(os.WriteFile(filepath.Join(d, ".home", "a", "b", "f"), []byte("x"), 0o600))
	must(os.Chmod(filepath.Join(d, ".home", "a", "b"), 0o100))
	must(os.Chmod(filepath.Join(d, ".home", "a"), 0o500))
	must(os.Symlink("/etc/passwd", filepath.Join(d, "link.mp4")))
	must(unix.Mkfifo(filepath.Join(d, "fifo.mp4"), 0o600))
	f, err := os.Open(d)
	must(err)
	defer f.Close()
	if err := tidy(f); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(d)
	if len(ents) != 1 || ents[0].Name() != "video.mp4" {
		t.Fatalf("left %v, want only video.mp4", ents)
	}
	if st, _ := os.Stat(filepath.Join(d, "video.mp4")); st.Mode().Perm() != 0o640 {
		t.Errorf("video.mp4 is %v, want 0640", st.Mode())
	}
}

// TestChmodNoFollow: a mode change never goes through a symbolic link.
func TestChmodNoFollow(t *testing.T) {
	d := t.TempDir()
	target := filepath.Join(d, "target")
	if err := os.WriteFile(target, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Symlink(target, filepath.Join(d, "link"))
	f, err := os.Open(d)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := chmodNoFollow(int(f.Fd()), "link", 0o644); err == nil {
		t.Error("chmod through a symbolic link succeeded")
	}
	if st, _ := os.Stat(target); st.Mode().Perm() != 0o600 {
		t.Errorf("the link's target became %v", st.Mode())
	}
	if err := chmodNoFollow(int(f.Fd()), "target", 0o640); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(target); st.Mode().Perm() != 0o640 {
		t.Errorf("target is %v, want 0640", st.Mode())
	}
}

// TestTidyDeepTree: a chain of directories far deeper than the
// descriptors tidy may hold (a download can build one within the disk
// walk's bounds and join it in one go) is removed all the same.
func TestTidyDeepTree(t *testing.T) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	low := lim
	low.Cur = 256
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	defer unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
	d := t.TempDir()
	os.WriteFile(filepath.Join(d, "video.mp4"), []byte("v"), 0o600)
	// 2000 levels, made relative to each level (paths would pass PATH_MAX).
	fd, err := unix.Open(d, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2000; i++ {
		if err := unix.Mkdirat(fd, "d", 0o700); err != nil {
			t.Fatal(err)
		}
		next, err := unix.Openat(fd, "d", unix.O_RDONLY|unix.O_DIRECTORY, 0)
		unix.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		fd = next
	}
	unix.Close(fd)
	f, err := os.Open(d)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := tidy(f); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(d); len(ents) != 1 || ents[0].Name() != "video.mp4" {
		t.Fatalf("left %d entries, want only video.mp4", len(ents))
	}
}
