package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ytkeep/ytkeep/internal/confine"
)

// Tests of finding C2: a downloader process must not leave its process
// group (KeepGroup), whatever leaves it anyway is killed when its job ends
// (the server is the subreaper), and a process that still holds the
// output cannot hold up Download.

// The test binary doubles as the programs of these tests: a child that
// leaves its group or puts a process of its own in a new one (leaveFlag),
// and that process (sleepFlag).
const (
	leaveFlag = "-pgrp-test-leave"
	sleepFlag = "-pgrp-test-sleep"
)

func init() {
	if len(os.Args) < 2 {
		return
	}
	switch os.Args[1] {
	case leaveFlag:
		if err := leave(os.Args[2:]); err != nil {
			fmt.Fprintf(os.Stderr, "leave: %v\n", err)
			os.Exit(3)
		}
		os.Exit(0)
	case sleepFlag:
		time.Sleep(10 * time.Minute)
		os.Exit(0)
	}
}

// leave runs in the sandbox as a child. how is "self" (setpgid(0, 0)
// itself, as glibc's setpgrp does) or "child" (start a process that does,
// between fork and exec, as Python's subprocess with process_group does);
// then "exit" or "wait" (for the timeout). hold ("hold" or "") gives the
// process the child's standard output. In the job directory it writes
// "result" (what became of the process: "left", or "stayed" and how it
// ended) and "stat" (its /proc stat line); then it says "ready".
func leave(args []string) error {
	if len(args) != 3 {
		return errors.New("usage: self|child exit|wait hold|-")
	}
	if args[0] == "self" {
		if unix.Getpgrp() != os.Getpid() {
			return errors.New("not its group's leader")
		}
		return unix.Setpgid(0, 0) // a no-op for a leader: only a filter can stop it
	}
	cmd := exec.Command(os.Args[0], sleepFlag)
	if args[2] == "hold" {
		cmd.Stdout = os.Stdout
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		// A filter refusing setpgid with an errno ends up here.
		return os.WriteFile("result", []byte("stayed: "+err.Error()), 0o600)
	}
	pid := cmd.Process.Pid
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return err
	}
	result := "left"
	// A process killed at setpgid is still in our group (a zombie at worst).
	if g, err := unix.Getpgid(pid); err != nil || g == unix.Getpgrp() {
		result = fmt.Sprintf("stayed: %v", cmd.Wait())
	}
	if err := os.WriteFile("stat", stat, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile("result", []byte(result), 0o600); err != nil {
		return err
	}
	fmt.Println("ready")
	if args[1] == "wait" {
		time.Sleep(10 * time.Minute)
	}
	return nil
}

// pgrpLauncher is launcher with the test binary among the raw programs
// and, if seccomp is false, without the downloader's seccomp filters:
// KeepGroup's among them, so that a process can leave its group and
// test the layer behind it.
func pgrpLauncher(t *testing.T, seccomp bool) (*Launcher, string, string) {
	t.Helper()
	root := t.TempDir()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	rules := confine.DownloaderRules(confine.DownloaderParams{JobRoot: root})
	rules.ReadDirs = append(rules.ReadDirs, "/proc") // the tests read the child's processes
	rules.ExecFiles = append(rules.ExecFiles, self)
	l, err := StartLauncher(self, &Setup{
		Rules:       *rules,
		RawPrograms: []string{"/bin/sh", self},
		Landlock:    confine.LandlockABI() >= confine.MinLandlockABI,
		Seccomp:     seccomp,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, root, self
}

func newJobDir(t *testing.T, root string) (string, *os.File) {
	t.Helper()
	dir, err := os.MkdirTemp(root, "job")
	if err != nil {
		t.Fatal(err)
	}
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return dir, d
}

// TestChildCannotLeaveItsGroup: under KeepGroup's filter, setpgid kills
// the process that calls it, whether the child itself (the outcome is a
// seccomp violation) or a process it starts (which dies at setpgid, in
// the child's group).
func TestChildCannotLeaveItsGroup(t *testing.T) {
	l, root, self := pgrpLauncher(t, true)
	t.Run("self", func(t *testing.T) {
		_, d := newJobDir(t, root)
		stderr := newSyncWriter()
		o, err := awaitRun(t, startRun(nil, l, &Spec{Path: self, Args: []string{leaveFlag, "self", "exit", "-"}, Limits: limits}, d, nil, stderr, time.Minute), hangGuard)
		if err != nil {
			t.Fatal(err)
		}
		if !o.Violation() {
			t.Fatalf("outcome %+v, want a SIGSYS (stderr %q)", o, stderr.String())
		}
	})
	t.Run("child", func(t *testing.T) {
		dir, d := newJobDir(t, root)
		stdout, stderr := newSyncWriter(), newSyncWriter()
		o, err := awaitRun(t, startRun(nil, l, &Spec{Path: self, Args: []string{leaveFlag, "child", "exit", "-"}, Limits: limits}, d, stdout, stderr, time.Minute), hangGuard)
		if err != nil {
			t.Fatal(err)
		}
		if o.ExitCode != 0 {
			t.Fatalf("outcome %+v (stderr %q)", o, stderr.String())
		}
		b, err := os.ReadFile(filepath.Join(dir, "result"))
		if err != nil {
			t.Fatal(err)
		}
		if got := string(b); got != "stayed: signal: bad system call" {
			t.Fatalf("the child's process: %q, want killed at setpgid", got)
		}
	})
}

// TestEscapedProcessIsKilled: a process that has left the child's group
// (here through setpgid, the downloader's seccomp filters being off: the
// layer behind them) dies with its job, before the answer, whether the
// child exits or times out; and holding the child's standard output does
// not hold up Run. The child's timeout is short, so the server may kill it
// before it is ready: then the attempt proves nothing and is repeated with
// a longer timeout. Time decides only how many attempts it takes.
func TestEscapedProcessIsKilled(t *testing.T) {
	l, root, self := pgrpLauncher(t, false)
	for _, tc := range []struct {
		name       string
		end, hold  string
		timeout    time.Duration // the first attempt's
		wantExpiry bool
	}{
		{"exit", "exit", "-", time.Minute, false},
		{"exit holding the output", "exit", "hold", time.Minute, false},
		{"timeout holding the output", "wait", "hold", 2 * time.Second, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := &Spec{Path: self, Args: []string{leaveFlag, "child", tc.end, tc.hold}, Limits: limits}
			for timeout := tc.timeout; ; timeout *= 4 {
				if timeout > 2*time.Minute {
					t.Fatal("the child never got ready before its timeout")
				}
				dir, d := newJobDir(t, root)
				stdout, stderr := newSyncWriter(), newSyncWriter()
				o, err := awaitRun(t, startRun(nil, l, spec, d, stdout, stderr, timeout), timeout+hangGuard)
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
				if o.TimedOut != tc.wantExpiry || o.OutputHeld {
					t.Fatalf("outcome %+v (stderr %q)", o, stderr.String())
				}
				result, err := os.ReadFile(filepath.Join(dir, "result"))
				if errors.Is(err, fs.ErrNotExist) && tc.wantExpiry {
					t.Logf("killed at %v before it was ready: again with a longer timeout", timeout)
					continue
				}
				if err != nil {
					t.Fatalf("%v (stderr %q)", err, stderr.String())
				}
				if string(result) != "left" {
					t.Fatalf("the child's process %q: the test shows nothing", result)
				}
				b, err := os.ReadFile(filepath.Join(dir, "stat"))
				if err != nil {
					t.Fatal(err)
				}
				if p := parseStat(t, string(b)); !ended(t, p, hangGuard) {
					t.Fatalf("process %d, which left the child's group, outlived its job", p.pid)
				}
				return
			}
		})
	}
}

// TestSweepSparesOtherJobs: the end of a job whose process left its group
// kills that process, and nothing of another job running meanwhile.
func TestSweepSparesOtherJobs(t *testing.T) {
	l, root, self := pgrpLauncher(t, false)
	dirA, dA := newJobDir(t, root)
	stdoutA, stderrA := newSyncWriter(), newSyncWriter()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runA := make(chan runResult, 1)
	go func() {
		o, err := l.Run(ctx, &Spec{Path: "/bin/sh", Args: []string{"-c",
			`/bin/sleep 600 >sleep.out 2>&1 & read -r st </proc/$!/stat && echo "$st" >stat && echo ready && wait`}, Limits: limits}, dA, stdoutA, stderrA, 10*time.Minute)
		runA <- runResult{o, err}
	}()
	select {
	case <-stdoutA.ready:
	case r := <-runA:
		t.Fatalf("job A ended before it was ready: %v %+v (stderr %q)", r.err, r.o, stderrA.String())
	case <-time.After(hangGuard):
		t.Fatalf("job A not ready after %v", hangGuard)
	}
	b, err := os.ReadFile(filepath.Join(dirA, "stat"))
	if err != nil {
		t.Fatal(err)
	}
	sleeper := parseStat(t, string(b))

	dirB, dB := newJobDir(t, root)
	o, err := awaitRun(t, startRun(nil, l, &Spec{Path: self, Args: []string{leaveFlag, "child", "exit", "-"}, Limits: limits}, dB, nil, nil, time.Minute), hangGuard)
	if err != nil || o.ExitCode != 0 {
		t.Fatalf("job B: %v %+v", err, o)
	}
	if result, err := os.ReadFile(filepath.Join(dirB, "result")); err != nil || string(result) != "left" {
		t.Fatalf("job B's process: %q %v: the test shows nothing", result, err)
	}
	if b, err = os.ReadFile(filepath.Join(dirB, "stat")); err != nil {
		t.Fatal(err)
	}
	if p := parseStat(t, string(b)); !ended(t, p, hangGuard) {
		t.Fatalf("job B's process %d outlived its job", p.pid)
	}

	select {
	case r := <-runA:
		t.Fatalf("job A ended with job B: %v %+v (stderr %q)", r.err, r.o, stderrA.String())
	default:
	}
	now, err := os.ReadFile("/proc/" + strconv.Itoa(sleeper.pid) + "/stat")
	if err != nil {
		t.Fatalf("job A's background process is gone: %v", err)
	}
	if p := parseStat(t, string(now)); p.start != sleeper.start || p.state == "Z" {
		t.Fatalf("job A's background process %d ended with job B", sleeper.pid)
	}
	// Job A still ends as it should.
	cancel()
	if o, err := awaitRun(t, runA, hangGuard); !errors.Is(err, context.Canceled) || o == nil || o.Signal != syscall.SIGKILL {
		t.Fatalf("job A, cancelled: %v %+v", err, o)
	}
	if !ended(t, sleeper, hangGuard) {
		t.Fatalf("job A's background process %d outlived its job", sleeper.pid)
	}
}

// TestHeldOutputDoesNotHoldRun: a process that still holds the child's
// standard output once the child's tree has ended, here the test itself
// (through /proc/<child>/fd/1: out of the server's reach, as a process
// that escaped its kill would be), cannot hold up Run past the server's
// answer; the outcome says so. Retried as TestEscapedProcessIsKilled is.
func TestHeldOutputDoesNotHoldRun(t *testing.T) {
	l, root := launcher(t)
	spec := &Spec{Path: "/bin/sh", Args: []string{"-c", `echo $$ >pid && echo ready && exec /bin/sleep 600`}, Limits: limits}
	for timeout := 2 * time.Second; ; timeout *= 4 {
		if timeout > 2*time.Minute {
			t.Fatal("the child never got ready before its timeout")
		}
		dir, d := newJobDir(t, root)
		stdout, stderr := newSyncWriter(), newSyncWriter()
		done := startRun(nil, l, spec, d, stdout, stderr, timeout)
		select {
		case <-stdout.ready:
		case <-done:
			t.Logf("killed at %v before it was ready: again with a longer timeout", timeout)
			continue
		case <-time.After(timeout + hangGuard):
			t.Fatalf("the child was neither ready nor killed after %v", timeout+hangGuard)
		}
		b, err := os.ReadFile(filepath.Join(dir, "pid"))
		if err != nil {
			t.Fatal(err)
		}
		held, err := os.OpenFile("/proc/"+strings.TrimSpace(string(b))+"/fd/1", os.O_WRONLY, 0)
		if err != nil {
			t.Logf("couldn't take the child's output (%v): killed at %v before? Again with a longer timeout", err, timeout)
			awaitRun(t, done, timeout+hangGuard)
			continue
		}
		o, err := awaitRun(t, done, timeout+hangGuard)
		held.Close()
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		if !o.TimedOut || !o.OutputHeld {
			t.Fatalf("outcome %+v, want a timeout with the output held (stderr %q)", o, stderr.String())
		}
		return
	}
}

// TestPythonSubprocessKeepsItsGroup: yt-dlp starts ffmpeg with Python's
// subprocess, which still works under KeepGroup's filter; only a process
// asked to leave the group (process_group, start_new_session) dies, at
// setpgid or setsid. (TestEndToEnd runs the real yt-dlp and ffmpeg.)
func TestPythonSubprocessKeepsItsGroup(t *testing.T) {
	const python = "/usr/bin/python3"
	if _, err := os.Stat(python); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s missing on CI", python)
		}
		t.Skipf("SKIPPED: %s is not installed: Python's subprocess under KeepGroup is untested", python)
	}
	root := t.TempDir()
	self, _ := os.Executable()
	rules := confine.DownloaderRules(confine.DownloaderParams{JobRoot: root})
	l, err := StartLauncher(self, &Setup{
		Rules:       *rules,
		RawPrograms: []string{python},
		Landlock:    confine.LandlockABI() >= confine.MinLandlockABI,
		Seccomp:     true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	_, d := newJobDir(t, root)
	stdout, stderr := newSyncWriter(), newSyncWriter()
	script := `import subprocess
r = lambda **kw: subprocess.run(["/bin/true"], **kw).returncode
print(r(), r(process_group=0), r(start_new_session=True))`
	o, err := awaitRun(t, startRun(nil, l, &Spec{Path: python, Args: []string{"-c", script}, Limits: limits}, d, stdout, stderr, time.Minute), hangGuard)
	if err != nil || o.ExitCode != 0 {
		t.Fatalf("python: %v %+v (stderr %q)", err, o, stderr.String())
	}
	if want := fmt.Sprintf("0 %d %d\n", -int(unix.SIGSYS), -int(unix.SIGSYS)); stdout.String() != want {
		t.Fatalf("return codes %q, want %q: a plain subprocess, then two killed by SIGSYS", stdout.String(), want)
	}
}
