package sandbox

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ytkeep/ytkeep/internal/confine"
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

func TestTimeoutKillsWholeGroup(t *testing.T) {
	spec := &Spec{Path: "/bin/sh", Args: []string{"-c", "sleep 60 & echo $! > pid; wait"}, Limits: limits}
	o, _, _, dir := run(t, spec, 500*time.Millisecond)
	pidFile := filepath.Join(dir, "pid")
	if !o.TimedOut || o.Signal != syscall.SIGKILL {
		t.Fatalf("outcome %+v, want a timeout kill", o)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil || strings.Contains(string(st), ") Z ") {
			break // gone, or a zombie awaiting its reaper
		}
		if time.Now().After(deadline) {
			t.Fatalf("background process %d survived the group kill", pid)
		}
		time.Sleep(20 * time.Millisecond)
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
	root := t.TempDir()
	self, _ := os.Executable()
	fake, _ := filepath.Abs(ytdlp)
	l, err := StartLauncher(self, &Setup{
		Rules:    *confine.DownloaderRules(confine.DownloaderParams{JobRoot: root, ExtraExec: []string{filepath.Dir(fake)}}),
		Landlock: confine.LandlockABI() >= confine.MinLandlockABI,
		Seccomp:  true,
		Download: &DownloadConfig{YtDlp: fake, FFmpeg: "/usr/bin/ffmpeg", MaxBytes: 1 << 20, SocketTimeout: 5,
			Timeout: 10 * time.Second, Limits: limits},
	})
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

// TestServerRefusesWhatAWorkerMustNotAsk plays a compromised worker.
func TestServerRefusesWhatAWorkerMustNotAsk(t *testing.T) {
	l, root, err := downloader(t, "testdata/echo-yt-dlp")
	if err != nil {
		t.Fatal(err)
	}
	const id, other = "aaaaaaaaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbbbbbbbb"
	d := jobDir(t, root, id)
	jobDir(t, root, other)
	ctx := context.Background()
	for name, try := range map[string]func() error{
		"raw command line": func() error {
			_, err := l.Run(ctx, &Spec{Path: "/bin/sh", Args: []string{"-c", "id"}, Limits: limits}, d, nil, nil, time.Second)
			return err
		},
		"raw yt-dlp with --exec": func() error {
			fake, _ := filepath.Abs("testdata/echo-yt-dlp")
			_, err := l.Run(ctx, &Spec{Path: fake, Args: []string{"--exec", "sh -c id", "--", "x"}, Limits: limits}, d, nil, nil, time.Second)
			return err
		},
		"option as video":  func() error { _, err := l.Download(ctx, id, "--exec=id", "best", d, nil, nil); return err },
		"url as video":     func() error { _, err := l.Download(ctx, id, "https://e/", "best", d, nil, nil); return err },
		"unknown format":   func() error { _, err := l.Download(ctx, id, "dQw4w9WgXcQ", "bv*+--exec", d, nil, nil); return err },
		"path as job":      func() error { _, err := l.Download(ctx, "../../etc", "dQw4w9WgXcQ", "best", d, nil, nil); return err },
		"other job's name": func() error { _, err := l.Download(ctx, other, "dQw4w9WgXcQ", "best", d, nil, nil); return err },
	} {
		if err := try(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestServerRefusesAnOldYtDlp(t *testing.T) {
	if _, _, err := downloader(t, "testdata/old-yt-dlp"); err == nil || !strings.Contains(err.Error(), "lacks required flags") {
		t.Fatalf("StartLauncher with an old yt-dlp: %v", err)
	}
}

// TestServerCapsChildren: a worker asking for more children than the cap
// is refused, not obeyed.
func TestServerCapsChildren(t *testing.T) {
	root := t.TempDir()
	self, _ := os.Executable()
	l, err := StartLauncher(self, &Setup{
		Rules:       *confine.DownloaderRules(confine.DownloaderParams{JobRoot: root}),
		Landlock:    confine.LandlockABI() >= confine.MinLandlockABI,
		Seccomp:     true,
		RawPrograms: []string{"/bin/sleep"},
		MaxChildren: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	d, _ := os.Open(root)
	defer d.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errs := make(chan error, 5)
	for i := 0; i < 5; i++ {
		go func() {
			_, err := l.Run(ctx, &Spec{Path: "/bin/sleep", Args: []string{"5"}, Limits: limits}, d, nil, nil, 10*time.Second)
			errs <- err
		}()
	}
	busy := 0
	for i := 0; i < 3; i++ { // three of five are refused at once
		if err := <-errs; err != nil && strings.Contains(err.Error(), "busy") {
			busy++
		}
	}
	cancel()
	for i := 0; i < 2; i++ {
		<-errs
	}
	if busy != 3 {
		t.Fatalf("%d of 5 requests refused with a cap of 2, want 3", busy)
	}
}

// A launcher server that dies before its hello (here: a setup it refuses;
// under systemd it was a seccomp call the unit forbade) must make
// StartLauncher fail, so that the worker exits and systemd restarts and
// reports it, instead of waiting for ever on a socket whose other end the
// worker itself still held.
func TestStartLauncherFailsWhenServerDies(t *testing.T) {
	self, _ := os.Executable()
	rules := confine.DownloaderRules(confine.DownloaderParams{JobRoot: t.TempDir()})
	rules.WriteDirs = append(rules.WriteDirs, t.TempDir()) // two job roots: refused
	done := make(chan error, 1)
	go func() {
		l, err := StartLauncher(self, &Setup{Rules: *rules, Seccomp: true})
		if l != nil {
			l.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("StartLauncher succeeded with a server that refused its setup")
		}
		t.Logf("StartLauncher: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("StartLauncher still waits for a launcher server that has exited")
	}
}
