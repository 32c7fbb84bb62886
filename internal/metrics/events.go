package metrics

import (
	"context"
	"log/slog"

	"github.com/ytkeep/ytkeep/internal/audit"
)

// Events returns a logger that logs as l does and counts each audit
// record (msg "audit": audit.Event, audit.Alert) in s, whatever the log's
// level: every event in ytkeep_audit_events_total, alerts in
// ytkeep_alerts_raised_total, and these in metrics of their own:
//
//   - the receiver's accepted, refused (by reason; rate_limited as an
//     outcome of its own), duplicate, help and requested (list, cancel,
//     send and the buttons' clicks, by kind): ytkeep_commands_total;
//   - claimed, started, finished, failed (by class) and cancelled:
//     ytkeep_jobs_total;
//   - violation (by reason, or "seccomp" for a SIGSYS):
//     ytkeep_sandbox_violations_total;
//   - quarantined: ytkeep_quarantined_files_total;
//   - egress and egress_denied: ytkeep_egress_connections_total;
//   - replied and reply_failed: ytkeep_replies_total; uploaded,
//     upload_refused and upload_failed: ytkeep_uploads_total.
//
// A record relayed from another daemon (attribute "from", the courier's
// posting of the worker's alerts) is not counted: its daemon counted it.
// With s nil it returns l.
func Events(l *slog.Logger, s *Set) *slog.Logger {
	if s == nil {
		return l
	}
	return slog.New(&eventHandler{Handler: l.Handler(), set: s})
}

type eventHandler struct {
	slog.Handler
	set   *Set
	attrs []slog.Attr
}

// Enabled: audit events are Info or Warn; they are counted even when the
// log's level drops them.
func (h *eventHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelInfo || h.Handler.Enabled(ctx, l)
}

func (h *eventHandler) Handle(ctx context.Context, rec slog.Record) error {
	if rec.Message == "audit" {
		h.count(rec)
	}
	if !h.Handler.Enabled(ctx, rec.Level) {
		return nil
	}
	return h.Handler.Handle(ctx, rec)
}

func (h *eventHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &eventHandler{Handler: h.Handler.WithAttrs(attrs), set: h.set, attrs: append(h.attrs[:len(h.attrs):len(h.attrs)], attrs...)}
}

func (h *eventHandler) WithGroup(name string) slog.Handler {
	return &eventHandler{Handler: h.Handler.WithGroup(name), set: h.set, attrs: h.attrs}
}

// known are the events counted under their own name; any other is
// "other".
var known = map[string]bool{
	audit.Accepted: true, audit.Refused: true, audit.Claimed: true, audit.Started: true, audit.Finished: true,
	audit.Failed: true, audit.Cancelled: true, audit.Requested: true, audit.Quarantined: true, audit.Replied: true,
	audit.ReplyFailed: true, audit.Violation: true, audit.Weakened: true, audit.Crashed: true, audit.SSLCheck: true,
	audit.Egress: true, audit.EgressDenied: true, audit.Uploaded: true, audit.UploadRefused: true,
	audit.UploadFailed: true, audit.SocketConnected: true, audit.SocketRefused: true,
	audit.SocketExtraConnection: true, audit.SocketDisabled: true, audit.Duplicate: true, "help": true,
}

func (h *eventHandler) count(rec slog.Record) {
	var event, reason, class, signal, from, kind string
	alert := false
	take := func(a slog.Attr) bool {
		switch a.Key {
		case "event":
			event = a.Value.String()
		case "alert":
			alert = a.Value.Kind() == slog.KindBool && a.Value.Bool()
		case "reason":
			reason = a.Value.String()
		case "class":
			class = a.Value.String()
		case "signal":
			signal = a.Value.String()
		case "from":
			from = a.Value.String()
		case "kind":
			kind = a.Value.String()
		}
		return true
	}
	for _, a := range h.attrs {
		take(a)
	}
	rec.Attrs(take)
	if from != "" {
		return
	}
	if !known[event] {
		event = "other"
	}
	s := h.set
	s.events.add(1, event)
	if alert {
		s.alerts.add(1, event)
	}
	switch event {
	case audit.Accepted, audit.Duplicate, "help", audit.Refused, audit.Requested:
		if s.daemon != Receiver {
			return
		}
		outcome := event
		switch {
		case event == audit.Requested:
			reason = kind
		case event != audit.Refused:
			reason = ""
		case reason == "rate_limited":
			outcome = reason
		}
		s.commands.add(1, outcome, reason)
	case audit.Claimed, audit.Started, audit.Finished, audit.Failed, audit.Cancelled:
		if event != audit.Failed {
			class = ""
		}
		s.jobs.add(1, event, class)
	case audit.Violation:
		kind := reason
		if signal == "SIGSYS" {
			kind = "seccomp"
		}
		s.violations.add(1, kind)
	case audit.Quarantined:
		s.quarantined.Inc()
	case audit.Egress:
		s.egress.add(1, "allowed")
	case audit.EgressDenied:
		s.egress.add(1, "denied")
	case audit.Replied:
		s.replies.add(1, "replied")
	case audit.ReplyFailed:
		s.replies.add(1, "failed")
	case audit.Uploaded:
		s.uploads.add(1, "uploaded")
	case audit.UploadRefused:
		s.uploads.add(1, "refused")
	case audit.UploadFailed:
		s.uploads.add(1, "failed")
	}
}
