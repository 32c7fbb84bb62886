// Command ytkeep-worker claims jobs from the spool, has each download run
// by the downloader daemon (ytkeep-downloader, another user), and stores
// the videos. It holds no secret, reaches no network and starts nothing.
package main

import (
	"context"
	"errors"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ytkeep/ytkeep/internal/audit"
	"github.com/ytkeep/ytkeep/internal/config"
	"github.com/ytkeep/ytkeep/internal/confine"
	"github.com/ytkeep/ytkeep/internal/daemon"
	"github.com/ytkeep/ytkeep/internal/metrics"
	"github.com/ytkeep/ytkeep/internal/sandbox"
	"github.com/ytkeep/ytkeep/internal/spool"
	"github.com/ytkeep/ytkeep/internal/worker"
)

func main() {
	helpOrUsage()
	daemon.Main("ytkeep-worker", run, reportExit)
}

func run(configPath string) error {
	ctx, stop, stoppedBy := daemon.SignalContext()
	defer stop()
	cfg, configPath, err := config.LoadFor(configPath, (*config.Config).CheckWorker)
	if err != nil {
		return err
	}
	base := audit.NewLogger(os.Stderr, cfg.Log.Level, "worker")
	// Alerts also cross to the courier, which posts them to the admin
	// channel (the relay starts writing once the spool is open).
	relay := worker.NewAlertRelay(base)
	// Metrics (metrics.dir): audit events, alerts relayed, the queue.
	ms := daemon.Metrics(cfg, metrics.Worker)
	relay.Metrics = ms
	log := metrics.Events(audit.WithSink(base, "worker", relay), ms)
	audit.Announce(log, cfg.Warnings())

	// 1. Become the worker's user, before reading any job. It starts no
	// process; its threads stay far below this cap.
	ra := cfg.Worker.RunAs
	if err := confine.BecomeConfigured(ra.User, ra.Group, ra.Groups, 256); err != nil {
		return err
	}
	stopMetrics, err := daemon.StartMetrics(cfg, ms, log)
	if err != nil {
		return err
	}
	defer stopMetrics()
	// 2. Connect to the downloader daemon while we may still make a
	// socket. It may be starting too: wait for it a little.
	launcher, err := connectDownloader(ctx, cfg.Downloader.Socket)
	if err != nil {
		return err
	}
	defer launcher.Close()
	go func() {
		// Without its downloader the worker is of no use: say so and
		// end, so that systemd starts it again and it reconnects.
		select {
		case <-launcher.Done():
			audit.Alert(log, audit.Crashed, "service", "ytkeep-downloader",
				"reason", "the downloader closed the worker's connection; the worker restarts to reconnect")
			stop()
		case <-ctx.Done():
		}
	}()
	// 3. Confine ourselves: no network, no exec, only the spool.
	layout := spool.Layout{Root: cfg.Spool.Dir}
	abi, err := daemon.Confine(log, confine.Worker, daemon.WithMetrics(confine.WorkerRules(confine.WorkerParams{
		ConfigFile: configPath,
		WriteDirs:  []string{layout.Incoming(), layout.Worker(""), layout.Work(), cfg.Worker.DownloadsDir},
		DropDirs:   []string{layout.Results()},
	}), cfg, metrics.Worker), cfg.Security.InsecureNoLandlock, layout.Receiver(""))
	if err != nil {
		return err
	}
	log.Info("worker confined", "uid", os.Getuid(), "gid", os.Getgid(), "landlock_abi", abi,
		"seccomp_allowed", confine.AllowedCount(confine.Worker))

	w, err := worker.New(worker.Options{
		SpoolDir:     cfg.Spool.Dir,
		DownloadsDir: cfg.Worker.DownloadsDir,
		Launcher:     launcher,
		Concurrency:  cfg.Worker.Concurrency,
		MaxFileBytes: int64(cfg.Worker.MaxFileMB) << 20,
		DailyBytes:   int64(cfg.Worker.DownloadQuotaMBPerDay) << 20,
		MaxAttempts:  cfg.Worker.MaxAttempts,
		Logger:       log,
		Metrics:      ms,
	})
	if err != nil {
		return err
	}
	go relay.Run(ctx, w.Results())
	err = w.Run(ctx)
	log.Info("worker stopped", "signal", stoppedBy())
	if err == nil && launcherGone(launcher) {
		// The relay stopped with ctx: hand its alert to the courier now.
		relay.Flush(w.Results())
		return errors.New("the downloader went away")
	}
	return err
}

// connectDownloader connects to the downloader daemon's socket, trying
// for up to 30 s while the daemon starts (or restarts).
func connectDownloader(ctx context.Context, path string) (*sandbox.Launcher, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		l, err := sandbox.Connect(path)
		if err == nil || time.Now().After(deadline) || (!errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ECONNREFUSED)) {
			return l, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func launcherGone(l *sandbox.Launcher) bool {
	select {
	case <-l.Done():
		return true
	default:
		return false
	}
}

// reportExit runs as systemd's ExecStopPost=: when the worker ended
// abnormally (killed by seccomp's SIGSYS, crashed, failed) it leaves an
// alert in results/ for the courier to post.
func reportExit(configPath string) error {
	cfg, _, err := config.LoadFor(configPath, (*config.Config).CheckWorker)
	if err != nil {
		return err
	}
	ra := cfg.Worker.RunAs
	if err := confine.BecomeConfigured(ra.User, ra.Group, ra.Groups, 0); err != nil {
		return err
	}
	base := audit.NewLogger(os.Stderr, cfg.Log.Level, "worker")
	relay := worker.NewAlertRelay(base)
	if !audit.ReportExit(audit.WithSink(base, "worker", relay), "ytkeep-worker") {
		return nil
	}
	out, err := worker.OpenResults(cfg.Spool.Dir)
	if err != nil {
		return err
	}
	return relay.Flush(out)
}
