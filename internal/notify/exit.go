package notify

import (
	"context"
	"log/slog"
	"time"

	"github.com/ytkeep/ytkeep/internal/audit"
)

// ReportExit runs as a daemon's systemd ExecStopPost= (its -exit-alert),
// as the daemon's user: when the service ended abnormally (killed by a
// signal, such as seccomp's SIGSYS, or failed), it raises an alert.
// systemd passes the outcome in SERVICE_RESULT, EXIT_CODE and
// EXIT_STATUS. The alert is posted now when hook (the admins' webhook) is
// known, and otherwise (under systemd, which has removed the unit's
// credentials by now) or when the post fails, kept in alertsDir for the
// daemon's next start to post (PendingAlerts).
func ReportExit(log *slog.Logger, daemon, service, hook, tmpDir, alertsDir string) error {
	// Decide first: a clean stop needs no spool.
	var raised alertList
	if !audit.ReportExit(audit.WithSink(log, daemon, &raised), service) {
		return nil
	}
	pending, err := OpenPendingAlerts(daemon, tmpDir, alertsDir)
	if err != nil {
		return err
	}
	defer pending.Close()
	for _, a := range raised {
		pending.Alert(a)
	}
	if hook != "" {
		poster := NewAlertPoster(hook, NewNotifier(), log)
		pending.Replay(poster)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		err := poster.Flush(ctx)
		if err == nil {
			return nil
		}
		log.Error("couldn't post the exit alert; keeping it for the next start", "err", err)
	}
	return pending.Save()
}

// alertList is a sink that keeps what it is given.
type alertList []audit.AlertRecord

func (l *alertList) Alert(a audit.AlertRecord) { *l = append(*l, a) }

// NewLogger returns a daemon's logger: alerts also go to the admins'
// channel when hook is set (start the poster's Run once confined), and
// only to the log otherwise, which is announced (key names the setting).
func NewLogger(base *slog.Logger, daemon, hook, key string) (*slog.Logger, *AlertPoster) {
	if hook == "" {
		audit.Alert(base, audit.Weakened, "warning", key+" is not set: security alerts go to the log only")
		return base, nil
	}
	poster := NewAlertPoster(hook, NewNotifier(), base)
	return audit.WithSink(base, daemon, poster), poster
}
