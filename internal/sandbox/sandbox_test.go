package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ytkeep/ytkeep/internal/confine"
	"github.com/ytkeep/ytkeep/internal/job"
)

// The test binary doubles as the launcher, as the worker binary does.
func TestMain(m *testing.M) {
	if len(os.Args) == 2 {
		switch os.Args[1] {
		case ServerFlag:
			ServerMain()
		case ChildFlag:
			ChildMain()
		}
	}
	os.Exit(m.Run())
}

// launcher starts a launcher server whose job root is a fresh directory,
// with every layer on (Landlock when the kernel has it).
func launcher(t *testing.T) (*Launcher, string) {
	t.Helper()
	root := t.TempDir()
	self, _ := os.Executable()
	rules := confine.DownloaderRules(confine.DownloaderParams{JobRoot: root})
	// These tests inspect the child through /proc, which the production
	// rules do not grant.
	rules.ReadDirs = append(rules.ReadDirs, "/proc")
	l, err := StartLauncher(self, &Setup{
		Rules:       *rules,
		RawPrograms: []string{"/bin/sh", "/bin/cat", "/bin/dd"},
		Landlock:    confine.LandlockABI() >= confine.MinLandlockABI,
		Seccomp:     true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, root
}

var limits = Limits{CPUSeconds: 30, FileBytes: 1 << 20, OpenFiles: 64, Processes: 4096, DataBytes: 512 << 20}

func run(t *testing.T, spec *Spec, timeout time.Duration) (*Outcome, string, string, string) {
	t.Helper()
	l, root := launcher(t)
	dir, err := os.MkdirTemp(root, "job")
	if err != nil {
		t.Fatal(err)
	}
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var out, errb bytes.Buffer
	o, err := l.Run(context.Background(), spec, d, &out, &errb, timeout)
	if err != nil {
		t.Fatalf("Run: %v (stderr %q)", err, errb.String())
	}
	return o, out.String(), errb.String(), dir
}

func TestChildEnvironmentAndDirectory(t *testing.T) {
	o, out, stderr, dir := run(t, &Spec{Path: "/bin/sh", Args: []string{"-c", "env; pwd; grep NoNewPrivs /proc/self/status; exec /bin/ls /proc/self/fd"}, Env: []string{"ONLY=1"}, Limits: limits}, 10*time.Second)
	if o.ExitCode != 0 {
		t.Fatalf("exit %d: %s", o.ExitCode, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var env []string
	for _, l := range lines {
		if strings.Contains(l, "=") {
			env = append(env, l)
		}
	}
	// sh adds PWD and may add SHLVL/_; nothing of ours may leak.
	for _, e := range env {
		k := e[:strings.IndexByte(e, '=')]
		if k != "ONLY" && k != "PWD" && k != "SHLVL" && k != "_" {
			t.Errorf("unexpected environment variable %s", e)
		}
	}
	if !strings.Contains(out, "\n"+dir+"\n") {
		t.Errorf("working directory not the job dir %s:\n%s", dir, out)
	}
	if !strings.Contains(out, "NoNewPrivs:\t1") {
		t.Errorf("no_new_privs not set:\n%s", out)
	}
	// Only stdin/stdout/stderr (and ls's own directory fd) are open.
	fds := strings.Fields(out[strings.Index(out, "NoNewPrivs"):])[2:]
	if len(fds) != 4 || fds[3] != "3" {
		t.Errorf("descriptors leaked into the program: %v", fds)
	}
}

func TestChildLimits(t *testing.T) {
	o, out, stderr, _ := run(t, &Spec{Path: "/bin/cat", Args: []string{"/proc/self/limits"}, Limits: limits}, 10*time.Second)
	if o.ExitCode != 0 {
		t.Fatalf("exit %d: %s", o.ExitCode, stderr)
	}
	for _, want := range []string{
		"Max cpu time              30                   30",
		"Max file size             1048576              1048576",
		"Max processes             4096                 4096",
		"Max open files            64                   64",
		"Max data size             536870912            536870912",
		"Max core file size        0                    0",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("limits lack %q:\n%s", want, out)
		}
	}
	// RLIMIT_FSIZE is enforced: writing past it fails.
	o, _, _, dir := run(t, &Spec{Path: "/bin/dd", Args: []string{"if=/dev/zero", "of=big", "bs=1M", "count=3"}, Limits: limits}, 10*time.Second)
	if o.ExitCode == 0 && o.Signal == 0 {
		t.Error("dd wrote past RLIMIT_FSIZE")
	}
	if st, err := os.Stat(filepath.Join(dir, "big")); err == nil && st.Size() > 1<<20 {
		t.Errorf("file grew to %d bytes", st.Size())
	}
}

// TestTimeoutKillsWholeGroup: a child that outlives its timeout is killed
// with its whole process group, here a shell and the process it left in
// the background.
//
// The timeout runs from the child's start, which a loaded machine can
// delay past it. So the shell records the background process and only
// then says it is ready; an attempt killed before that proves nothing and
// is repeated with a longer timeout. Time decides only how many attempts
// it takes, never whether the group was killed.
func TestTimeoutKillsWholeGroup(t *testing.T) {
	l, root := launcher(t)
	// stat: the background process's /proc stat line (its ID and start
	// time, which tell it from a later process with the same ID). It does
	// not hold the output pipes, so that a survivor cannot hold up Run.
	spec := &Spec{Path: "/bin/sh", Args: []string{"-c",
		`/bin/sleep 600 >sleep.out 2>&1 & read -r st </proc/$!/stat && echo "$st" >stat && : >ready && wait`}, Limits: limits}
	for timeout := 500 * time.Millisecond; ; timeout *= 4 {
		if timeout > 32*time.Second {
			t.Fatal("the shell never got ready before its timeout")
		}
		dir, err := os.MkdirTemp(root, "job")
		if err != nil {
			t.Fatal(err)
		}
		d, err := os.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		var stderr syncWriter
		o, err := awaitRun(t, startRun(nil, l, spec, d, nil, &stderr, timeout), timeout+hangGuard)
		d.Close()
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		if !o.TimedOut || o.Signal != syscall.SIGKILL {
			t.Fatalf("outcome %+v, want a timeout kill (stderr %q)", o, stderr.String())
		}
		if _, err := os.Stat(filepath.Join(dir, "ready")); errors.Is(err, fs.ErrNotExist) {
			t.Logf("killed at %v before it was ready: again with a longer timeout", timeout)
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, "stat"))
		if err != nil {
			t.Fatal(err)
		}
		if p := parseStat(t, string(b)); !ended(t, p, hangGuard) {
			t.Fatalf("background process %d survived the group kill", p.pid)
		}
		return
	}
}

func TestSpecRefused(t *testing.T) {
	l, root := launcher(t)
	d, _ := os.Open(root)
	defer d.Close()
	for name, s := range map[string]*Spec{
		"relative":      {Path: "sh", Limits: limits},
		"no limits":     {Path: "/bin/sh"},
		"not a program": {Path: "/usr/bin/python3", Limits: limits},
	} {
		if _, err := l.Run(context.Background(), s, d, nil, nil, time.Second); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestLauncherWithoutDescriptors(t *testing.T) {
	self, _ := os.Executable()
	p, err := os.StartProcess(self, []string{self, ChildFlag}, &os.ProcAttr{Files: []*os.File{nil, nil, nil}})
	if err != nil {
		t.Fatal(err)
	}
	st, _ := p.Wait()
	if st.ExitCode() != 126 {
		t.Fatalf("launcher without spec exited %d, want 126", st.ExitCode())
	}
}

// downloader starts a production-like launcher server (no raw programs)
// with the echoing fake yt-dlp.
func downloader(t *testing.T, ytdlp string) (*Launcher, string, error) {
	t.Helper()
	return downloaderWithin(t, ytdlp, 10*time.Second)
}

// downloaderWithin is downloader with each download's time limit.
func downloaderWithin(t *testing.T, ytdlp string, timeout time.Duration) (*Launcher, string, error) {
	t.Helper()
	root := t.TempDir()
	self, _ := os.Executable()
	fake, _ := filepath.Abs(ytdlp)
	setup := &Setup{
		Rules:    *confine.DownloaderRules(confine.DownloaderParams{JobRoot: root, ExtraExec: []string{filepath.Dir(fake)}}),
		Landlock: confine.LandlockABI() >= confine.MinLandlockABI,
		Seccomp:  true,
		Download: &DownloadConfig{YtDlp: fake, FFmpeg: "/usr/bin/ffmpeg", MaxBytes: 1 << 20, SocketTimeout: 5,
			Timeout: timeout, Limits: limits},
	}
	l, err := StartLauncher(self, setup)
	if err == nil {
		t.Cleanup(func() { l.Close() })
	}
	return l, root, err
}

func jobDir(t *testing.T, root, name string) *os.File {
	t.Helper()
	if err := os.Mkdir(filepath.Join(root, name), 0o700); err != nil {
		t.Fatal(err)
	}
	d, err := os.Open(filepath.Join(root, name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// TestServerBuildsTheCommandLine: the worker sends a video ID and a
// format; what runs is yt-dlp's fixed command line, ending in "--" and a
// URL rebuilt from the ID.
func TestServerBuildsTheCommandLine(t *testing.T) {
	l, root, err := downloader(t, "testdata/echo-yt-dlp")
	if err != nil {
		t.Fatal(err)
	}
	if l.Version() != "2023.03.04" {
		t.Fatalf("version %q", l.Version())
	}
	const id = "aaaaaaaaaaaaaaaaaaaaaaaaaa"
	d := jobDir(t, root, id)
	var out bytes.Buffer
	o, err := l.Download(context.Background(), id, "dQw4w9WgXcQ", "720p", d, &out, nil)
	if err != nil || o.ExitCode != 0 {
		t.Fatalf("download: %v %+v", err, o)
	}
	argv := strings.Split(strings.TrimSpace(out.String()), "\n")
	if n := len(argv); n < 3 || argv[n-2] != "--" || argv[n-1] != "https://www.youtube.com/watch?v=dQw4w9WgXcQ" {
		t.Fatalf("argv ends %q", argv)
	}
	for i, a := range argv {
		if a == "--paths" && argv[i+1] != filepath.Join(root, id) {
			t.Fatalf("--paths %q", argv[i+1])
		}
	}
}

// TestServerRefusesWhatAWorkerMustNotAsk plays a compromised worker, which
// writes its own requests on the socket and skips the Launcher's checks.
// Each request is refused for its own reason: a malformed one is logged
// and closed unanswered, a well-formed one the server will not run is
// answered with why; none runs anything, and the server still serves an
// honest request afterwards.
func TestServerRefusesWhatAWorkerMustNotAsk(t *testing.T) {
	// The server's standard error is its log of refused requests. (No
	// test of this package runs in parallel: os.Stderr is ours a moment.)
	logR, logW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logR.Close() }) // after the server has exited
	stderr := os.Stderr
	os.Stderr = logW // StartLauncher hands it to the server
	l, root, err := downloader(t, "testdata/echo-yt-dlp")
	os.Stderr = stderr
	logW.Close()
	if err != nil {
		t.Fatal(err)
	}
	logged := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(logR)
		for sc.Scan() {
			logged <- sc.Text()
		}
	}()

	const id, other = "aaaaaaaaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbbbbbbbb"
	const video = "dQw4w9WgXcQ"
	d := jobDir(t, root, id)
	jobDir(t, root, other)
	fake, err := filepath.Abs("testdata/echo-yt-dlp")
	if err != nil {
		t.Fatal(err)
	}
	raw := func(spec *Spec) json.RawMessage {
		b, err := json.Marshal(struct {
			Spec      *Spec `json:"spec"`
			TimeoutMS int64 `json:"timeout_ms"`
		}{spec, 1000})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	const refused = "ytkeep launcher server: refused a request: "
	var unanswered []<-chan *response
	for _, tc := range []struct {
		name string
		req  job.Launch
		want string // "answer: " and the server's answer, or "log: " and its log line
	}{
		{"raw command line", job.Launch{Raw: raw(&Spec{Path: "/bin/sh", Args: []string{"-c", "id"}, Limits: limits})},
			"answer: this launcher runs no caller's command line"},
		{"raw yt-dlp with --exec", job.Launch{Raw: raw(&Spec{Path: fake, Args: []string{"--exec", "sh -c id", "--", "x"}, Limits: limits})},
			"answer: this launcher runs no caller's command line"},
		{"option as video", job.Launch{JobDir: id, Video: "--exec=id", Format: job.Format720},
			"log: " + refused + "malformed record: field video: not a video ID"},
		{"url as video", job.Launch{JobDir: id, Video: "https://e/", Format: job.Format720},
			"log: " + refused + "malformed record: field video: not a video ID"},
		{"unknown format", job.Launch{JobDir: id, Video: video, Format: "bv*+--exec"},
			"log: " + refused + "malformed record: field format: unknown format"},
		{"path as job", job.Launch{JobDir: "../../etc", Video: video, Format: job.Format720},
			"log: " + refused + "malformed record: field job_dir: not a job id"},
		// Names the right directory: only the name check refuses it.
		{"path to the job", job.Launch{JobDir: id + "/.", Video: video, Format: job.Format720},
			"log: " + refused + "malformed record: field job_dir: not a job id"},
		{"other job's name", job.Launch{JobDir: other, Video: video, Format: job.Format720},
			"answer: the descriptor is not the named job directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			answer, out := sendAsWorker(t, l, &tc.req, d)
			defer out.Close()
			var got string
			select {
			case r := <-answer:
				if r == nil {
					t.Fatal("the launcher server is gone")
				}
				got = "answer: " + r.Error
			case line := <-logged:
				got = "log: " + line
				unanswered = append(unanswered, answer)
			case <-time.After(hangGuard):
				t.Fatalf("neither answered nor logged after %v", hangGuard)
			}
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
			if b := readAll(t, out, hangGuard); len(b) != 0 {
				t.Errorf("something ran: %q", b)
			}
		})
	}
	// The server is still there and still serves the worker.
	var out bytes.Buffer
	o, err := l.Download(context.Background(), id, video, job.Format720, d, &out, nil)
	if err != nil || o.ExitCode != 0 {
		t.Fatalf("honest download after the refusals: %v %+v", err, o)
	}
	if argv := strings.Split(strings.TrimSpace(out.String()), "\n"); argv[len(argv)-1] != "https://www.youtube.com/watch?v="+video {
		t.Fatalf("honest download ran %q", argv)
	}
	// The server reads requests in order and refuses a malformed one
	// before the next: had it answered one, the answer would be here.
	for _, ch := range unanswered {
		select {
		case r := <-ch:
			t.Errorf("a malformed request was answered: %+v", r)
		default:
		}
	}
	select {
	case line := <-logged:
		t.Errorf("the server logged %q for an honest download", line)
	default:
	}
}

// sendAsWorker sends req on l's socket as a compromised worker would: its
// own bytes, without the Launcher's checks (req is encoded, not
// validated). The request carries dir and, as standard output and error,
// a pipe whose read end sendAsWorker returns. The channel gets the
// server's answer, or nil if the server goes away.
func sendAsWorker(t *testing.T, l *Launcher, req *job.Launch, dir *os.File) (<-chan *response, *os.File) {
	t.Helper()
	answer := make(chan *response, 1)
	l.mu.Lock()
	l.next++
	req.ID = l.next
	l.waiting[req.ID] = answer
	l.mu.Unlock()
	data, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	err = unix.Sendmsg(l.fd, data, unix.UnixRights(int(dir.Fd()), int(w.Fd()), int(w.Fd())), nil, 0)
	w.Close() // the server has its copies
	if err != nil {
		r.Close()
		t.Fatalf("sendmsg: %v", err)
	}
	return answer, r
}

func TestServerRefusesAnOldYtDlp(t *testing.T) {
	if _, _, err := downloader(t, "testdata/old-yt-dlp"); err == nil || !strings.Contains(err.Error(), "lacks required flags") {
		t.Fatalf("StartLauncher with an old yt-dlp: %v", err)
	}
}

// TestServerCapsChildren: a worker asking for more children than the cap
// is refused, not obeyed. Two children run and are held until the test
// lets them go; meanwhile every further request is refused at once and
// starts nothing. Once they have ended, a new request runs again.
func TestServerCapsChildren(t *testing.T) {
	root := t.TempDir()
	self, _ := os.Executable()
	l, err := StartLauncher(self, &Setup{
		Rules:       *confine.DownloaderRules(confine.DownloaderParams{JobRoot: root}),
		Landlock:    confine.LandlockABI() >= confine.MinLandlockABI,
		Seccomp:     true,
		RawPrograms: []string{"/bin/sh"},
		MaxChildren: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	d, err := os.Open(root)
	if err != nil {
		l.Close()
		t.Fatal(err)
	}
	// Cleanups run last first: let the children go, stop the server (which
	// ends any child still running, and so every run), close d last.
	var runs sync.WaitGroup
	t.Cleanup(func() { d.Close() })
	t.Cleanup(runs.Wait)
	t.Cleanup(func() { l.Close() })
	// Each child opens the FIFO "release", says "ready", and waits for the
	// end of the FIFO, which comes when the test closes the only writer.
	// (Children cannot make FIFOs: Landlock lets them create only regular
	// files and directories.)
	if err := unix.Mkfifo(filepath.Join(root, "release"), 0o600); err != nil {
		t.Fatal(err)
	}
	release, err := unix.Open(filepath.Join(root, "release"), unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	var releaseOnce sync.Once
	releaseAll := func() { releaseOnce.Do(func() { unix.Close(release) }) }
	t.Cleanup(releaseAll)
	held := &Spec{Path: "/bin/sh", Args: []string{"-c", "exec 3<release && echo ready && read -r x <&3; echo released"}, Limits: limits}
	type child struct {
		stdout, stderr *syncWriter
		done           <-chan runResult
	}
	start := func(spec *Spec) child {
		c := child{stdout: newSyncWriter(), stderr: newSyncWriter()}
		c.done = startRun(&runs, l, spec, d, c.stdout, c.stderr, 10*time.Minute) // the test ends them
		return c
	}

	var running []child
	for range 2 {
		c := start(held)
		select {
		case <-c.stdout.ready:
		case r := <-c.done:
			t.Fatalf("child %d ended before it was ready: %v %+v, stderr %q", len(running)+1, r.err, r.o, c.stderr.String())
		case <-time.After(hangGuard):
			t.Fatalf("child %d not ready after %v", len(running)+1, hangGuard)
		}
		running = append(running, c)
	}
	for i := range 3 {
		c := start(held)
		select {
		case r := <-c.done:
			if want := "launcher server: busy: 2 children running"; r.err == nil || r.err.Error() != want || !errors.Is(r.err, ErrBusy) {
				t.Errorf("request %d of 5: %v %+v, want %q", i+3, r.err, r.o, want)
			}
			if out := c.stdout.String() + c.stderr.String(); out != "" {
				t.Errorf("request %d of 5 ran something: %q", i+3, out)
			}
		case <-c.stdout.ready:
			t.Fatalf("a child of request %d of 5 runs beside 2, with a cap of 2", i+3)
		case <-time.After(hangGuard):
			t.Fatalf("request %d of 5 neither refused nor run after %v", i+3, hangGuard)
		}
	}
	releaseAll()
	for i, c := range running {
		o, err := awaitRun(t, c.done, hangGuard)
		if err != nil || o.ExitCode != 0 || c.stdout.String() != "ready\nreleased\n" {
			t.Errorf("child %d: %v %+v, stdout %q, stderr %q", i+1, err, o, c.stdout.String(), c.stderr.String())
		}
	}
	// The ended children's slots are free again, as soon as their answers
	// came: a request sent at once runs.
	c := start(&Spec{Path: "/bin/sh", Args: []string{"-c", "echo ready"}, Limits: limits})
	if o, err := awaitRun(t, c.done, hangGuard); err != nil || o.ExitCode != 0 || c.stdout.String() != "ready\n" {
		t.Fatalf("request after the children ended: %v %+v, stderr %q", err, o, c.stderr.String())
	}
}
