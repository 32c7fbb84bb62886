// Command ytkeep-downloader is the downloader daemon: it runs yt-dlp for
// the worker, each download in a child confined to its job directory,
// with its own egress proxy as the children's only way out. It runs as a
// user of its own (ytkeep-dl), which can reach none of the other
// daemons' files, and serves the worker over a Unix socket. The same
// binary is the child launcher when started with -sandbox-child (by
// itself, never by hand).
//
// With -config - it reads its configuration from standard input, which
// its unit opens as root (StandardInput=file:): the file is not the
// downloader user's to read, so a download cannot read it either.
package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ytkeep/ytkeep/internal/audit"
	"github.com/ytkeep/ytkeep/internal/config"
	"github.com/ytkeep/ytkeep/internal/confine"
	"github.com/ytkeep/ytkeep/internal/daemon"
	"github.com/ytkeep/ytkeep/internal/metrics"
	"github.com/ytkeep/ytkeep/internal/sandbox"
	"github.com/ytkeep/ytkeep/internal/spool"
)

func main() {
	// The launcher modes take their instructions from descriptors only.
	if len(os.Args) == 2 {
		switch os.Args[1] {
		case sandbox.ServerFlag:
			sandbox.ServerMain()
		case sandbox.ChildFlag:
			sandbox.ChildMain()
		}
	}
	// No -exit-alert: it cannot write the spool; the worker alerts when
	// its connection to the downloader ends.
	helpOrUsage()
	daemon.Main("ytkeep-downloader", run, nil)
}

func run(configPath string) error {
	ctx, stop, stoppedBy := daemon.SignalContext()
	defer stop()
	cfg, err := loadConfig(configPath)
	if err != nil {
		return err
	}
	// Metrics (metrics.dir): launches, children, audit events.
	ms := daemon.Metrics(cfg, metrics.Downloader)
	log := metrics.Events(audit.NewLogger(os.Stderr, cfg.Log.Level, "downloader"), ms)
	audit.Announce(log, cfg.Warnings())

	// 1. Become the downloader's user. The downloads run as this user
	// too; RLIMIT_NPROC counts them all (and our threads).
	ra := cfg.Downloader.RunAs
	if err := confine.BecomeConfigured(ra.User, ra.Group, ra.Groups, uint64(cfg.Worker.ChildMaxProcesses)+256); err != nil {
		return err
	}
	stopMetrics, err := daemon.StartMetrics(cfg, ms, log)
	if err != nil {
		return err
	}
	defer stopMetrics()
	useLandlock, err := confine.UseLandlock(confine.LandlockABI(), cfg.Security.InsecureNoLandlock)
	if err != nil {
		return err
	}
	setup, err := setupFrom(cfg, useLandlock)
	if err != nil {
		return err
	}
	setup.Metrics, setup.MetricsDirs = ms, daemon.MetricsDirs(cfg, metrics.Downloader)
	// 2. The socket systemd made (ytkeep-downloader.socket), or one of
	// our own (tests, the demo), before the filter refuses listen.
	ln, err := inherited(cfg.Downloader.Socket)
	if err == nil && ln == nil {
		ln, err = listen(cfg.Downloader.Socket)
	}
	if err != nil {
		return err
	}
	defer ln.Close()
	// 3. Start the egress proxy, confine ourselves to the downloader
	// domain, probe yt-dlp; then serve the worker.
	err = sandbox.ServeDaemon(ctx, ln, setup, log)
	log.Info("downloader stopped", "signal", stoppedBy())
	return err
}

// loadConfig reads the configuration from standard input for -config -
// (and leaves /dev/null there), else from the file at path (the tests and
// the demo as one user).
func loadConfig(path string) (*config.Config, error) {
	if path == daemon.StdinConfig {
		return daemon.ReadStdinConfig((*config.Config).CheckDownloader)
	}
	cfg, _, err := config.LoadFor(path, (*config.Config).CheckDownloader)
	return cfg, err
}

// setupFrom is the downloader domain and the downloads' settings, all
// from the configuration: nothing the worker sends can change them.
func setupFrom(cfg *config.Config, useLandlock bool) (*sandbox.Setup, error) {
	// The egress proxy connects to 443 and resolves names (DNS over TCP
	// falls back to 53); in test mode, to the media server. The downloads
	// reach the proxy alone.
	ports := []uint16{443, 53}
	if p := cfg.MediaPort(); p != 0 {
		ports = append(ports, p)
	}
	maxBytes := int64(cfg.Worker.MaxFileMB) << 20
	return &sandbox.Setup{
		Rules: *confine.DownloaderRules(confine.DownloaderParams{
			JobRoot: spool.Layout{Root: cfg.Spool.Dir}.Work(), ExtraExec: cfg.Worker.ExtraExecPaths, ConnectPorts: ports}),
		Landlock:    useLandlock,
		Seccomp:     true,
		MaxChildren: cfg.Worker.Concurrency,
		// A directory ours alone to write: yt-dlp is probed there, out of
		// the worker's reach (systemd's RuntimeDirectory=; else, in tests
		// and the demo, the directory of the socket we make ourselves).
		ProbeDir: probeDir(cfg.Downloader.Socket),
		Download: &sandbox.DownloadConfig{
			YtDlp: cfg.Worker.YtDlp, FFmpeg: cfg.Worker.FFmpeg, MaxBytes: maxBytes,
			SocketTimeout: cfg.Worker.SocketTimeoutSeconds, TestBaseURL: cfg.Testing.MediaBaseURL,
			Timeout: time.Duration(cfg.Worker.JobTimeoutSeconds) * time.Second, Hosts: cfg.Worker.EgressHosts,
			Limits: sandbox.Limits{
				CPUSeconds: uint64(cfg.Worker.JobTimeoutSeconds),
				FileBytes:  uint64(maxBytes) + 64<<20, // the exact cap is checked on the result
				OpenFiles:  uint64(cfg.Worker.ChildMaxOpenFiles),
				DataBytes:  uint64(cfg.Worker.ChildMaxMemoryMB) << 20,
				Processes:  uint64(cfg.Worker.ChildMaxProcesses),
			},
		},
	}, nil
}

// listen makes the worker's socket at path, readable and writable by our
// group (the worker is its one other member). A socket left by an
// earlier run is replaced; anything else there is an error.
func listen(path string) (*net.UnixListener, error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err == nil {
		if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, err
		}
	} else if !errors.Is(err, unix.ENOENT) {
		return nil, err
	}
	old := unix.Umask(0o117) // created 0660: no window where others may connect
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("couldn't listen on %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(true)
	return ln, nil
}

// probeDir is $RUNTIME_DIRECTORY when systemd made one, else the
// socket's directory.
func probeDir(socket string) string {
	if d := os.Getenv("RUNTIME_DIRECTORY"); d != "" && filepath.IsAbs(d) && !strings.Contains(d, ":") {
		return d
	}
	return filepath.Dir(socket)
}

// inherited returns the listening socket systemd passed (LISTEN_FDS=1 for
// this process, on fd 3), checked to be the configured path; nil if
// systemd passed none.
func inherited(path string) (*net.UnixListener, error) {
	if os.Getenv("LISTEN_PID") != strconv.Itoa(os.Getpid()) || os.Getenv("LISTEN_FDS") == "" {
		return nil, nil
	}
	if os.Getenv("LISTEN_FDS") != "1" {
		return nil, fmt.Errorf("systemd passed %s sockets; want one (ytkeep-downloader.socket)", os.Getenv("LISTEN_FDS"))
	}
	os.Unsetenv("LISTEN_PID")
	os.Unsetenv("LISTEN_FDS")
	os.Unsetenv("LISTEN_FDNAMES")
	unix.CloseOnExec(3)
	f := os.NewFile(3, "listener")
	defer f.Close() // FileListener holds a duplicate
	l, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("the socket systemd passed: %w", err)
	}
	ul, ok := l.(*net.UnixListener)
	if !ok || ul.Addr().Network() != "unixpacket" || ul.Addr().String() != path {
		l.Close()
		return nil, fmt.Errorf("the socket systemd passed is %s %s; want unixpacket %s (downloader.socket)", l.Addr().Network(), l.Addr(), path)
	}
	ul.SetUnlinkOnClose(false) // systemd's, kept across our restarts
	return ul, nil
}
