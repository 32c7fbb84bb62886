// Package audit writes one structured log event per security-relevant
// decision. Events are log/slog records with msg "audit" and an "event"
// attribute; alerts additionally carry alert=true at level WARN, so that
// log shippers and the alert sink can select them.
//
// Callers must never pass a secret, a raw request body or a response_url.
package audit

import (
	"context"
	"io"
	"log/slog"
)

// Event names. Each is documented in docs/audit.md.
const (
	Accepted     = "accepted"      // a command was queued
	Refused      = "refused"       // a command or request was refused; see reason
	Claimed      = "claimed"       // the worker took a job
	Started      = "started"       // a download began
	Finished     = "finished"      // a job ended with a stored file
	Failed       = "failed"        // a job ended without one; see class
	Cancelled    = "cancelled"     // a job was stopped by its requester or an admin
	Requested    = "requested"     // a user asked to cancel, list or send (see kind)
	Quarantined  = "quarantined"   // a spool file was refused and moved aside
	Replied      = "replied"       // the courier posted a result to Slack
	ReplyFailed  = "reply_failed"  // a post to Slack failed or was not allowed
	Violation    = "violation"     // the downloader broke a sandbox rule
	DiskFull     = "disk_full"     // a write failed for lack of space (what, err); the job fails or waits, nothing accepted is lost
	Weakened     = "weakened"      // a security default is relaxed by config
	Crashed      = "crashed"       // a daemon ended abnormally (systemd's ExecStopPost reports it)
	SSLCheck     = "ssl_check"     // Slack checked the receiver's certificate (answered, unverified)
	Egress       = "egress"        // the downloader's proxy made a connection (host, address, bytes)
	EgressDenied = "egress_denied" // the downloader's proxy refused a destination

	Uploaded      = "uploaded"       // the courier uploaded a stored file into its requester's DM (job, user, file, size)
	UploadRefused = "upload_refused" // the courier refused to upload a stored file; see reason
	UploadFailed  = "upload_failed"  // Slack did not take an upload the courier started; see code

	SocketConnected       = "socket_connected"        // the receiver's Socket Mode connection is open
	SocketRefused         = "socket_refused"          // Slack refused the app-level token
	SocketExtraConnection = "socket_extra_connection" // Slack counts more connections than the receiver opened
	SocketDisabled        = "socket_disabled"         // Slack closed the connection: Socket Mode is off for the app (link_disabled)
	Duplicate             = "duplicate"               // an envelope delivered again: answered as before, no second job
)

// Event logs a decision.
func Event(l *slog.Logger, event string, attrs ...any) {
	l.Log(context.Background(), slog.LevelInfo, "audit", append([]any{"event", event}, attrs...)...)
}

// Alert logs a decision that an admin should look at.
func Alert(l *slog.Logger, event string, attrs ...any) {
	l.Log(context.Background(), slog.LevelWarn, "audit", append([]any{"event", event, "alert", true}, attrs...)...)
}

// NewLogger returns a JSON logger at level ("debug", "info", "warn",
// "error") writing to w.
func NewLogger(w io.Writer, level, daemon string) *slog.Logger {
	var l slog.Level
	l.UnmarshalText([]byte(level)) // config.Parse has checked the level
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l})).With("daemon", daemon)
}

// Announce logs each weakening of a security default as an alert.
func Announce(l *slog.Logger, warnings []string) {
	for _, w := range warnings {
		Alert(l, Weakened, "warning", w)
	}
}
