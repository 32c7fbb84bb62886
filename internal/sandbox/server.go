package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ytkeep/ytkeep/internal/confine"
	"github.com/ytkeep/ytkeep/internal/egress"
	"github.com/ytkeep/ytkeep/internal/job"
	"github.com/ytkeep/ytkeep/internal/ytdlp"
)

// rawSpec decodes a raw request (a program and its command line). It is
// nil in every build but the sandbox's tests (export_test.go), so a
// release launcher server cannot run a caller's command line at all.
var rawSpec func(raw []byte) (*Spec, time.Duration, error)

// ServerMain is the launcher server. It never returns.
func ServerMain() {
	err := serve()
	if err != nil {
		fmt.Fprintf(os.Stderr, "ytkeep launcher server: %v\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// childSpec is what the server hands each child launcher on fd 3.
type childSpec struct {
	Spec     Spec
	Rules    confine.Rules
	Landlock bool
	TCPOnly  bool // refuse every socket but TCP (downloads: the proxy is their only way out)
	// KeepGroup kills setpgid and setsid (confine.KeepGroup): the child
	// and all it starts stay in the process group the server kills. Set
	// with the downloader's seccomp filter (Setup.Seccomp).
	KeepGroup bool
	// Jail stacks the child jail's filter (confine.ChildJail): no links,
	// nodes or execute bits, no signal to the server. Set with the
	// downloader's seccomp filter.
	Jail bool
	// Broker hands the child's socket and connect calls to the server
	// (broker.go): the child sends its notification descriptor on fd 5.
	Broker bool
}

type server struct {
	sock    int
	self    string
	setup   Setup
	jobRoot string
	caps    *ytdlp.Capabilities
	version string // yt-dlp's, when the setup has a download configuration
	proxy   *egress.Proxy
	// The proxy listens on one loopback port per child slot, and each
	// download may reach only its own: a download that holds or floods
	// its port's pending request heads starves no other job.
	proxyAts []string
	ports    chan int          // free indexes into proxyAts
	jobPorts map[uint64]uint16 // request id -> its proxy port (under mu)

	slots    chan struct{} // one per child that may run
	mu       sync.Mutex
	children map[uint64]chan struct{} // request id -> kill request
	runs     sync.WaitGroup           // requests being run
	sendMu   sync.Mutex               // guards sock's writes, and sock itself in the daemon
	reap     reaper                   // finds and kills what each child leaves behind
}

// start reads the setup, confines the server to the downloader domain and
// probes yt-dlp.
func (s *server) start() error {
	// What the children write must be readable by the worker (the
	// group of the job directories), by no one else.
	unix.Umask(0o027)
	// The setup comes on its own pipe from whoever started us (the
	// downloader daemon, from its configuration), never over the socket:
	// the worker at its other end may be compromised.
	setup, err := io.ReadAll(io.LimitReader(os.NewFile(4, "setup"), maxMsg+1))
	unix.Close(4)
	if err != nil || len(setup) == 0 || len(setup) > maxMsg {
		return fmt.Errorf("no setup received (%d bytes): %v", len(setup), err)
	}
	dec := json.NewDecoder(bytes.NewReader(setup))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s.setup); err != nil {
		return fmt.Errorf("bad setup: %w", err)
	}
	return s.prepare()
}

// prepare starts the egress proxy, confines the server to the downloader
// domain and probes yt-dlp, per s.setup.
func (s *server) prepare() (err error) {
	if len(s.setup.Rules.WriteDirs) != 1 {
		return errors.New("bad setup: the rules must name exactly one job root")
	}
	s.jobRoot = s.setup.Rules.WriteDirs[0]
	if s.setup.MaxChildren <= 0 {
		s.setup.MaxChildren = 4
	}
	if len(s.setup.RawPrograms) > 0 && rawSpec == nil {
		return errors.New("bad setup: raw programs are for the sandbox's tests only")
	}
	s.slots = make(chan struct{}, s.setup.MaxChildren)
	if s.self, err = os.Executable(); err != nil {
		return err
	}
	// The downloads' egress proxy listens before the server confines
	// itself (its seccomp filter refuses listen).
	if d := s.setup.Download; d != nil {
		if err := s.startProxy(d); err != nil {
			return err
		}
	}
	// Confine the server itself to the downloader domain before it reads
	// any request: children can only be narrower.
	rules := s.setup.Rules
	rules.ExecFiles = append(slices.Clone(rules.ExecFiles), s.self)
	if s.setup.ProbeDir != "" {
		rules.WriteDirs = append(slices.Clone(rules.WriteDirs), s.setup.ProbeDir)
	}
	// The daemon's metrics file: the server's layer only (execChild).
	rules.FileDirs = append(slices.Clone(rules.FileDirs), s.setup.MetricsDirs...)
	if s.proxy != nil {
		// Landlock layers stack: the children's one port must be open in
		// the server's own layer too.
		rules.ConnectTCP = append(slices.Clone(rules.ConnectTCP), s.proxyPorts()...)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return err
	}
	// The children run as this user: keep them out of /proc/<server>.
	// (Each child is dumpable again once it executes its program.)
	if err := confine.NoDump(); err != nil {
		return err
	}
	if s.setup.Landlock {
		if err := confine.Landlock(&rules); err != nil {
			return err
		}
	}
	if s.setup.Seccomp {
		if err := confine.Seccomp(confine.Downloader); err != nil {
			return err
		}
	}
	// Probe yt-dlp now, while nobody can influence it.
	if d := s.setup.Download; d != nil {
		if err := s.probe(d); err != nil {
			return err
		}
		s.version = s.caps.Version
	}
	return nil
}

func serve() error {
	if err := checkFD(3, unix.S_IFSOCK); err != nil {
		return fmt.Errorf("started without its socket on fd 3: %w", err)
	}
	if err := checkFD(4, unix.S_IFIFO); err != nil {
		return fmt.Errorf("started without its setup on fd 4: %w", err)
	}
	s := &server{sock: 3, children: map[uint64]chan struct{}{}, jobPorts: map[uint64]uint16{}}
	unix.CloseOnExec(3)
	if err := s.start(); err != nil {
		// Tell the worker why, so that its error (and the admins' exit
		// alert) names the cause.
		data, _ := json.Marshal(&hello{Error: err.Error()})
		unix.Sendmsg(s.sock, data, nil, nil, 0)
		return err
	}
	return s.serveConn()
}

// ServeDaemon is the downloader daemon's server: prepared once from setup
// (the daemon's own configuration; listen, which its filter then
// refuses, is done: ln), it serves the worker's connections one at a
// time, until ctx ends. Between two connections every child of the first
// is killed and every answer to it sent or dropped.
func ServeDaemon(ctx context.Context, ln *net.UnixListener, setup *Setup, log *slog.Logger) error {
	s := &server{sock: -1, setup: *setup, children: map[uint64]chan struct{}{}, jobPorts: map[uint64]uint16{}}
	unix.Umask(0o027)
	if err := s.prepare(); err != nil {
		return err
	}
	log.Info("downloader ready", "ytdlp", s.version, "proxy", strings.Join(s.proxyAts, " "), "landlock", setup.Landlock)
	setup.Metrics.WatchChildren(func() int { return len(s.slots) })
	stopped := make(chan struct{})
	defer close(stopped)
	go func() {
		select {
		case <-ctx.Done():
			ln.Close()
			s.sendMu.Lock()
			if s.sock >= 0 {
				unix.Shutdown(s.sock, unix.SHUT_RDWR)
			}
			s.sendMu.Unlock()
		case <-stopped:
		}
	}()
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		f, err := c.File() // a blocking duplicate
		c.Close()
		if err != nil {
			log.Error("couldn't take a connection", "err", err)
			continue
		}
		uid, pid := peer(int(f.Fd()))
		log.Info("worker connected", "peer_uid", uid, "peer_pid", pid)
		s.sendMu.Lock()
		s.sock = int(f.Fd())
		s.sendMu.Unlock()
		err = s.serveConn()
		s.sendMu.Lock()
		s.sock = -1
		s.sendMu.Unlock()
		f.Close()
		log.Info("worker disconnected", "peer_pid", pid, "err", err)
		if ctx.Err() != nil {
			return nil
		}
	}
}

// peer returns the uid and pid at the other end of a Unix socket, or -1s.
func peer(fd int) (uid, pid int) {
	cred, err := unix.GetsockoptUcred(fd, unix.SOL_SOCKET, unix.SO_PEERCRED)
	if err != nil {
		return -1, -1
	}
	return int(cred.Uid), int(cred.Pid)
}

// serveConn says hello on s.sock and serves its requests until the worker
// hangs up; then it kills every child and waits until every request has
// had its answer (which goes nowhere once s.sock is closed).
func (s *server) serveConn() error {
	buf := make([]byte, maxMsg)
	data, _ := json.Marshal(&hello{Version: s.version})
	if err := unix.Sendmsg(s.sock, data, nil, nil, 0); err != nil {
		return err
	}
	oob := make([]byte, unix.CmsgSpace(3*4))
	for {
		n, oobn, flags, _, err := unix.Recvmsg(s.sock, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if err != nil || n == 0 {
			s.killAll() // the worker is gone
			s.runs.Wait()
			return nil
		}
		// The worker may be compromised: whatever it sends is parsed
		// strictly, and a refused request is closed and not answered.
		fds := parseRights(oob[:oobn])
		req, err := job.ParseLaunch(buf[:n])
		if flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
			err = errors.New("truncated message")
		}
		if err != nil {
			closeAll(fds)
			fmt.Fprintf(os.Stderr, "ytkeep launcher server: refused a request: %v\n", err)
			s.setup.Metrics.Launch("refused")
			continue
		}
		if req.Kill {
			s.kill(req.ID)
			closeAll(fds)
			continue
		}
		if len(fds) != 3 {
			closeAll(fds)
			s.send(&response{ID: req.ID, Error: "a request needs three descriptors"})
			continue
		}
		s.runs.Add(1)
		go func() {
			defer s.runs.Done()
			s.run(req, fds)
		}()
	}
}

func parseRights(oob []byte) []int {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var fds []int
	for _, m := range msgs {
		if r, err := unix.ParseUnixRights(&m); err == nil {
			fds = append(fds, r...)
		}
	}
	return fds
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

func (s *server) send(r *response) {
	data, err := r.Marshal()
	if err != nil {
		fmt.Fprintf(os.Stderr, "ytkeep launcher server: couldn't encode a reply: %v\n", err)
		return
	}
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	if s.sock >= 0 {
		unix.Sendmsg(s.sock, data, nil, nil, 0)
	}
}

// kill asks the goroutine running request id to kill its child. Only
// that goroutine's thread may: without Landlock's TSYNC (ABI < 8) each
// thread was restricted separately and is its own Landlock domain, and the
// signal scope lets a thread signal only its own domain's descendants,
// which the child is for the thread that forked it.
func (s *server) kill(id uint64) {
	s.mu.Lock()
	ch := s.children[id]
	s.mu.Unlock()
	if ch != nil {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func (s *server) killAll() {
	s.mu.Lock()
	ids := make([]uint64, 0, len(s.children))
	for id := range s.children {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	for _, id := range ids {
		s.kill(id)
	}
	// Give them a moment: the process exits next, and Pdeathsig kills the
	// rest.
	time.Sleep(100 * time.Millisecond)
}

// probe runs yt-dlp --version and --help and refuses a yt-dlp that lacks
// a required hardening flag.
func (s *server) probe(d *DownloadConfig) error {
	run := func(flag string) ([]byte, error) {
		// Not in the job root where the daemon has one: the worker may
		// write there, and a probe must not meet what it put there.
		base := s.jobRoot
		if s.setup.ProbeDir != "" {
			base = s.setup.ProbeDir
		}
		dirPath, err := os.MkdirTemp(base, ".probe-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dirPath)
		dir, err := os.Open(dirPath)
		if err != nil {
			return nil, err
		}
		defer dir.Close()
		outR, outW, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		defer outR.Close()
		errR, errW, err := os.Pipe()
		if err != nil {
			outW.Close()
			return nil, err
		}
		defer errR.Close()
		var out, errb []byte
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); out, _ = io.ReadAll(io.LimitReader(outR, 1<<20)); io.Copy(io.Discard, outR) }()
		go func() { defer wg.Done(); errb, _ = io.ReadAll(io.LimitReader(errR, 8<<10)); io.Copy(io.Discard, errR) }()
		spec := &Spec{Path: d.YtDlp, Args: []string{flag}, Env: ytdlp.Env(dirPath, ""), Limits: d.Limits}
		r := s.execChild(0, nil, spec, dir, outW, errW, time.Minute)
		// The child's tree has ended (execChild): what is left in the
		// pipes comes at once, and nothing that holds them may hold up
		// the start.
		outR.SetReadDeadline(time.Now().Add(drainGrace))
		errR.SetReadDeadline(time.Now().Add(drainGrace))
		wg.Wait()
		if r.Error != "" || r.Exit != 0 {
			return nil, fmt.Errorf("%s %s failed (exit %d, signal %d): %s%s", d.YtDlp, flag, r.Exit, r.Signal, r.Error, bytes.TrimSpace(errb))
		}
		return out, nil
	}
	v, err := run("--version")
	if err != nil {
		return err
	}
	ver, err := ytdlp.ParseVersion(v)
	if err != nil {
		return err
	}
	h, err := run("--help")
	if err != nil {
		return err
	}
	caps := ytdlp.ParseHelp(ver, h)
	if m := caps.Missing(); len(m) > 0 {
		return fmt.Errorf("yt-dlp %s lacks required flags %s: install a current yt-dlp", ver, strings.Join(m, " "))
	}
	s.caps = caps
	return nil
}

// run answers one request.
func (s *server) run(req *job.Launch, fds []int) {
	dir, stdout, stderr := os.NewFile(uintptr(fds[0]), "jobdir"), os.NewFile(uintptr(fds[1]), "stdout"), os.NewFile(uintptr(fds[2]), "stderr")
	defer dir.Close()
	defer stdout.Close()
	defer stderr.Close()
	proxyURL := ""
	// releasePort gives the download's proxy port back, once: before the
	// answer (as the slot below), or on an early return.
	releasePort := func() {}
	defer func() { releasePort() }()
	if s.proxy != nil && req.Raw == nil {
		var i int
		select {
		case i = <-s.ports:
		default:
			s.send(&response{ID: req.ID, Error: fmt.Sprintf("busy: %d downloads running", len(s.proxyAts))})
			return
		}
		var once sync.Once
		releasePort = func() { once.Do(func() { s.ports <- i }) }
		cred, forget := s.proxy.Register(req.JobDir, req.Video)
		defer forget()
		proxyURL = "http://" + cred.User + ":" + cred.Token + "@" + s.proxyAts[i]
		s.mu.Lock()
		s.jobPorts[req.ID] = portOf(s.proxyAts[i])
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			delete(s.jobPorts, req.ID)
			s.mu.Unlock()
		}()
	}
	spec, timeout, err := s.specFor(req, dir, proxyURL)
	if err != nil {
		s.setup.Metrics.Launch("refused")
		s.send(&response{ID: req.ID, Error: err.Error()})
		return
	}
	select {
	case s.slots <- struct{}{}:
	default:
		s.setup.Metrics.Launch("busy")
		s.send(&response{ID: req.ID, Error: fmt.Sprintf("busy: %d children running", s.setup.MaxChildren)})
		return
	}
	s.setup.Metrics.Launch("started")
	r := s.execChild(req.ID, req, spec, dir, stdout, stderr, timeout)
	if req.Raw == nil {
		if err := tidy(dir); err != nil {
			fmt.Fprintf(os.Stderr, "ytkeep launcher server: job %s: %v\n", req.JobDir, err)
		}
	}
	// Free the slot and the proxy port before answering: a worker that
	// starts its next download as soon as it hears must find them free
	// (the port came back after the answer once, and a busy worker's
	// next download failed as "busy").
	releasePort()
	<-s.slots
	s.send(r)
}

// specFor decides what a request runs: a download, whose command line the
// server builds from a re-validated video ID and format, or (only when the
// setup allows it) a raw spec.
func (s *server) specFor(req *job.Launch, dir *os.File, proxyURL string) (*Spec, time.Duration, error) {
	if err := checkFD(int(dir.Fd()), unix.S_IFDIR); err != nil {
		return nil, 0, fmt.Errorf("job directory: %v", err)
	}
	if req.Raw != nil {
		if rawSpec == nil || len(s.setup.RawPrograms) == 0 {
			return nil, 0, errors.New("this launcher runs no caller's command line")
		}
		spec, timeout, err := rawSpec(req.Raw)
		if err != nil {
			return nil, 0, err
		}
		if !slices.Contains(s.setup.RawPrograms, spec.Path) {
			return nil, 0, fmt.Errorf("%s may not be run with a caller's command line", spec.Path)
		}
		return spec, timeout, nil
	}
	d := s.setup.Download
	if d == nil || s.caps == nil {
		return nil, 0, errors.New("this launcher runs no downloads")
	}
	if !job.ValidID(req.JobDir) {
		return nil, 0, errors.New("invalid job directory name")
	}
	// The descriptor must be that job directory: its path goes to yt-dlp.
	path := filepath.Join(s.jobRoot, req.JobDir)
	var byPath, byFD unix.Stat_t
	if unix.Lstat(path, &byPath) != nil || unix.Fstat(int(dir.Fd()), &byFD) != nil ||
		byPath.Dev != byFD.Dev || byPath.Ino != byFD.Ino {
		return nil, 0, errors.New("the descriptor is not the named job directory")
	}
	// The worker made the job directory; nothing in it may steer yt-dlp
	// (a plugin, a configuration, a Python path file). It must be empty,
	// and the child's HOME, XDG and TMPDIR are a directory the launcher
	// makes itself, empty, inside it.
	home, err := makeHome(dir)
	if err != nil {
		return nil, 0, err
	}
	args, err := s.caps.Args(&ytdlp.Request{Video: req.Video, Format: req.Format, TestBaseURL: d.TestBaseURL,
		Dir: path, FFmpeg: d.FFmpeg, MaxBytes: d.MaxBytes, SocketTimeout: d.SocketTimeout, Proxy: proxyURL})
	if err != nil {
		return nil, 0, err
	}
	return &Spec{Path: d.YtDlp, Args: args, Env: ytdlp.Env(filepath.Join(path, home), proxyURL), Limits: d.Limits}, d.Timeout, nil
}

// execChild starts one child and reports how it ended, once the child
// and every process it started have ended (C2): on exit, timeout or kill
// request, the server kills the child's process group, then every
// process the child's tree left reparented to the server (reaper), and
// only then answers. So the job's timeout holds whatever the child does,
// and no process of the job outlives its answer to hold the output pipes
// or the network.
func (s *server) execChild(id uint64, req *job.Launch, spec *Spec, dir, stdout, stderr *os.File, timeout time.Duration) *response {
	fail := func(format string, args ...any) *response {
		return &response{ID: id, Error: fmt.Sprintf(format, args...)}
	}
	// Fail closed: without the subreaper, processes that leave the
	// child's tree would go to init, out of the server's reach.
	if err := s.reap.start(); err != nil {
		return fail("%v", err)
	}
	// The child sees only its own job directory, through its descriptor.
	rules := s.setup.Rules
	rules.WriteDirs = []string{"/proc/self/fd/4"}
	rules.FileDirs = nil // never the daemon's metrics directory
	tcpOnly := false
	if s.proxy != nil {
		// Its only way out: TCP to the egress proxy's port.
		// Its only way out: TCP to its own port of the egress proxy
		// (none for a probe or a raw test program).
		s.mu.Lock()
		port := s.jobPorts[id]
		s.mu.Unlock()
		rules.ConnectTCP, rules.BindTCP, tcpOnly = nil, nil, true
		if port != 0 && id != 0 {
			rules.ConnectTCP = []uint16{port}
		}
	}
	// The broker (broker.go) keeps the child to its proxy port, behind
	// Landlock's rule, wherever the child has a proxy to reach.
	useBroker := tcpOnly
	data, _ := json.Marshal(&childSpec{Spec: *spec, Rules: rules, Landlock: s.setup.Landlock, TCPOnly: tcpOnly,
		KeepGroup: s.setup.Seccomp, Jail: s.setup.Seccomp, Broker: useBroker})
	specR, specW, err := os.Pipe()
	if err != nil {
		return fail("%v", err)
	}
	defer specR.Close()
	cmd := exec.Command(s.self, ChildFlag)
	cmd.Env = append([]string{}, confine.AblationEnv()...) // empty (not nil: nil inherits) in release builds
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.ExtraFiles = []*os.File{specR, dir}
	var brokerEnd *os.File // the server's end of the child's fd 5
	if useBroker {
		pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fail("%v", err)
		}
		brokerEnd = os.NewFile(uintptr(pair[0]), "broker")
		defer brokerEnd.Close()
		childEnd := os.NewFile(uintptr(pair[1]), "broker-child")
		defer childEnd.Close()
		cmd.ExtraFiles = append(cmd.ExtraFiles, childEnd)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// Pdeathsig fires when the thread that forked exits: stay on it.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start := time.Now()
	if err := s.reap.startChild(cmd); err != nil {
		specW.Close()
		return fail("couldn't start the child: %v", err)
	}
	pid := cmd.Process.Pid
	pgid := pid
	killReq := make(chan struct{}, 1)
	s.mu.Lock()
	s.children[id] = killReq
	s.mu.Unlock()
	specW.Write(data)
	specW.Close()
	stdout.Close() // the child has them; EOF reaches the worker when it ends
	stderr.Close()
	var b *broker
	brokerFailed := false
	if brokerEnd != nil {
		cmd.ExtraFiles[2].Close() // the child has it: EOF if it dies before it sends
		b, brokerFailed = s.brokerOrKill(id, req, brokerEnd, pgid)
	}

	// Wait for the child's exit without reaping it (WNOWAIT): until
	// cmd.Wait below, its pid, and so its group's id, cannot be given to a
	// new process, and the group kills reach no other job's group.
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		for err == unix.EINTR {
			err = unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		}
		if err != nil {
			cmd.Wait() // never seen: wait as before, reaping it
		}
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	timedOut := false
	// Signals go out from this goroutine's locked thread only (see kill),
	// which also answers the broker: it reads the memory of the processes
	// it forked, in a Landlock domain below its own.
	switch b.wait(exited, timer.C, killReq) {
	case endTimeout:
		timedOut = true
		unix.Kill(-pgid, unix.SIGKILL)
		<-exited
	case endKill:
		unix.Kill(-pgid, unix.SIGKILL)
		<-exited
	}
	// Leave no helper behind: the group, and what left it.
	escaped, err := s.reap.sweep(pgid)
	if escaped > 0 {
		fmt.Fprintf(os.Stderr, "ytkeep launcher server: request %d: killed %d process(es) that had left the child's process group\n", id, escaped)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "ytkeep launcher server: request %d: %v\n", id, err)
	}
	if b != nil {
		if err == nil {
			unix.Close(b.fd)
		} else {
			// A process of the job may still live: with its broker's
			// descriptor closed, it could install a listener of its own
			// (the kernel allows one per filter chain) and answer its
			// own connects. Keep the descriptor; its calls wait.
			fmt.Fprintf(os.Stderr, "ytkeep launcher server: request %d: keeping its connect broker's descriptor\n", id)
		}
	}
	cmd.Wait() // reaps it (if the goroutine above has not)
	s.reap.forget(pid)
	s.mu.Lock()
	delete(s.children, id)
	s.mu.Unlock()
	r := &response{ID: id, Exit: cmd.ProcessState.ExitCode(), TimedOut: timedOut, ElapsedMS: time.Since(start).Milliseconds()}
	if brokerFailed {
		r.Error = "the download's connect broker did not start: the download was killed"
		return r
	}
	if cmd.ProcessState == nil {
		r.Error = "couldn't wait for the child"
		return r
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		r.Signal = int(ws.Signal())
	}
	return r
}

// Tuning of reaper.sweep: how long it may take (a tree of processes
// killed level by level, should they have left the child's group), and
// the pause between two rounds.
const (
	sweepTimeout = 10 * time.Second
	sweepPause   = 5 * time.Millisecond
)

// reaper makes the server its children's subreaper
// (PR_SET_CHILD_SUBREAPER) and kills what a child leaves behind (C2).
//
// A process whose parent dies goes to its nearest subreaper ancestor:
// once a child has exited, every process its tree still has (the
// child's descendants whose parents are gone) is the server's own
// child, however it left the child's process group (KeepGroup kills the
// calls that would; this is the second layer, should they get through)
// and however it renamed itself. The server starts nothing but its
// children (execChild, through startChild), so every other child of the
// server is such an orphan, and sweep kills them all.
//
// Attribution: a sweep runs on the thread that forked its job's child.
// With Landlock's signal scope, that thread may signal only processes of
// its own Landlock domain (see kill), i.e. of the jobs forked by threads
// of that domain: other jobs' orphans answer EPERM and are left to their
// own job's sweep. Without Landlock a sweep kills every orphan, of any
// job. None is legitimate: in a running job, the only process that is
// the server's child is the job's child itself, which no sweep touches,
// as long as the processes of the job wait for those they start (yt-dlp
// waits for ffmpeg and Deno, which start nothing).
type reaper struct {
	once sync.Once
	err  error
	// mu is held across each child's start and registration, and by each
	// round of a sweep: a child just forked is never taken for an orphan.
	mu   sync.Mutex
	live map[int]bool // the server's children (execChild), until reaped
}

// start makes the server the subreaper, once, and checks that it can
// list its children.
func (rp *reaper) start() error {
	rp.once.Do(func() {
		rp.live = map[int]bool{}
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			rp.err = fmt.Errorf("couldn't become the children's subreaper: %w", err)
			return
		}
		if _, err := ownChildren(); err != nil {
			rp.err = fmt.Errorf("couldn't list the server's children: %w", err)
		}
	})
	return rp.err
}

// startChild starts cmd and registers it as a child of the server.
func (rp *reaper) startChild(cmd *exec.Cmd) error {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return err
	}
	rp.live[cmd.Process.Pid] = true
	return nil
}

// forget drops a child once it has been reaped.
func (rp *reaper) forget(pid int) {
	rp.mu.Lock()
	delete(rp.live, pid)
	rp.mu.Unlock()
}

// sweep kills, from the calling thread, what is left of the job whose
// child led process group pgid and has exited (unreaped, so that pgid
// names no other group): the group, and every orphan (a child of the
// server that startChild did not start), round after round until a
// round finds none. It returns how many orphans it found outside the
// group: processes that had left it. Each round kills the orphans it
// sees; their own children are orphans when they die, found by the next
// round. A round that finds none proves the job's tree gone: any live
// process of it has a live topmost ancestor in the tree, and that
// ancestor's parent is gone, so it is the server's child.
func (rp *reaper) sweep(pgid int) (escaped int, err error) {
	deadline := time.Now().Add(sweepTimeout)
	outside := map[int]bool{}
	for {
		unix.Kill(-pgid, unix.SIGKILL)
		n, err := rp.killOrphans(pgid, outside)
		if err != nil {
			return len(outside), err
		}
		if n == 0 {
			return len(outside), nil
		}
		if time.Now().After(deadline) {
			return len(outside), fmt.Errorf("%d processes of the job still there after %v", n, sweepTimeout)
		}
		time.Sleep(sweepPause)
	}
}

// killOrphans kills and, once dead, reaps every orphan the calling
// thread may signal, and returns how many it found (dead or alive);
// those outside group pgid are added to outside.
func (rp *reaper) killOrphans(pgid int, outside map[int]bool) (int, error) {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	pids, err := ownChildren()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, pid := range pids {
		if rp.live[pid] {
			continue
		}
		if unix.Kill(pid, unix.SIGKILL) != nil {
			continue // another job's (Landlock's signal scope), or already reaped
		}
		n++
		if g, err := unix.Getpgid(pid); err == nil && g != pgid {
			outside[pid] = true
		}
		var ws unix.WaitStatus
		unix.Wait4(pid, &ws, unix.WNOHANG, nil)
	}
	return n, nil
}

// ownChildren lists the server's children: the kernel's list of each
// thread's (CONFIG_PROC_CHILDREN, which Debian's kernels have), from
// /proc/self, which the downloader domain's rules let it read.
func ownChildren() ([]int, error) {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, t := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + t.Name() + "/children")
		if errors.Is(err, fs.ErrNotExist) {
			continue // a thread that has exited
		}
		if err != nil {
			return nil, err
		}
		for _, f := range strings.Fields(string(b)) {
			pid, err := strconv.Atoi(f)
			if err != nil {
				return nil, fmt.Errorf("odd children list %q", b)
			}
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// ChildMain is the child launcher: it reads its spec, confines itself
// and executes the program. It never returns; on any error it exits with
// status 126 after a message on standard error.
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
	data, err := io.ReadAll(io.LimitReader(specFile, maxMsg+1))
	specFile.Close()
	if err != nil || len(data) > maxMsg {
		return fmt.Errorf("couldn't read the spec: %v", err)
	}
	var cs childSpec
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cs); err != nil {
		return fmt.Errorf("couldn't decode the spec: %w", err)
	}
	spec := &cs.Spec
	if err := spec.check(); err != nil {
		return err
	}
	if err := unix.Fchdir(4); err != nil {
		return fmt.Errorf("couldn't enter the job directory: %w", err)
	}
	// From here on the process may not gain privileges, even through
	// setuid binaries or file capabilities.
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("couldn't set no_new_privs: %w", err)
	}
	if err := setLimits(&spec.Limits); err != nil {
		return err
	}
	if cs.TCPOnly {
		if err := confine.TCPOnly(); err != nil {
			return err
		}
	}
	if cs.KeepGroup {
		if err := confine.KeepGroup(); err != nil {
			return err
		}
	}
	if cs.Jail {
		// The server is this process's parent: it forked it.
		ppid := os.Getppid()
		pgid, err := unix.Getpgid(ppid)
		if err != nil {
			return fmt.Errorf("couldn't read the server's process group: %w", err)
		}
		if err := confine.ChildJail(confine.JailParams{ServerPID: ppid, ServerPGID: pgid}); err != nil {
			return err
		}
	}
	if cs.Broker {
		// Last: from here on this process's socket and connect calls wait
		// for the server's answer.
		if err := checkFD(5, unix.S_IFSOCK); err != nil {
			return fmt.Errorf("launched without a broker socket on fd 5: %w", err)
		}
		fd, err := confine.BrokerFilter()
		if err != nil {
			return err
		}
		err = sendBrokerFD(5, fd)
		if fd >= 0 {
			unix.Close(fd)
		}
		unix.Close(5)
		if err != nil {
			return fmt.Errorf("couldn't send the broker its descriptor: %w", err)
		}
	}
	// Descriptors inherited without close-on-exec from whoever started the
	// worker would otherwise pass straight into the program. (fd 4 stays
	// open until exec: the Landlock rule for the job directory names it.)
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return fmt.Errorf("couldn't close inherited descriptors: %w", err)
	}
	argv := append([]string{spec.Path}, spec.Args...)
	if cs.Landlock {
		err = confine.LandlockExec(&cs.Rules, spec.Path, argv, spec.Env)
	} else {
		err = unix.Exec(spec.Path, argv, spec.Env)
	}
	return fmt.Errorf("couldn't execute %s: %w", spec.Path, err)
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
	if confine.Ablated(confine.LayerRlimit) {
		return nil
	}
	for _, r := range []struct {
		res  int
		name string
		v    uint64
	}{
		{unix.RLIMIT_CPU, "RLIMIT_CPU", l.CPUSeconds},
		{unix.RLIMIT_FSIZE, "RLIMIT_FSIZE", l.FileBytes},
		{unix.RLIMIT_NOFILE, "RLIMIT_NOFILE", l.OpenFiles},
		{unix.RLIMIT_NPROC, "RLIMIT_NPROC", l.Processes},
		{unix.RLIMIT_DATA, "RLIMIT_DATA", l.DataBytes},
		{unix.RLIMIT_CORE, "RLIMIT_CORE", 0},
	} {
		if err := unix.Setrlimit(r.res, &unix.Rlimit{Cur: r.v, Max: r.v}); err != nil {
			return fmt.Errorf("couldn't set %s: %w", r.name, err)
		}
	}
	return nil
}

// startProxy listens on a loopback port for the downloads' egress proxy
// and serves it: only the names in d.Hosts on port 443 (and, in test mode,
// the loopback media server), each job with its own credentials, at most
// 16 connections at once and twice its size cap plus 64 MiB in bytes.
func (s *server) startProxy(d *DownloadConfig) error {
	hosts := d.Hosts
	if len(hosts) == 0 {
		hosts = egress.DefaultHosts
	}
	pol := egress.Policy{Hosts: hosts, Ports: []uint16{443}}
	if d.TestBaseURL != "" {
		u, err := url.Parse(d.TestBaseURL)
		if err != nil || u.Scheme != "http" {
			return fmt.Errorf("bad test media URL %q", d.TestBaseURL)
		}
		pol.TestOrigin = u.Host
	}
	if err := pol.Check(); err != nil {
		return err
	}
	s.proxy = &egress.Proxy{Policy: pol, MaxConns: 16, MaxBytes: 2*d.MaxBytes + 64<<20,
		Report: func(e egress.Event) { s.send(&response{Egress: &e}) },
		// Its ports are on the host's loopback: only our own user (the
		// downloads) may hold a connection.
		Peer: func(c net.Conn) error {
			uid, err := egress.LoopbackPeerUID(c)
			if err == nil && uid != os.Getuid() {
				err = fmt.Errorf("a connection from uid %d", uid)
			}
			return err
		}}
	lc := net.ListenConfig{}
	lc.SetMultipathTCP(false)
	s.ports = make(chan int, s.setup.MaxChildren)
	for i := 0; i < s.setup.MaxChildren; i++ {
		ln, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("egress proxy: %w", err)
		}
		s.proxyAts = append(s.proxyAts, ln.Addr().String())
		s.ports <- i
		go func() {
			// The downloads have no other way out: a proxy that stops is
			// the end of the server (the worker then fails, and is
			// restarted).
			err := s.proxy.Serve(ln)
			fmt.Fprintf(os.Stderr, "ytkeep launcher server: the egress proxy stopped: %v\n", err)
			os.Exit(1)
		}()
	}
	return nil
}

// proxyPorts are the egress proxy's ports.
func (s *server) proxyPorts() []uint16 {
	var ps []uint16
	for _, a := range s.proxyAts {
		ps = append(ps, portOf(a))
	}
	return ps
}

func portOf(addr string) uint16 {
	_, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	return uint16(p)
}

// homeName is the child's home inside its job directory.
const homeName = ".home"

// makeHome checks that the job directory dir is empty and makes the
// child's home in it, returning its name.
func makeHome(dir *os.File) (string, error) {
	fd, err := unix.Openat(int(dir.Fd()), ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("job directory: %v", err)
	}
	f := os.NewFile(uintptr(fd), "jobdir")
	names, err := f.Readdirnames(1)
	f.Close()
	if len(names) > 0 {
		return "", errors.New("the job directory is not empty: refusing what someone put there")
	}
	if err != nil && err != io.EOF {
		return "", fmt.Errorf("job directory: %v", err)
	}
	if err := unix.Mkdirat(int(dir.Fd()), homeName, 0o750); err != nil {
		return "", fmt.Errorf("couldn't make the download's home: %v", err)
	}
	return homeName, nil
}
