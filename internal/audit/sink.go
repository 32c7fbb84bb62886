package audit

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"time"
)

// AlertRecord is one alert as it leaves the log for the alert sink: the
// daemon, the event and its attributes, flattened to strings.
type AlertRecord struct {
	Time   time.Time         `json:"time"`
	Daemon string            `json:"daemon"`
	Event  string            `json:"event"`
	Attrs  map[string]string `json:"attrs,omitempty"`
}

// Limits on what an alert may carry (the alert file format, job.ParseAlert,
// builds on them).
const (
	MaxAlertAttrs    = 16
	MaxAlertValueLen = 300
)

// Text renders r on one line, attributes sorted by name, each value
// cleaned of control characters and cut to MaxAlertValueLen.
func (r *AlertRecord) Text() string {
	keys := make([]string, 0, len(r.Attrs))
	for k := range r.Attrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s", Clean(r.Daemon, 32), Clean(r.Event, 32))
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%s", Clean(k, 32), Clean(r.Attrs[k], MaxAlertValueLen))
	}
	return b.String()
}

// Clean replaces control characters and cuts s to max bytes (on a rune
// boundary).
func Clean(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u2028' || r == '\u2029' {
			return '?'
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

func utf8RuneStart(b byte) bool { return b&0xc0 != 0x80 }

// Sink receives alerts. Alert must not block: a slow sink drops.
type Sink interface {
	Alert(r AlertRecord)
}

// WithSink returns a logger that logs as l does and also hands every
// alert (alert=true) to sink.
func WithSink(l *slog.Logger, daemon string, sink Sink) *slog.Logger {
	return slog.New(&teeHandler{Handler: l.Handler(), daemon: daemon, sink: sink})
}

type teeHandler struct {
	slog.Handler
	daemon string
	sink   Sink
	attrs  []slog.Attr
}

// Enabled: alerts (WARN) reach the sink even when the log's level would
// drop them.
func (h *teeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn || h.Handler.Enabled(ctx, l)
}

func (h *teeHandler) Handle(ctx context.Context, rec slog.Record) error {
	var err error
	if h.Handler.Enabled(ctx, rec.Level) {
		err = h.Handler.Handle(ctx, rec)
	}
	if rec.Level < slog.LevelWarn {
		return err
	}
	a := AlertRecord{Time: rec.Time, Daemon: h.daemon, Attrs: map[string]string{}}
	alert := false
	add := func(at slog.Attr) bool {
		switch at.Key {
		case "alert":
			alert = at.Value.Kind() == slog.KindBool && at.Value.Bool()
		case "event":
			a.Event = at.Value.String()
		case "daemon":
		default:
			if len(a.Attrs) < MaxAlertAttrs {
				a.Attrs[at.Key] = at.Value.String()
			}
		}
		return true
	}
	for _, at := range h.attrs {
		add(at)
	}
	rec.Attrs(add)
	if alert {
		h.sink.Alert(a)
	}
	return err
}

func (h *teeHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &teeHandler{Handler: h.Handler.WithAttrs(attrs), daemon: h.daemon, sink: h.sink, attrs: append(h.attrs[:len(h.attrs):len(h.attrs)], attrs...)}
}

func (h *teeHandler) WithGroup(name string) slog.Handler {
	return &teeHandler{Handler: h.Handler.WithGroup(name), daemon: h.daemon, sink: h.sink, attrs: h.attrs}
}

// ReportExit logs an alert (event Crashed) if systemd's ExecStopPost=
// environment says the service ended abnormally: killed by a signal
// (seccomp's SIGSYS, a crash) or any result but success. It reports
// whether it did.
func ReportExit(l *slog.Logger, service string) bool {
	result, code, status := os.Getenv("SERVICE_RESULT"), os.Getenv("EXIT_CODE"), os.Getenv("EXIT_STATUS")
	if result == "" && code == "" {
		Event(l, Refused, "reason", "exit-alert started without systemd's SERVICE_RESULT/EXIT_CODE")
		return false
	}
	if result == "success" && code == "exited" && status == "0" {
		return false
	}
	sig := ""
	if code == "killed" || code == "dumped" {
		sig = "SIG" + strings.TrimPrefix(Clean(status, 16), "SIG")
	}
	Alert(l, Crashed, "service", service, "result", Clean(result, 32), "exit_code", Clean(code, 16), "exit_status", Clean(status, 16), "signal", sig)
	return true
}
