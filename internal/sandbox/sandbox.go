// Package sandbox runs a program in the downloader domain: a child process
// made by re-executing our own binary in launcher mode, which confines
// itself and then executes the program with an explicit environment.
//
// The parent passes the launch Spec as JSON on file descriptor 3 and the job
// directory on descriptor 4; nothing travels through the environment or
// argv. The child runs in its own process group with SIGKILL as its parent
// death signal, and the whole group is killed when it exits, times out or
// the context ends.
package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ChildFlag is the flag that puts our binary in launcher mode.
const ChildFlag = "-sandbox-child"

// Limits are the child's resource limits.
type Limits struct {
	CPUSeconds uint64 // RLIMIT_CPU
	FileBytes  uint64 // RLIMIT_FSIZE: largest file it may write
	OpenFiles  uint64 // RLIMIT_NOFILE
	Processes  uint64 // RLIMIT_NPROC (counted per real uid)
}

// Spec is what the child executes.
type Spec struct {
	Path   string   // absolute path of the program
	Args   []string // argv[1:]
	Env    []string // the complete environment
	Limits Limits
}

const maxSpec = 64 << 10

// Outcome is how the child ended.
type Outcome struct {
	ExitCode int            // -1 if killed by a signal
	Signal   syscall.Signal // the signal that killed it, if any
	TimedOut bool
	Elapsed  time.Duration
}

// Violation reports whether the child was killed by the seccomp filter.
func (o *Outcome) Violation() bool { return o.Signal == syscall.SIGSYS }

// Run starts self (our own executable) in launcher mode with spec and the
// job directory dir, copies its standard output to stdout and standard
// error to stderr, and waits for it, at most timeout.
func Run(ctx context.Context, self string, spec *Spec, dir *os.File, stdout, stderr io.Writer, timeout time.Duration) (*Outcome, error) {
	if err := spec.check(); err != nil {
		return nil, err
	}
	data, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	specR, specW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer specR.Close()

	cmd := exec.Command(self, ChildFlag)
	cmd.Env = []string{} // the launcher needs nothing; the program gets spec.Env
	cmd.Stdin = nil      // /dev/null
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	cmd.ExtraFiles = []*os.File{specR, dir} // fds 3 and 4
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:   true,
		Pdeathsig: syscall.SIGKILL,
	}
	// Pdeathsig fires when the thread that forked exits; keep this
	// goroutine on one thread until the child is reaped.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	start := time.Now()
	if err := cmd.Start(); err != nil {
		specW.Close()
		return nil, fmt.Errorf("couldn't start the sandbox child: %w", err)
	}
	pgid := cmd.Process.Pid
	_, werr := specW.Write(data)
	specW.Close()
	if werr != nil {
		killGroup(pgid)
		cmd.Wait()
		return nil, fmt.Errorf("couldn't pass the spec to the sandbox child: %w", werr)
	}

	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	o := &Outcome{}
	select {
	case err = <-done:
	case <-timer.C:
		o.TimedOut = true
		killGroup(pgid)
		err = <-done
	case <-ctx.Done():
		killGroup(pgid)
		err = <-done
	}
	// Leave nothing behind: helpers (ffmpeg) share the process group.
	killGroup(pgid)
	o.Elapsed = time.Since(start)
	o.ExitCode = cmd.ProcessState.ExitCode()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		o.Signal = ws.Signal()
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return o, err
	}
	if ctx.Err() != nil {
		return o, ctx.Err()
	}
	return o, nil
}

func killGroup(pgid int) {
	unix.Kill(-pgid, unix.SIGKILL)
}

func (s *Spec) check() error {
	if len(s.Path) == 0 || s.Path[0] != '/' {
		return errors.New("sandbox spec: program path must be absolute")
	}
	if s.Limits.CPUSeconds == 0 || s.Limits.FileBytes == 0 || s.Limits.OpenFiles == 0 || s.Limits.Processes == 0 {
		return errors.New("sandbox spec: every limit must be set")
	}
	return nil
}

// ChildMain is the launcher: it runs in the child process, reads the spec,
// confines the process and executes the program. It never returns; on any
// error it exits with status 126 after a message on standard error.
func ChildMain() {
	err := child()
	fmt.Fprintf(os.Stderr, "ytkeep sandbox: %v\n", err)
	os.Exit(126)
}

func child() error {
	if err := checkFD(3, unix.S_IFIFO); err != nil {
		return fmt.Errorf("launched without a spec pipe on fd 3: %w", err)
	}
	if err := checkFD(4, unix.S_IFDIR); err != nil {
		return fmt.Errorf("launched without a job directory on fd 4: %w", err)
	}
	specFile := os.NewFile(3, "spec")
	dirFile := os.NewFile(4, "jobdir")
	data, err := io.ReadAll(io.LimitReader(specFile, maxSpec+1))
	specFile.Close()
	if err != nil || len(data) > maxSpec {
		return fmt.Errorf("couldn't read the spec: %v", err)
	}
	var spec Spec
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&spec); err != nil {
		return fmt.Errorf("couldn't decode the spec: %w", err)
	}
	if err := spec.check(); err != nil {
		return err
	}
	if err := unix.Fchdir(int(dirFile.Fd())); err != nil {
		return fmt.Errorf("couldn't enter the job directory: %w", err)
	}
	dirFile.Close()
	// From here on the process may not gain privileges, even through
	// setuid binaries or file capabilities.
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("couldn't set no_new_privs: %w", err)
	}
	if err := setLimits(&spec.Limits); err != nil {
		return err
	}
	if err := confine(&spec); err != nil {
		return fmt.Errorf("couldn't confine the child: %w", err)
	}
	// Descriptors inherited without close-on-exec from whoever started the
	// worker would otherwise pass straight into the program.
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return fmt.Errorf("couldn't close inherited descriptors: %w", err)
	}
	argv := append([]string{spec.Path}, spec.Args...)
	return fmt.Errorf("couldn't execute %s: %w", spec.Path, unix.Exec(spec.Path, argv, spec.Env))
}

func checkFD(fd int, kind uint32) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != kind {
		return fmt.Errorf("fd %d has the wrong type", fd)
	}
	return nil
}

func setLimits(l *Limits) error {
	for _, r := range []struct {
		res  int
		name string
		v    uint64
	}{
		{unix.RLIMIT_CPU, "RLIMIT_CPU", l.CPUSeconds},
		{unix.RLIMIT_FSIZE, "RLIMIT_FSIZE", l.FileBytes},
		{unix.RLIMIT_NOFILE, "RLIMIT_NOFILE", l.OpenFiles},
		{unix.RLIMIT_NPROC, "RLIMIT_NPROC", l.Processes},
		{unix.RLIMIT_CORE, "RLIMIT_CORE", 0},
	} {
		if err := unix.Setrlimit(r.res, &unix.Rlimit{Cur: r.v, Max: r.v}); err != nil {
			return fmt.Errorf("couldn't set %s: %w", r.name, err)
		}
	}
	return nil
}
