package audit

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

type memSink struct {
	mu sync.Mutex
	rs []AlertRecord
}

func (m *memSink) Alert(r AlertRecord) { m.mu.Lock(); m.rs = append(m.rs, r); m.mu.Unlock() }

// TestWithSink: alerts reach the sink with their attributes (including
// those added with With), even above the log's level; events do not.
func TestWithSink(t *testing.T) {
	var buf bytes.Buffer
	sink := &memSink{}
	l := WithSink(NewLogger(&buf, "error", "worker"), "worker", sink).With("job", "j1")
	Event(l, Claimed, "video", "v")
	Alert(l, Violation, "signal", "SIGSYS")
	if len(sink.rs) != 1 {
		t.Fatalf("sink got %d records, want 1 alert", len(sink.rs))
	}
	r := sink.rs[0]
	if r.Daemon != "worker" || r.Event != Violation || r.Attrs["job"] != "j1" || r.Attrs["signal"] != "SIGSYS" {
		t.Errorf("alert %+v", r)
	}
	if _, ok := r.Attrs["alert"]; ok {
		t.Error("the alert marker leaked into the attributes")
	}
	if buf.Len() != 0 {
		t.Errorf("log level error still logged: %s", buf.String())
	}
	if got := r.Text(); got != "worker: violation job=j1 signal=SIGSYS" {
		t.Errorf("Text() = %q", got)
	}
}

func TestClean(t *testing.T) {
	for in, want := range map[string]string{
		"ok":                      "ok",
		"a\nb\rc\x00d\u2028e":     "a?b?c?d?e",
		"\xff\xfe":                "?",
		strings.Repeat("é", 10):   "ééé…", // cut on a rune boundary
		"\x1b[31mred\x1b[0m text": "?[31mred?[0m text",
	} {
		max := 100
		if strings.HasPrefix(in, "é") {
			max = 7
		}
		if got := Clean(in, max); got != want {
			t.Errorf("Clean(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestReportExit: systemd's ExecStopPost environment decides.
func TestReportExit(t *testing.T) {
	for _, c := range []struct {
		result, code, status string
		alert                bool
		want                 string
	}{
		{"success", "exited", "0", false, ""},
		{"signal", "killed", "SYS", true, "signal=SIGSYS"},
		{"core-dump", "dumped", "SEGV", true, "signal=SIGSEGV"},
		{"exit-code", "exited", "1", true, "exit_status=1"},
		{"", "", "", false, "without systemd"},
	} {
		t.Setenv("SERVICE_RESULT", c.result)
		t.Setenv("EXIT_CODE", c.code)
		t.Setenv("EXIT_STATUS", c.status)
		var buf bytes.Buffer
		sink := &memSink{}
		got := ReportExit(WithSink(slog.New(slog.NewTextHandler(&buf, nil)), "worker", sink), "ytkeep-worker")
		if got != c.alert || (len(sink.rs) == 1) != c.alert {
			t.Errorf("%+v: reported %v, %d alerts", c, got, len(sink.rs))
		}
		if c.want != "" && !strings.Contains(buf.String()+func() string {
			if len(sink.rs) == 1 {
				return sink.rs[0].Text()
			}
			return ""
		}(), c.want) {
			t.Errorf("%+v: %q lacks %q", c, buf.String(), c.want)
		}
	}
}
