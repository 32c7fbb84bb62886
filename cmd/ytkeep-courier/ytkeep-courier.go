// Command ytkeep-courier posts the worker's results to Slack: with the bot
// token, a status message per job in the requester's DM; else each job's
// response_url; and the admins' channel for alerts (its own and those the
// worker relays through the spool). It takes no input from Slack, holds
// the bot token, the reply key the receiver made and the alert webhook,
// and reads only what the worker's user wrote (docs/courier.md).
package main

import (
	"context"
	"errors"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/ytkeep/ytkeep/internal/audit"
	"github.com/ytkeep/ytkeep/internal/config"
	"github.com/ytkeep/ytkeep/internal/confine"
	"github.com/ytkeep/ytkeep/internal/courier"
	"github.com/ytkeep/ytkeep/internal/daemon"
	"github.com/ytkeep/ytkeep/internal/metrics"
	"github.com/ytkeep/ytkeep/internal/notify"
	"github.com/ytkeep/ytkeep/internal/reply"
	"github.com/ytkeep/ytkeep/internal/slackapi"
	"github.com/ytkeep/ytkeep/internal/spool"
)

func main() {
	helpOrUsage()
	daemon.Main("ytkeep-courier", run, reportExit)
}

// keyWait bounds the wait for the reply key at the first start, which the
// receiver makes at its own first start.
const keyWait = 2 * time.Minute

func run(configPath string) error {
	ctx, stop, stoppedBy := daemon.SignalContext()
	defer stop()
	cfg, configPath, err := loadConfig(configPath)
	if err != nil {
		return err
	}
	// The webhook is read now, as the daemon's starting user (systemd's
	// credentials directory).
	base := audit.NewLogger(os.Stderr, cfg.Log.Level, "courier")
	hook, err := cfg.CourierAlertWebhook()
	if err != nil {
		return err
	}
	log, poster := notify.NewLogger(base, "courier", hook, "courier.alert_webhook_file")
	// Metrics (metrics.dir): audit events, alerts, Slack's answers.
	ms := daemon.Metrics(cfg, metrics.Courier)
	log = metrics.Events(log, ms)
	if poster != nil {
		poster.Metrics = ms
	}
	audit.Announce(log, cfg.Warnings())
	ra := cfg.Courier.RunAs
	if err := confine.BecomeConfigured(ra.User, ra.Group, ra.Groups, 256); err != nil {
		return err
	}
	stopMetrics, err := daemon.StartMetrics(cfg, ms, log)
	if err != nil {
		return err
	}
	defer stopMetrics()
	// The bot token, as the courier's user (its file is root's or the
	// courier's own), before confining: no Landlock rule names it.
	// With it, status messages in the requesters' DMs.
	var bot *slackapi.Client
	token, tokenSource, err := cfg.BotToken()
	if err != nil {
		return err
	}
	switch {
	case token != "" && !cfg.Courier.StatusMessages:
		// The receiver tells users to look in the channel: the courier
		// answers there, as it says.
		log.Warn("a bot token is set but courier.status_messages is off: it is not used; results go to each command's response_url", "bot_token", tokenSource)
		tokenSource = ""
	case token != "":
		if bot, err = slackapi.New(slackapi.Options{Token: token, APIURL: cfg.Testing.BotAPIURL, Metrics: ms}); err != nil {
			return err
		}
		audit.Announce(log, bot.Warnings())
	case cfg.Courier.StatusMessages:
		return errors.New("courier.status_messages is on but there is no bot token (courier.bot_token_file, or the credential bot_token): the acknowledgement would promise DMs nobody sends")
	default:
		log.Info("no bot token (courier.bot_token_file, or the credential bot_token): results go to each command's response_url, which Slack accepts for 30 minutes")
	}

	// Confine: read the config, the reply key, the stored files (for
	// uploads) and the DNS and TLS files;
	// write its own directory and results/ (to claim); connect to Slack
	// (443), DNS (53) and, in test mode, the simulated Slack; execute
	// nothing, listen nowhere.
	layout := spool.Layout{Root: cfg.Spool.Dir}
	keyPath := layout.Receiver(reply.KeyFile)
	if err := waitForKey(ctx, log, keyPath); err != nil {
		return err
	}
	connect := []uint16{443, 53}
	if p := cfg.Testing.LoopbackResponsePort; p != 0 {
		connect = append(connect, uint16(p))
	}
	if u := cfg.Testing.BotAPIURL; u != "" {
		if pu, err := url.Parse(u); err == nil {
			p, _ := strconv.Atoi(pu.Port())
			connect = append(connect, uint16(p))
		}
	}
	// Uploads read the stored files, with the bot token only: without
	// it the rules name no downloads at all.
	var readDirs []string
	maxUpload := cfg.MaxUploadBytes()
	if bot == nil {
		maxUpload = 0
	}
	if maxUpload > 0 {
		readDirs = []string{cfg.Worker.DownloadsDir}
	}
	domain := confine.Courier
	abi, err := daemon.Confine(log, domain, daemon.WithMetrics(confine.CourierRules(confine.CourierParams{
		ConfigFile:   configPath, // "" when it came on standard input
		ReadFiles:    []string{keyPath},
		ReadDirs:     readDirs,
		SpoolDirs:    []string{layout.Courier(""), layout.Results()},
		ConnectPorts: connect,
	}), cfg, metrics.Courier), cfg.Security.InsecureNoLandlock, layout.Worker(""))
	if err != nil {
		return err
	}
	// Alerts raised while the courier was down (its exit alert).
	pending, err := notify.OpenPendingAlerts("courier", layout.Courier("tmp"), layout.Courier("alerts"))
	if err != nil {
		return err
	}
	pending.Deliver(log)
	pending.Close()

	svc, err := courier.New(courier.Options{
		SpoolDir:           cfg.Spool.Dir,
		ResponseURLAllowed: cfg.ResponseURLAllowed,
		Logger:             log,
		Slack:              bot,
		FinalTTL:           time.Duration(cfg.Courier.FinalTTLHours) * time.Hour,
		Command:            cfg.Receiver.Command,
		DownloadsDir:       cfg.Worker.DownloadsDir,
		MaxUploadBytes:     maxUpload,
		UploadQuotaBytes:   cfg.UploadQuotaBytes(),
		UpdateWait:         time.Duration(cfg.Testing.StatusUpdateWaitSeconds) * time.Second,
	}, notify.NewNotifier())
	if err != nil {
		return err
	}
	if poster != nil {
		go poster.Run(ctx)
	}
	log.Info("courier ready", "uid", os.Getuid(), "landlock_abi", abi, "seccomp_allowed", confine.AllowedCount(domain),
		"alerts", strconv.FormatBool(poster != nil), "bot_token", tokenSource, "max_upload_bytes", maxUpload)
	err = svc.RunResults(ctx)
	stop()
	log.Info("courier stopped", "signal", stoppedBy())
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// waitForKey waits until the receiver has made the reply key (at its
// first start), up to keyWait: the two units start together after an
// installation.
func waitForKey(ctx context.Context, log interface{ Info(string, ...any) }, path string) error {
	deadline := time.Now().Add(keyWait)
	for said := false; ; said = true {
		_, err := os.Lstat(path)
		if err == nil || !errors.Is(err, os.ErrNotExist) {
			return nil // reply.Read reports anything else
		}
		if time.Now().After(deadline) {
			return errors.New("no reply key " + path + ": start ytkeep-receiver, which makes it")
		}
		if !said {
			log.Info("waiting for the receiver to make the reply key", "path", path)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// reportExit runs as systemd's ExecStopPost= of the courier
// (notify.ReportExit): the courier's crash alert is posted now or at its
// next start.
func reportExit(configPath string) error {
	cfg, _, err := loadConfig(configPath)
	if err != nil {
		return err
	}
	log := audit.NewLogger(os.Stderr, cfg.Log.Level, "courier")
	hook, err := cfg.CourierAlertWebhook()
	if err != nil {
		return err
	}
	ra := cfg.Courier.RunAs
	if err := confine.BecomeConfigured(ra.User, ra.Group, ra.Groups, 0); err != nil {
		return err
	}
	layout := spool.Layout{Root: cfg.Spool.Dir}
	return notify.ReportExit(log, "courier", "ytkeep-courier", hook, layout.Courier("tmp"), layout.Courier("alerts"))
}

// loadConfig reads the configuration from standard input for -config -
// (the unit's StandardInput=file:, for ExecStart= and ExecStopPost= alike:
// the courier is not in the spool group the file is readable by) and
// leaves /dev/null there; else from the file at path (the tests and the
// demo as one user). The path returned is "" for standard input.
func loadConfig(path string) (*config.Config, string, error) {
	if path == daemon.StdinConfig {
		cfg, err := daemon.ReadStdinConfig((*config.Config).CheckCourier)
		return cfg, "", err
	}
	return config.LoadFor(path, (*config.Config).CheckCourier)
}
