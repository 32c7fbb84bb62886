// Command ytkeep-worker claims jobs from the spool and runs each download
// in the sandboxed downloader domain. The same binary is the launcher
// server and the child launcher when started with -sandbox-server or
// -sandbox-child (by itself, never by hand).
package main

import (
	"os"
	"time"

	"github.com/ytkeep/ytkeep/internal/audit"
	"github.com/ytkeep/ytkeep/internal/config"
	"github.com/ytkeep/ytkeep/internal/confine"
	"github.com/ytkeep/ytkeep/internal/daemon"
	"github.com/ytkeep/ytkeep/internal/sandbox"
	"github.com/ytkeep/ytkeep/internal/spool"
	"github.com/ytkeep/ytkeep/internal/worker"
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
	// Alerts also cross to the receiver, which posts them to the admin
	// channel (the relay starts writing once the spool is open).
	relay := worker.NewAlertRelay(base)
	log := audit.WithSink(base, "worker", relay)
	audit.Announce(log, cfg.Warnings())

	// 1. Become the worker's user, before reading any job.
	ra := cfg.Worker.RunAs
	// The downloads share the user and stop at child_max_processes; the
	// worker's own threads must still be able to start above that.
	if err := confine.BecomeConfigured(ra.User, ra.Group, ra.Groups, uint64(cfg.Worker.ChildMaxProcesses)+256); err != nil {
		return err
	}
	// Landlock on or off is decided once, fail closed, before anything
	// starts: the launcher server and the worker follow the same answer.
	useLandlock, err := confine.UseLandlock(confine.LandlockABI(), cfg.Security.InsecureNoLandlock)
	if err != nil {
		return err
	}
	// 2. Start the launcher server while we may still start programs; it
	// confines itself to the downloader domain.
	self, err := os.Executable()
	if err != nil {
		return err
	}
	layout := spool.Layout{Root: cfg.Spool.Dir}
	// The launcher server itself: its egress proxy connects to 443 and
	// resolves names (DNS over TCP falls back to 53); in test mode, to the
	// media server. The downloads reach the proxy alone.
	ports := []uint16{443, 53}
	if p := cfg.MediaPort(); p != 0 {
		ports = append(ports, p)
	}
	maxBytes := int64(cfg.Worker.MaxFileMB) << 20
	timeout := time.Duration(cfg.Worker.JobTimeoutSeconds) * time.Second
	launcher, err := sandbox.StartLauncher(self, &sandbox.Setup{
		Rules: *confine.DownloaderRules(confine.DownloaderParams{
			JobRoot: layout.Worker("work"), ExtraExec: cfg.Worker.ExtraExecPaths, ConnectPorts: ports}),
		Landlock:    useLandlock,
		Seccomp:     true,
		MaxChildren: cfg.Worker.Concurrency,
		// Fixed now: a compromised worker can later ask only for a video
		// ID and a format.
		Download: &sandbox.DownloadConfig{
			YtDlp: cfg.Worker.YtDlp, FFmpeg: cfg.Worker.FFmpeg, MaxBytes: maxBytes,
			SocketTimeout: cfg.Worker.SocketTimeoutSeconds, TestBaseURL: cfg.Testing.MediaBaseURL,
			Timeout: timeout, Hosts: cfg.Worker.EgressHosts,
			Limits: sandbox.Limits{
				CPUSeconds: uint64(cfg.Worker.JobTimeoutSeconds),
				FileBytes:  uint64(maxBytes) + 64<<20, // the exact cap is checked on the result
				OpenFiles:  uint64(cfg.Worker.ChildMaxOpenFiles),
				DataBytes:  uint64(cfg.Worker.ChildMaxMemoryMB) << 20,
				Processes:  uint64(cfg.Worker.ChildMaxProcesses),
			},
		},
	})
	if err != nil {
		return err
	}
	defer launcher.Close()
	// 3. Confine ourselves: no network, no exec, only the spool.
	abi, err := daemon.Confine(log, confine.Worker, confine.WorkerRules(confine.WorkerParams{
		ConfigFile: configPath,
		WriteDirs:  []string{layout.Incoming(), layout.Worker(""), cfg.Worker.DownloadsDir},
		DropDirs:   []string{layout.Results()},
	}), cfg.Security.InsecureNoLandlock, layout.Receiver(""))
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
		MaxFileBytes: maxBytes,
		MaxAttempts:  cfg.Worker.MaxAttempts,
		Logger:       log,
	})
	if err != nil {
		return err
	}
	go relay.Run(ctx, w.Results())
	err = w.Run(ctx)
	log.Info("worker stopped", "signal", stoppedBy())
	return err
}

// reportExit runs as systemd's ExecStopPost=: when the worker ended
// abnormally (killed by seccomp's SIGSYS, crashed, failed) it leaves an
// alert in results/ for the receiver to post.
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
