// Command ytkeep-receiver is the Slack-facing daemon: it verifies slash
// commands and queues jobs in the spool (ytkeep-courier posts the
// results).
package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"

	"github.com/ytkeep/ytkeep/internal/audit"
	"github.com/ytkeep/ytkeep/internal/config"
	"github.com/ytkeep/ytkeep/internal/confine"
	"github.com/ytkeep/ytkeep/internal/daemon"
	"github.com/ytkeep/ytkeep/internal/metrics"
	"github.com/ytkeep/ytkeep/internal/notify"
	"github.com/ytkeep/ytkeep/internal/receiver"
	"github.com/ytkeep/ytkeep/internal/slackreq"
	"github.com/ytkeep/ytkeep/internal/spool"
)

func main() {
	helpOrUsage()
	daemon.Main("ytkeep-receiver", run, reportExit)
}

func run(configPath string) error {
	ctx, stop, stoppedBy := daemon.SignalContext()
	defer stop()
	cfg, configPath, err := config.LoadFor(configPath, (*config.Config).CheckReceiver)
	if err != nil {
		return err
	}
	// The admin channel's webhook is read now, like the port is bound:
	// before the switch to the receiver's user.
	log, poster, err := newLogger(cfg)
	if err != nil {
		return err
	}
	// Metrics (metrics.dir): every audit event counted, alerts' fate too.
	ms := daemon.Metrics(cfg, metrics.Receiver)
	log = metrics.Events(log, ms)
	if poster != nil {
		poster.Metrics = ms
	}
	audit.Announce(log, cfg.Warnings())

	socketMode := cfg.Receiver.Mode == "socket"

	// 1. Bind first (HTTP mode): the port may be privileged. Plain TCP,
	// not MPTCP, which Landlock's port rules do not cover. Socket Mode
	// binds nothing, ever: its Landlock rules have no bind right and its
	// seccomp allowlist no accept.
	var ln net.Listener
	var port uint16
	if !socketMode {
		lc := net.ListenConfig{}
		lc.SetMultipathTCP(false)
		if ln, err = lc.Listen(ctx, "tcp", cfg.Receiver.Listen); err != nil {
			return err
		}
		port = uint16(ln.Addr().(*net.TCPAddr).Port)
	}

	// 2. Become the receiver's user, before reading any request.
	ra := cfg.Receiver.RunAs
	if err := confine.BecomeConfigured(ra.User, ra.Group, ra.Groups, 512); err != nil {
		return err
	}
	stopMetrics, err := daemon.StartMetrics(cfg, ms, log)
	if err != nil {
		return err
	}
	defer stopMetrics()
	// 3. Confine: read config and secrets, write the spool, bind our port
	// (HTTP mode), connect to Slack (443) and DNS (53), execute nothing.
	layout := spool.Layout{Root: cfg.Spool.Dir}
	connect := []uint16{443, 53}
	if p := cfg.Testing.LoopbackResponsePort; p != 0 {
		connect = append(connect, uint16(p))
	}
	var readFiles []string
	domain := confine.Receiver
	var appToken, tokenSource string
	if socketMode {
		domain = confine.ReceiverSocket
		// Read as the receiver's user, before confining: no Landlock rule
		// for the token, which nothing reads again.
		if appToken, tokenSource, err = cfg.AppToken(); err != nil {
			return err
		}
		if u := cfg.Testing.SlackAPIURL; u != "" {
			p, _ := strconv.Atoi(mustURL(u).Port())
			connect = append(connect, uint16(p))
		}
	} else {
		for _, f := range []string{cfg.SigningSecretPath(), cfg.Receiver.TLSCertFile, cfg.Receiver.TLSKeyFile} {
			if f != "" {
				readFiles = append(readFiles, f)
			}
		}
	}
	abi, err := daemon.Confine(log, domain, daemon.WithMetrics(confine.ReceiverRules(confine.ReceiverParams{
		ConfigFile:   configPath,
		ReadFiles:    readFiles,
		SpoolDirs:    []string{layout.Receiver("")},
		DropDirs:     []string{layout.Incoming()},
		ListenPort:   port,
		ConnectPorts: connect,
	}), cfg, metrics.Receiver), cfg.Security.InsecureNoLandlock, layout.Worker(""))
	if err != nil {
		return err
	}
	// Alerts raised while the receiver was down (its exit alert).
	pending, err := notify.OpenPendingAlerts("receiver", layout.Receiver("tmp"), layout.Receiver("alerts"))
	if err != nil {
		return err
	}
	pending.Deliver(log)
	pending.Close()

	svc, err := receiver.New(receiver.Options{
		SpoolDir:           cfg.Spool.Dir,
		Command:            cfg.Receiver.Command,
		AppID:              cfg.Receiver.AppID,
		AllowedTeams:       cfg.Receiver.AllowedTeams,
		AllowedChannels:    cfg.Receiver.AllowedChannels,
		AllowedUsers:       cfg.Receiver.AllowedUsers,
		AllowedEnterprises: cfg.Receiver.AllowedEnterprises,
		ResponseURLAllowed: cfg.ResponseURLAllowed,
		StatusInDM:         cfg.Courier.StatusMessages,
		Admins:             cfg.Receiver.Admins,
		// The courier uploads with the bot token that posts status
		// messages, within courier.max_upload_mb.
		Uploads: cfg.Courier.StatusMessages && cfg.Courier.MaxUploadMB > 0,
		Logger:  log,
	})
	if err != nil {
		return err
	}
	errc := make(chan error, 2)
	var srv *http.Server
	if socketMode {
		go func() {
			errc <- svc.RunSocket(ctx, receiver.SocketOptions{AppToken: appToken, APIURL: cfg.Testing.SlackAPIURL})
		}()
		log.Info("receiver ready", "mode", "socket", "app_token", tokenSource, "listening", "nothing", "uid", os.Getuid(),
			"landlock_abi", abi, "seccomp_allowed", confine.AllowedCount(domain))
	} else {
		secret, source, err := cfg.SigningSecret()
		if err != nil {
			return err
		}
		verifier, err := slackreq.NewVerifier(secret, nil, 1<<20)
		if err != nil {
			return err
		}
		srv = receiver.NewServer(cfg.Receiver.Listen, svc.Handler(cfg.Receiver.Path, verifier))
		// At most receiver.MaxConns connections, plain or TLS: idle and
		// slow ones make room for new ones.
		ln := receiver.LimitConns(srv, ln, receiver.MaxConns, log)
		srv.ErrorLog = receiver.ServerErrorLog(log)
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
		log.Info("receiver ready", "mode", "http", "listen", ln.Addr().String(), "path", cfg.Receiver.Path,
			"tls", cfg.Receiver.TLSCertFile != "", "signing_secret", source, "uid", os.Getuid(),
			"landlock_abi", abi, "seccomp_allowed", confine.AllowedCount(domain))
	}
	if poster != nil {
		go poster.Run(ctx)
	}

	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	stop()
	if srv != nil {
		srv.Shutdown(context.Background())
	}
	log.Info("receiver stopped", "signal", stoppedBy())
	return err
}

// mustURL parses a URL config.Parse has checked.
func mustURL(raw string) *url.URL {
	u, err := url.Parse(raw)
	if err != nil {
		panic(err)
	}
	return u
}

// newLogger returns the daemon's logger (notify.NewLogger) and its
// alert poster, or nil when no webhook is configured.
func newLogger(cfg *config.Config) (*slog.Logger, *notify.AlertPoster, error) {
	base := audit.NewLogger(os.Stderr, cfg.Log.Level, "receiver")
	hook, err := cfg.AlertWebhook()
	if err != nil {
		return nil, nil, err
	}
	log, poster := notify.NewLogger(base, "receiver", hook, "receiver.alert_webhook_file")
	return log, poster, nil
}

// reportExit runs as systemd's ExecStopPost= of the receiver: when the
// service ended abnormally (killed by a signal, such as seccomp's SIGSYS,
// or failed), it raises an alert. systemd passes the outcome in
// SERVICE_RESULT, EXIT_CODE and EXIT_STATUS. The alert is posted now when
// the webhook can be read, and otherwise (under systemd, which has removed
// the unit's credentials by now) or when the post fails, kept in
// receiver/alerts/ for the next start to post (notify.ReportExit). The
// worker's unit uses ytkeep-worker -exit-alert, which relays through the
// spool.
func reportExit(configPath string) error {
	cfg, _, err := config.LoadFor(configPath, (*config.Config).CheckReceiver)
	if err != nil {
		return err
	}
	log := audit.NewLogger(os.Stderr, cfg.Log.Level, "receiver")
	hook, err := cfg.AlertWebhook()
	if err != nil {
		return err
	}
	ra := cfg.Receiver.RunAs
	if err := confine.BecomeConfigured(ra.User, ra.Group, ra.Groups, 0); err != nil {
		return err
	}
	layout := spool.Layout{Root: cfg.Spool.Dir}
	return notify.ReportExit(log, "receiver", "ytkeep-receiver", hook, layout.Receiver("tmp"), layout.Receiver("alerts"))
}
