// Command ytkeep-worker claims jobs from the spool and runs each download
// in a sandboxed child. The same binary is the child launcher when started
// with -sandbox-child (by itself, never by hand).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ytkeep/ytkeep/internal/audit"
	"github.com/ytkeep/ytkeep/internal/config"
	"github.com/ytkeep/ytkeep/internal/sandbox"
	"github.com/ytkeep/ytkeep/internal/worker"
)

func main() {
	// The launcher must not parse flags or read config: it takes its spec
	// from fd 3 only.
	if len(os.Args) == 2 && os.Args[1] == sandbox.ChildFlag {
		sandbox.ChildMain()
	}
	configPath := flag.String("config", "/etc/ytkeep/ytkeep.toml", "configuration file")
	flag.Parse()
	if err := run(*configPath); err != nil {
		fmt.Fprintf(os.Stderr, "ytkeep-worker: %v\n", err)
		os.Exit(1)
	}
}

func run(configPath string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	cfg, err := config.Load(configPath)
	if err != nil {
		return err
	}
	if err := cfg.CheckWorker(); err != nil {
		return fmt.Errorf("invalid configuration %s:\n%w", configPath, err)
	}
	log := audit.NewLogger(os.Stderr, cfg.Log.Level, "worker")
	audit.Announce(log, cfg.Warnings())
	self, err := os.Executable()
	if err != nil {
		return err
	}
	w, err := worker.New(worker.Options{
		SpoolDir:      cfg.Spool.Dir,
		DownloadsDir:  cfg.Worker.DownloadsDir,
		YtDlp:         cfg.Worker.YtDlp,
		FFmpeg:        cfg.Worker.FFmpeg,
		Self:          self,
		Concurrency:   cfg.Worker.Concurrency,
		JobTimeout:    time.Duration(cfg.Worker.JobTimeoutSeconds) * time.Second,
		MaxFileBytes:  int64(cfg.Worker.MaxFileMB) << 20,
		MaxAttempts:   cfg.Worker.MaxAttempts,
		SocketTimeout: cfg.Worker.SocketTimeoutSeconds,
		TestBaseURL:   cfg.Testing.MediaBaseURL,
		Logger:        log,
	})
	if err != nil {
		return err
	}
	if err := w.Detect(ctx); err != nil {
		return err
	}
	err = w.Run(ctx)
	log.Info("worker stopped")
	return err
}
