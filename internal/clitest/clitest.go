// Package clitest runs the command-line tests of ytkeep's binaries:
// testscript scripts (github.com/rogpeppe/go-internal/testscript) in each
// cmd/<binary>/testdata/script, with the commands and conditions below.
// Only tests import it.
package clitest

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
	"golang.org/x/sys/unix"

	"github.com/ytkeep/ytkeep/internal/spool"
)

// Main lets the scripts run the package's main as the command name:
// testscript puts a copy of the test binary by that name in $PATH, and
// the copy runs main. main parses the command line with the flag
// package's default set, which in a test binary also holds the testing
// flags: it gets a fresh set first, as in the real binary.
func Main(m *testing.M, name string, main func()) {
	testscript.Main(m, map[string]func(){name: func() {
		flag.CommandLine = flag.NewFlagSet(os.Args[0], flag.ExitOnError)
		main()
	}})
}

// Run runs testdata/script/*.txtar.
func Run(t *testing.T) { RunIn(t, "script", nil) }

// RunIn runs testdata/<dir>/*.txtar with the commands below and extra.
func RunIn(t *testing.T, dir string, extra map[string]func(*testscript.TestScript, bool, []string)) {
	cmds := map[string]func(*testscript.TestScript, bool, []string){
		"cat":      cmdCat,
		"envsubst": cmdEnvsubst,
		"exitcode": cmdExitcode,
		"lsdir":    cmdLsdir,
		"mkspool":  cmdMkspool,
	}
	for name, cmd := range extra {
		cmds[name] = cmd
	}
	testscript.Run(t, testscript.Params{
		Dir: filepath.Join("testdata", dir),
		// In the test's own temporary directory, which the testing
		// package removes even when -run leaves out some scripts (then
		// testscript's own would stay behind).
		WorkdirRoot:         workdirRoot(t),
		RequireExplicitExec: true,
		Setup:               setup,
		Condition:           condition,
		Cmds:                cmds,
	})
}

// workdirRoot returns a temporary directory for the scripts' $WORK. As
// root, -exit-alert switches to the configured run_as ids before it opens
// the spool in $WORK: the directories above it let any user through.
func workdirRoot(t *testing.T) string {
	root := t.TempDir()
	if os.Geteuid() == 0 {
		for _, d := range []string{filepath.Dir(root), root} {
			if err := os.Chmod(d, 0o711); err != nil {
				t.Fatal(err)
			}
		}
	}
	return root
}

// setup gives the scripts $UID and $GID, the ids the tests run as.
func setup(env *testscript.Env) error {
	env.Setenv("UID", strconv.Itoa(os.Getuid()))
	env.Setenv("GID", strconv.Itoa(os.Getgid()))
	if os.Geteuid() == 0 {
		return os.Chmod(env.WorkDir, 0o711) // see workdirRoot
	}
	return nil
}

// condition adds [root]. The daemons behave differently by design when
// started as root (they switch to run_as, and refuse to run without it)
// and when not (they check that they already run as run_as), and only
// root can give a spool tree the production owners (two users, neither
// root), the one tree doctor accepts. A script pins the path that
// applies to whoever runs the tests: root on CI, a developer's user
// elsewhere.
func condition(cond string) (bool, error) {
	if cond == "root" {
		return os.Geteuid() == 0, nil
	}
	return false, fmt.Errorf("unknown condition %q", cond)
}

// exitcode N PROG [ARGS...] runs PROG like exec and fails unless it exits
// with status N; its output is kept for stdout and stderr.
func cmdExitcode(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exitcode N program [args...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("usage: exitcode N program [args...]")
	}
	got := 0
	var exit *exec.ExitError
	switch err := ts.Exec(args[1], args[2:]...); {
	case errors.As(err, &exit):
		got = exit.ExitCode()
	case err != nil:
		ts.Fatalf("%v", err)
	}
	if got != want {
		ts.Fatalf("%s exited with status %d, want %d", args[1], got, want)
	}
}

// envsubst FILE... replaces $VAR and ${VAR} in each file with the
// script's environment (a configuration needs absolute paths under
// $WORK). A variable that is unset or empty is an error.
func cmdEnvsubst(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) == 0 {
		ts.Fatalf("usage: envsubst file...")
	}
	for _, name := range args {
		path := ts.MkAbs(name)
		data, err := os.ReadFile(path)
		ts.Check(err)
		out := os.Expand(string(data), func(k string) string {
			v := ts.Getenv(k)
			if v == "" {
				ts.Fatalf("%s: $%s is not set", name, k)
			}
			return v
		})
		ts.Check(os.WriteFile(path, []byte(out), 0o644))
	}
}

// mkspool DIR DOWNLOADS [RECEIVER_UID WORKER_UID SPOOL_GID MEDIA_GID DOWNLOADER_GID COURIER_UID COURIER_GID]
// makes the spool tree and the downloads directory with the production
// modes, owned by the current user or (as root) by the given ids.
func cmdMkspool(ts *testscript.TestScript, neg bool, args []string) {
	if neg || (len(args) != 2 && len(args) != 9) {
		ts.Fatalf("usage: mkspool dir downloads [receiver-uid worker-uid spool-gid media-gid downloader-gid courier-uid courier-gid]")
	}
	l := spool.Layout{Root: ts.MkAbs(args[0])}
	downloads := ts.MkAbs(args[1])
	if len(args) == 2 {
		ts.Check(l.CreateSingleUser(downloads))
		return
	}
	var ids [7]int
	for i, a := range args[2:] {
		n, err := strconv.Atoi(a)
		if err != nil {
			ts.Fatalf("mkspool: %q is not a numeric id", a)
		}
		ids[i] = n
	}
	ts.Check(l.Create(downloads, &spool.Owners{ReceiverUID: ids[0], WorkerUID: ids[1], SpoolGID: ids[2], MediaGID: ids[3],
		DownloaderGID: ids[4], CourierUID: ids[5], CourierGID: ids[6]}))
}

// lsdir DIR prints one line per entry of DIR, by name: the name, the mode
// in octal (with the setuid, setgid and sticky bits), the uid and the gid.
func cmdLsdir(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: lsdir dir")
	}
	w := ts.Stdout() // now, so that an empty directory prints nothing
	dir := ts.MkAbs(args[0])
	entries, err := os.ReadDir(dir)
	ts.Check(err)
	for _, e := range entries {
		var st unix.Stat_t
		ts.Check(unix.Lstat(filepath.Join(dir, e.Name()), &st))
		fmt.Fprintf(w, "%s %04o %d %d\n", e.Name(), st.Mode&0o7777, st.Uid, st.Gid)
	}
}

// cat PATTERN... prints every file matching each glob pattern (alert files
// have random names); a pattern that matches nothing is an error.
func cmdCat(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) == 0 {
		ts.Fatalf("usage: cat pattern...")
	}
	w := ts.Stdout()
	for _, p := range args {
		names, err := filepath.Glob(ts.MkAbs(p))
		ts.Check(err)
		if len(names) == 0 {
			ts.Fatalf("cat: nothing matches %s", p)
		}
		for _, name := range names {
			data, err := os.ReadFile(name)
			ts.Check(err)
			w.Write(data)
		}
	}
}
