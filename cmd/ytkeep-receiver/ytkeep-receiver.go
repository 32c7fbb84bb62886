// Command ytkeep-receiver is the Slack-facing daemon: it verifies slash
// commands, queues jobs in the spool and replies with worker results.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/ytkeep/ytkeep/internal/audit"
	"github.com/ytkeep/ytkeep/internal/config"
	"github.com/ytkeep/ytkeep/internal/receiver"
	"github.com/ytkeep/ytkeep/internal/slackreq"
)

func main() {
	configPath := flag.String("config", "/etc/ytkeep/ytkeep.toml", "configuration file")
	flag.Parse()
	if err := run(*configPath); err != nil {
		fmt.Fprintf(os.Stderr, "ytkeep-receiver: %v\n", err)
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
	if err := cfg.CheckReceiver(); err != nil {
		return fmt.Errorf("invalid configuration %s:\n%w", configPath, err)
	}
	log := audit.NewLogger(os.Stderr, cfg.Log.Level, "receiver")
	audit.Announce(log, cfg.Warnings())
	secret, source, err := cfg.SigningSecret()
	if err != nil {
		return err
	}
	verifier, err := slackreq.NewVerifier(secret, nil, 1<<20)
	if err != nil {
		return err
	}
	svc, err := receiver.New(receiver.Options{
		SpoolDir:           cfg.Spool.Dir,
		Command:            cfg.Receiver.Command,
		AllowedTeams:       cfg.Receiver.AllowedTeams,
		AllowedChannels:    cfg.Receiver.AllowedChannels,
		AllowedUsers:       cfg.Receiver.AllowedUsers,
		ResponseURLAllowed: cfg.ResponseURLAllowed,
		Logger:             log,
	}, receiver.NewNotifier())
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", cfg.Receiver.Listen)
	if err != nil {
		return err
	}
	srv := receiver.NewServer(cfg.Receiver.Listen, svc.Handler(cfg.Receiver.Path, verifier))
	errc := make(chan error, 2)
	go func() {
		var err error
		if cfg.Receiver.TLSCertFile != "" {
			err = srv.ServeTLS(ln, cfg.Receiver.TLSCertFile, cfg.Receiver.TLSKeyFile)
		} else {
			err = srv.Serve(ln)
		}
		if !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	go func() { errc <- svc.RunResults(ctx) }()
	log.Info("receiver ready", "listen", ln.Addr().String(), "path", cfg.Receiver.Path,
		"tls", cfg.Receiver.TLSCertFile != "", "signing_secret", source)

	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	stop()
	srv.Shutdown(context.Background())
	log.Info("receiver stopped")
	return err
}
