package daemon

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ytkeep/ytkeep/internal/config"
)

// TestReadStdinConfig gives the test process a configuration file as
// standard input, as systemd's StandardInput=file: does, and checks that
// ReadStdinConfig reads and checks it and leaves no descriptor on the
// file, valid or not: a program started afterwards with the process's
// standard input gets /dev/null.
func TestReadStdinConfig(t *testing.T) {
	tests := []struct {
		name, text, want string // want: "" = accepted
	}{
		{"valid", "[worker]\nconcurrency = 3\n", ""},
		{"invalid", "[worker]\nconcurrency = 99\n", "invalid configuration from standard input:\nworker.concurrency 99 is not between 1 and 16"},
		{"empty", "", "config from standard input is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ytkeep.toml")
			if err := os.WriteFile(path, []byte(tt.text), 0o600); err != nil {
				t.Fatal(err)
			}
			setStdin(t, path)

			cfg, err := ReadStdinConfig((*config.Config).CheckDownloader)
			switch {
			case tt.want == "" && err != nil:
				t.Fatal(err)
			case tt.want == "" && cfg.Worker.Concurrency != 3:
				t.Fatalf("concurrency %d, want 3 (from standard input)", cfg.Worker.Concurrency)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error %v, want %q", err, tt.want)
			}

			if fds := openOn(t, path); len(fds) > 0 {
				t.Errorf("descriptors %v still refer to the configuration file", fds)
			}
			var st, null unix.Stat_t
			if err := unix.Fstat(0, &st); err != nil {
				t.Fatal(err)
			}
			if err := unix.Stat(os.DevNull, &null); err != nil {
				t.Fatal(err)
			}
			if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != null.Rdev {
				t.Errorf("standard input is not /dev/null (mode %o, rdev %d)", st.Mode, st.Rdev)
			}
			// What a program started with our standard input gets.
			child := exec.Command("readlink", "/proc/self/fd/0")
			child.Stdin = os.Stdin
			out, err := child.Output()
			if got := strings.TrimSpace(string(out)); err != nil || got != os.DevNull {
				t.Errorf("a child's standard input is %q (%v), want %s", got, err, os.DevNull)
			}
		})
	}
}

// setStdin makes path the test process's descriptor 0 until the test
// ends.
func setStdin(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	saved, err := unix.FcntlInt(0, unix.F_DUPFD_CLOEXEC, 3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.Dup3(saved, 0, 0); err != nil {
			t.Errorf("restoring standard input: %v", err)
		}
		unix.Close(saved)
	})
	if err := unix.Dup3(int(f.Fd()), 0, 0); err != nil {
		t.Fatal(err)
	}
}

// openOn lists this process's descriptors that refer to path.
func openOn(t *testing.T, path string) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var fds []string
	for _, e := range ents {
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && target == path {
			fds = append(fds, e.Name())
		}
	}
	return fds
}
