package main

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
	"golang.org/x/sys/unix"

	"github.com/ytkeep/ytkeep/internal/clitest"
)

func TestMain(m *testing.M) { clitest.Main(m, "ytkeep", main) }

// TestScript runs testdata/script/*.txtar: the usage, the subcommands' argument errors, and doctor on broken configurations, trees, programs and secrets (no script runs demo or loadtest for real).
func TestScript(t *testing.T) { clitest.Run(t) }

// TestStatusScript runs testdata/status/*.txtar: ytkeep status on spool
// trees the scripts build, hostile files included, with the commands
// below (clitest's scripts have none of them, so these live in a
// directory of their own).
func TestStatusScript(t *testing.T) {
	clitest.RunIn(t, "status", map[string]func(*testscript.TestScript, bool, []string){
		"asuser":   cmdAsUser,
		"mkfile":   cmdMkfile,
		"record":   cmdRecord,
		"snapshot": cmdSnapshot,
	})
}

// mkfile PATH SIZE creates a sparse file of SIZE bytes. PATH may be
// written as a Go string in double quotes (inside the script's single
// quotes), for names with control characters.
func cmdMkfile(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: mkfile path size")
	}
	name := args[0]
	if strings.HasPrefix(name, `"`) {
		var err error
		name, err = strconv.Unquote(name)
		ts.Check(err)
	}
	size, err := strconv.ParseInt(args[1], 10, 64)
	ts.Check(err)
	f, err := os.OpenFile(ts.MkAbs(name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	ts.Check(err)
	ts.Check(f.Truncate(size))
	ts.Check(f.Close())
}

// record SRC DST copies SRC to a new file DST without its final newline:
// a txtar file ends with one, a spool record has none.
func cmdRecord(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: record src dst")
	}
	data, err := os.ReadFile(ts.MkAbs(args[0]))
	ts.Check(err)
	f, err := os.OpenFile(ts.MkAbs(args[1]), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	ts.Check(err)
	_, err = f.Write([]byte(strings.TrimSuffix(string(data), "\n")))
	ts.Check(err)
	ts.Check(f.Close())
}

// snapshot DIR prints one line for DIR and each file below it, in name
// order: its path, type and mode, owner, size, modification, change and
// access times in nanoseconds, and a hash of its content. It reads with
// O_NOATIME, changing nothing itself.
func cmdSnapshot(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: snapshot dir")
	}
	w := ts.Stdout()
	root := ts.MkAbs(args[0])
	var walk func(p string)
	walk = func(p string) {
		var st unix.Stat_t
		ts.Check(unix.Lstat(p, &st))
		var data []byte
		var names []string
		typ := st.Mode & unix.S_IFMT
		if typ == unix.S_IFDIR || (typ == unix.S_IFREG && st.Size < 1<<20) {
			fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOATIME|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			ts.Check(err)
			f := os.NewFile(uintptr(fd), p)
			if typ == unix.S_IFDIR {
				names, err = f.Readdirnames(-1)
			} else {
				data, err = io.ReadAll(f)
			}
			f.Close()
			ts.Check(err)
		}
		rel, _ := filepath.Rel(root, p)
		fmt.Fprintf(w, "%q %o %d:%d %d m%d c%d a%d %x\n", rel, st.Mode, st.Uid, st.Gid, st.Size,
			unix.TimespecToNsec(st.Mtim), unix.TimespecToNsec(st.Ctim), unix.TimespecToNsec(st.Atim), sha256.Sum256(data))
		slices.Sort(names)
		for _, n := range names {
			walk(filepath.Join(p, n))
		}
	}
	walk(root)
}

// asuser UID STATUS PROG [ARGS...] runs PROG, one of the test's
// commands, as user and group UID with no supplementary groups (as
// root), and fails unless it exits with STATUS; its output is kept for
// stdout and stderr.
func cmdAsUser(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 3 {
		ts.Fatalf("usage: asuser uid status program [args...]")
	}
	uid, err := strconv.Atoi(args[0])
	ts.Check(err)
	want, err := strconv.Atoi(args[1])
	ts.Check(err)
	// A copy of the test binary, by the command's name, where the user
	// can run it (the one testscript puts in $PATH is root's alone).
	exe, err := os.Executable()
	ts.Check(err)
	bin := ts.MkAbs(".asuser-bin")
	ts.Check(os.MkdirAll(bin, 0o755))
	ts.Check(os.Chmod(bin, 0o755))
	prog := filepath.Join(bin, filepath.Base(args[2]))
	if _, err := os.Stat(prog); errors.Is(err, os.ErrNotExist) {
		data, err := os.ReadFile(exe)
		ts.Check(err)
		ts.Check(os.WriteFile(prog, data, 0o755))
	}
	cmd := exec.Command(prog, args[3:]...)
	cmd.Dir = ts.MkAbs(".")
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/"}
	cmd.Stdout, cmd.Stderr = ts.Stdout(), ts.Stderr()
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid), Groups: []uint32{}}}
	got := 0
	var exit *exec.ExitError
	switch err := cmd.Run(); {
	case errors.As(err, &exit):
		got = exit.ExitCode()
	case err != nil:
		ts.Fatalf("%v", err)
	}
	if got != want {
		ts.Fatalf("%s exited with status %d, want %d", args[2], got, want)
	}
}
