// Package sandbox runs programs in the downloader domain.
//
// Landlock domains and seccomp filters are inherited and stacked across
// fork and exec, so a process cannot confine itself tightly and still
// start children that may do more. The worker therefore starts, before it
// confines itself, a launcher server from its own binary (ServerFlag). The
// server confines itself to the downloader domain (all job directories,
// the programs, the network ports of downloads) and, for each job,
// re-executes the binary once more as the child launcher (ChildFlag),
// which narrows Landlock to that one job directory, sets no_new_privs and
// resource limits, and executes the program with an explicit environment.
//
// The worker talks to the server over a SOCK_SEQPACKET socket: a request
// carries the Spec as JSON and three descriptors (job directory, standard
// output, standard error); the answer carries the Outcome. Each child runs
// in its own process group with SIGKILL as parent-death signal, and the
// server kills the whole group when the child exits, times out, or the
// worker asks.
package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ytkeep/ytkeep/internal/confine"
	"github.com/ytkeep/ytkeep/internal/egress"
	"github.com/ytkeep/ytkeep/internal/job"
	"github.com/ytkeep/ytkeep/internal/metrics"
)

// ServerFlag and ChildFlag put our binary in launcher-server and
// child-launcher mode. Nothing else may follow them on the command line.
const (
	ServerFlag = "-sandbox-server"
	ChildFlag  = "-sandbox-child"
)

// Limits are the child's resource limits.
type Limits struct {
	CPUSeconds uint64 // RLIMIT_CPU
	FileBytes  uint64 // RLIMIT_FSIZE: largest file it may write
	OpenFiles  uint64 // RLIMIT_NOFILE
	Processes  uint64 // RLIMIT_NPROC (counted per real uid)
	DataBytes  uint64 // RLIMIT_DATA: writable private memory, per process
}

// Spec is what the child executes.
type Spec struct {
	Path   string   // absolute path of the program
	Args   []string // argv[1:]
	Env    []string // the complete environment
	Limits Limits
}

func (s *Spec) check() error {
	if len(s.Path) == 0 || s.Path[0] != '/' {
		return errors.New("sandbox spec: program path must be absolute")
	}
	if s.Limits.CPUSeconds == 0 || s.Limits.FileBytes == 0 || s.Limits.OpenFiles == 0 || s.Limits.Processes == 0 || s.Limits.DataBytes == 0 {
		return errors.New("sandbox spec: every limit must be set")
	}
	return nil
}

// Setup is the server's configuration, sent once when it starts, by the
// worker before it confines itself. A confined (possibly compromised)
// worker can send requests, never a second Setup.
type Setup struct {
	// Rules is the downloader domain: what any child may reach. Its
	// WriteDirs must hold exactly the directory of all job directories;
	// each child is narrowed to its own job directory.
	Rules    confine.Rules
	Landlock bool // apply Landlock (false only with insecure_no_landlock)
	Seccomp  bool // apply the downloader seccomp filter
	// Download configures yt-dlp. The server probes it at start and builds
	// every download's command line itself: requests carry only a video
	// ID and a format, so a compromised worker cannot pass yt-dlp options
	// (such as --exec) into the downloader domain.
	Download *DownloadConfig
	// RawPrograms may be run with a caller's Spec. Only the sandbox's own
	// tests set it: a server built without them (every release build)
	// refuses a setup that names any.
	RawPrograms []string
	// ProbeDir, if set, is a directory of the server's own (the worker
	// cannot write it) where it probes yt-dlp at start; else the job root.
	ProbeDir string
	// MaxChildren caps the children running at once (default 4), so that
	// a compromised worker cannot make the server fork without bound.
	MaxChildren int
	// Metrics counts launches and children (nil: none); MetricsDirs
	// (confine.Rules.FileDirs) are added to the server's own Landlock
	// rules only, never to a child's.
	Metrics     *metrics.Set `json:"-"` // the daemon's own, never sent to a server it spawns
	MetricsDirs []string
}

// DownloadConfig is fixed for the server's life.
type DownloadConfig struct {
	YtDlp, FFmpeg string
	MaxBytes      int64
	SocketTimeout int    // seconds
	TestBaseURL   string // test mode media source, or ""
	Limits        Limits
	Timeout       time.Duration
	// Hosts are the names the downloads may reach, through the server's
	// egress proxy (egress.Policy.Hosts); the children reach nothing else.
	Hosts []string
}

// Outcome is how the child ended.
type Outcome struct {
	ExitCode int            // -1 if killed by a signal
	Signal   syscall.Signal // the signal that killed it, if any
	TimedOut bool
	Elapsed  time.Duration
	// OutputHeld: a process still held the child's standard output or
	// error drainGrace after the server's answer, when the child and all
	// it started had ended. Something escaped the server's kill (C2); the
	// output was cut there.
	OutputHeld bool
}

// Violation reports whether the child was killed by the seccomp filter.
func (o *Outcome) Violation() bool { return o.Signal == syscall.SIGSYS }

// hello is the server's answer to Setup.
type hello struct {
	Version string `json:"version"` // yt-dlp's, when Download is set
	Error   string `json:"error,omitempty"`
}

// response is the server's message to the worker (job.LaunchReply).
type response = job.LaunchReply

const maxMsg = 64 << 10

// Bounds of Download's waits, past the job's timeout (which the server
// enforces): for the output still in the pipes once the server has
// answered (a pipe holds 64 KiB, read in microseconds; only a writer that
// outlived the child's tree makes the wait last), and for the server's
// answer once a kill is asked for (it kills the child's tree within
// sweepTimeout).
const (
	drainGrace = 5 * time.Second
	killWait   = time.Minute
)

// Launcher is the worker's handle on the launcher server. It is safe for
// concurrent use.
type Launcher struct {
	sock *os.File
	fd   int // sock's descriptor, taken once: sock is closed only after the reader ends
	cmd  *exec.Cmd

	mu      sync.Mutex
	next    uint64
	waiting map[uint64]chan *response
	err     error // set when the server is gone
	done    chan struct{}
	version string
	egress  chan egress.Event
}

// Egress delivers the egress proxy's reports: every connection a download
// made, and every destination refused. They come from the downloader
// domain and are as untrusted as it is. Unread reports past 256 are
// dropped.
func (l *Launcher) Egress() <-chan egress.Event { return l.egress }

// Version is the yt-dlp version the server found at start.
func (l *Launcher) Version() string { return l.version }

// StartLauncher starts self as a launcher server with setup, connected
// to the returned Launcher by a socket pair: the worker's tests and the
// sandbox's own. In production the downloader daemon starts the server
// (Spawn) for each worker connection, and the worker Connects.
func StartLauncher(self string, setup *Setup) (*Launcher, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "launcher"), os.NewFile(uintptr(fds[1]), "launcher")
	cmd, err := Spawn(self, setup, theirs, nil)
	// Close our copy of the server's end now: if the server dies before
	// its hello (it could not confine itself), the read in hello must
	// see the end of the stream instead of waiting for ever.
	theirs.Close()
	if err != nil {
		ours.Close()
		return nil, err
	}
	return newLauncher(ours, cmd)
}

// Spawn starts self as the launcher server serving conn, with setup on a
// pipe of its own (never over conn: the worker may be compromised) and
// stderr as its standard error (the caller's if nil).
func Spawn(self string, setup *Setup, conn *os.File, stderr *os.File) (*exec.Cmd, error) {
	data, err := json.Marshal(setup)
	if err != nil {
		return nil, err
	}
	if len(data) > maxMsg {
		return nil, errors.New("the launcher setup is too large")
	}
	setupR, setupW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer setupR.Close()
	cmd := exec.Command(self, ServerFlag)
	cmd.Env = append([]string{}, confine.AblationEnv()...) // empty (not nil: nil inherits) in release builds
	cmd.Stderr = os.Stderr
	if stderr != nil {
		cmd.Stderr = stderr
	}
	cmd.ExtraFiles = []*os.File{conn, setupR}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		setupW.Close()
		return nil, fmt.Errorf("couldn't start the launcher server: %w", err)
	}
	// A pipe holds 64 KiB, as much as maxMsg: this write does not block.
	_, err = setupW.Write(data)
	setupW.Close()
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("couldn't configure the launcher server: %w", err)
	}
	return cmd, nil
}

// Connect connects to the downloader daemon's socket at path and waits
// for its launcher server's hello. The worker connects before it
// confines itself.
func Connect(path string) (*Launcher, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("couldn't connect to the downloader at %s: %w", path, err)
	}
	return newLauncher(os.NewFile(uintptr(fd), "launcher"), nil)
}

// newLauncher waits for the server's hello on sock. cmd is the server
// when we started it, nil when the downloader daemon did.
func newLauncher(sock *os.File, cmd *exec.Cmd) (*Launcher, error) {
	l := &Launcher{sock: sock, fd: int(sock.Fd()), cmd: cmd, waiting: map[uint64]chan *response{}, done: make(chan struct{}),
		egress: make(chan egress.Event, 256)}
	fail := func(err error) (*Launcher, error) {
		unix.Shutdown(l.fd, unix.SHUT_RDWR)
		sock.Close()
		if cmd != nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
		return nil, err
	}
	// The server confines itself, probes yt-dlp and says hello, within a
	// minute: a peer that never does must not hold the worker's start.
	// With a receive timeout set, a signal (the Go runtime's preemption)
	// interrupts the call instead of restarting it (signal(7)): go on
	// until the deadline.
	buf := make([]byte, maxMsg)
	var n int
	var err error
	deadline := time.Now().Add(time.Minute)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			err = unix.EAGAIN
			break
		}
		tv := unix.NsecToTimeval(left.Nanoseconds())
		unix.SetsockoptTimeval(l.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
		n, _, _, _, err = unix.Recvmsg(l.fd, buf, nil, 0)
		if err != unix.EINTR {
			break
		}
	}
	unix.SetsockoptTimeval(l.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{})
	if err != nil {
		return fail(fmt.Errorf("the launcher server did not start: %w", err))
	}
	if n == 0 {
		return fail(errors.New("the launcher server exited before it was ready (its error is in the downloader's log)"))
	}
	var h hello
	if err := json.Unmarshal(buf[:n], &h); err != nil {
		return fail(fmt.Errorf("the launcher server's hello: %w", err))
	}
	if h.Error != "" {
		return fail(errors.New(h.Error))
	}
	l.version = h.Version
	go l.read()
	return l, nil
}

// read dispatches the server's answers.
func (l *Launcher) read() {
	buf := make([]byte, maxMsg)
	var err error
	for {
		var n int
		n, _, _, _, err = unix.Recvmsg(l.fd, buf, nil, 0)
		if err != nil || n == 0 {
			break
		}
		// The server is the downloader domain: parse it strictly, and drop
		// what does not parse.
		r, perr := job.ParseLaunchReply(buf[:n])
		if perr != nil {
			continue
		}
		if r.Egress != nil {
			select {
			case l.egress <- *r.Egress:
			default: // nobody reads them, or a flood: dropped
			}
			continue
		}
		l.mu.Lock()
		ch := l.waiting[r.ID]
		delete(l.waiting, r.ID)
		l.mu.Unlock()
		if ch != nil {
			ch <- r
		}
	}
	if err == nil {
		err = errors.New("the launcher server exited")
	}
	l.mu.Lock()
	l.err = fmt.Errorf("launcher server gone: %w", err)
	// Done first: whoever hears that its request failed (or reads l.err)
	// finds Done closed, and can tell the launcher's end from a failure
	// of its own.
	close(l.done)
	for id, ch := range l.waiting {
		close(ch)
		delete(l.waiting, id)
	}
	l.mu.Unlock()
}

// Close stops the server and every child it runs: the server kills its
// children and exits when the socket closes. (Signalling it directly may
// be refused: once the worker is confined, the server is outside its
// Landlock domain.)
func (l *Launcher) Close() error {
	// shutdown, not just close: our reader blocked in recvmsg keeps the
	// socket alive past a close, and the server would never see EOF.
	unix.Shutdown(l.fd, unix.SHUT_RDWR)
	select {
	case <-l.done:
	case <-time.After(5 * time.Second):
		if l.cmd == nil {
			break // the daemon's server: its reader ends with our socket
		}
		unix.Kill(-l.cmd.Process.Pid, unix.SIGKILL)
		<-l.done
	}
	l.sock.Close() // the reader has ended
	if l.cmd == nil {
		return nil
	}
	return l.cmd.Wait()
}

// Done is closed when the server has gone (its socket ended).
func (l *Launcher) Done() <-chan struct{} { return l.done }

// ErrBusy is the launcher's answer when every download slot (or proxy
// port) is taken: nothing ran, and the request may be sent again.
var ErrBusy = errors.New("the launcher is busy")

// busyError is the server's busy answer, as it said it; it is ErrBusy.
type busyError string

func (e busyError) Error() string        { return "launcher server: " + string(e) }
func (e busyError) Is(target error) bool { return target == ErrBusy }

// Download runs yt-dlp for video in format, in the job directory dir
// (named jobDir under the job root), copying its output to stdout and
// stderr. The server builds the command line; ending ctx kills the child.
func (l *Launcher) Download(ctx context.Context, jobDir, video string, format job.Format, dir *os.File, stdout, stderr io.Writer) (*Outcome, error) {
	return l.do(ctx, &job.Launch{JobDir: jobDir, Video: video, Format: format}, dir, stdout, stderr)
}

func (l *Launcher) do(ctx context.Context, req *job.Launch, dir *os.File, stdout, stderr io.Writer) (*Outcome, error) {
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, err
	}
	defer outR.Close()
	defer errR.Close()
	var copies sync.WaitGroup
	for _, c := range []struct {
		r *os.File
		w io.Writer
	}{{outR, stdout}, {errR, stderr}} {
		copies.Add(1)
		go func(r *os.File, w io.Writer) {
			defer copies.Done()
			if w == nil {
				w = io.Discard
			}
			io.Copy(w, r)
		}(c.r, c.w)
	}

	l.mu.Lock()
	if l.err != nil {
		l.mu.Unlock()
		outW.Close()
		errW.Close()
		copies.Wait()
		return nil, l.err
	}
	l.next++
	id := l.next
	ch := make(chan *response, 1)
	l.waiting[id] = ch
	l.mu.Unlock()

	req.ID = id
	data, err := req.Marshal()
	if err != nil {
		l.mu.Lock()
		delete(l.waiting, id)
		l.mu.Unlock()
		outW.Close()
		errW.Close()
		copies.Wait()
		return nil, err
	}
	rights := unix.UnixRights(int(dir.Fd()), int(outW.Fd()), int(errW.Fd()))
	err = unix.Sendmsg(l.fd, data, rights, nil, 0)
	outW.Close() // the server holds its own copies now
	errW.Close()
	if err != nil {
		l.mu.Lock()
		delete(l.waiting, id)
		l.mu.Unlock()
		copies.Wait()
		return nil, fmt.Errorf("couldn't send to the launcher server: %w", err)
	}
	var r *response
	select {
	case r = <-ch:
	case <-ctx.Done():
		kill, _ := (&job.Launch{ID: id, Kill: true}).Marshal()
		unix.Sendmsg(l.fd, kill, nil, nil, 0)
		select {
		case r = <-ch:
		case <-time.After(killWait):
			l.mu.Lock()
			delete(l.waiting, id)
			l.mu.Unlock()
			r = &response{Error: fmt.Sprintf("no answer %v after the kill request", killWait)}
		}
	}
	// The server answers once the child and every process it started
	// have ended, and their ends of the pipes with them: what the pipes
	// still hold is read at once. A process that still holds a write end
	// (one that escaped the server's kill, or a server gone without
	// answering, whose child's descendants Pdeathsig does not reach) must
	// not hold up the download (C2): the reads stop drainGrace after the
	// answer.
	drainBy := time.Now().Add(drainGrace)
	outR.SetReadDeadline(drainBy)
	errR.SetReadDeadline(drainBy)
	copies.Wait()
	held := writerLeft(outR) || writerLeft(errR)
	if r == nil {
		return nil, l.err
	}
	if r.Error != "" {
		if strings.HasPrefix(r.Error, "busy: ") {
			return nil, busyError(r.Error)
		}
		return nil, errors.New("launcher server: " + r.Error)
	}
	o := &Outcome{ExitCode: r.Exit, Signal: syscall.Signal(r.Signal), TimedOut: r.TimedOut, Elapsed: time.Duration(r.ElapsedMS) * time.Millisecond,
		OutputHeld: held}
	if ctx.Err() != nil {
		return o, ctx.Err()
	}
	return o, nil
}

// writerLeft reports whether the pipe read end r still has a writer: no
// POLLHUP. It reports false if r cannot be polled.
func writerLeft(r *os.File) bool {
	rc, err := r.SyscallConn()
	if err != nil {
		return false
	}
	left := false
	rc.Control(func(fd uintptr) {
		p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(p, 0)
		left = err == nil && (n == 0 || p[0].Revents&unix.POLLHUP == 0)
	})
	return left
}
