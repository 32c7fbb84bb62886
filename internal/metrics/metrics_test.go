package metrics

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ytkeep/ytkeep/internal/audit"
)

// root makes a metrics root with daemon's directory, as tmpfiles.d does
// (0755, the test's user's).
func root(t *testing.T, daemon string) string {
	t.Helper()
	r := t.TempDir()
	if err := os.Chmod(r, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(Dir(r, daemon), 0o755); err != nil {
		t.Fatal(err)
	}
	return r
}

// parse reads a metrics file as node_exporter's textfile collector does.
func parse(t *testing.T, data []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("the file does not parse: %v\n%s", err, data)
	}
	return mfs
}

// value returns the value of name's series whose labels include want.
func value(mfs map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	mf := mfs[name]
	if mf == nil {
		return 0, false
	}
next:
	for _, m := range mf.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

func TestWriteAndRewrite(t *testing.T) {
	r := root(t, Worker)
	s := New(Worker)
	f, err := OpenFile(r, s)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s.Stored(5 << 20)
	s.Downloaded(3 * time.Second)
	s.AlertSent(2)
	if err := f.Write(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(Path(r, Worker))
	if err != nil {
		t.Fatal(err)
	}
	mfs := parse(t, data)
	for _, c := range []struct {
		name string
		want float64
	}{
		{"ytkeep_download_bytes", 1},
		{"ytkeep_download_duration_seconds", 1},
		{"ytkeep_alerts_sent_total", 2},
	} {
		if got, ok := value(mfs, c.name, map[string]string{"daemon": Worker}); !ok || got != c.want {
			t.Errorf("%s = %v (present %v), want %v", c.name, got, ok, c.want)
		}
	}
	if got, ok := value(mfs, "ytkeep_process_resident_memory_bytes", nil); !ok || got <= 0 {
		t.Errorf("ytkeep_process_resident_memory_bytes = %v (present %v), want > 0", got, ok)
	}
	if got, ok := value(mfs, "ytkeep_process_start_time_seconds", nil); !ok || got > float64(time.Now().Unix())+1 || got < float64(time.Now().Add(-time.Hour).Unix()) {
		t.Errorf("ytkeep_process_start_time_seconds = %v (present %v), want the test's start", got, ok)
	}
	if got, ok := value(mfs, "ytkeep_process_open_fds", nil); !ok || got < 3 {
		t.Errorf("ytkeep_process_open_fds = %v (present %v), want ≥ 3", got, ok)
	}
	st, err := os.Stat(Path(r, Worker))
	if err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("the file's mode is %v (%v), want 0644", st.Mode(), err)
	}

	s.AlertSent(1)
	if err := f.Write(); err != nil {
		t.Fatal(err)
	}
	data, _ = os.ReadFile(Path(r, Worker))
	if got, _ := value(parse(t, data), "ytkeep_alerts_sent_total", nil); got != 3 {
		t.Errorf("after a rewrite ytkeep_alerts_sent_total = %v, want 3", got)
	}
	// Nothing but the file is left in the directory.
	ents, _ := os.ReadDir(Dir(r, Worker))
	if len(ents) != 1 || ents[0].Name() != FileName(Worker) {
		t.Errorf("the directory holds %v, want only %s", ents, FileName(Worker))
	}
}

// TestReaderNeverSeesAPart rewrites the file while readers read it: every
// read must parse, and show the two gauges the writer always sets
// together with the same value, and the file's last family.
func TestReaderNeverSeesAPart(t *testing.T) {
	r := root(t, Courier)
	s := New(Courier)
	var a, b float64
	var mu sync.Mutex
	s.gaugeFunc("ytkeep_test_a", "a", func() float64 { mu.Lock(); defer mu.Unlock(); return a })
	s.gaugeFunc("ytkeep_test_b", "b", func() float64 { mu.Lock(); defer mu.Unlock(); return b })
	// Make the file large, so that a torn write would be likely to show.
	for i := range 200 {
		s.SlackCall(fmt.Sprintf("method%d", i%60), 200+i%3)
	}
	f, err := OpenFile(r, s)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Write(); err != nil {
		t.Fatal(err)
	}
	const writes = 100
	done := make(chan struct{})
	errc := make(chan error, 2)
	var readers sync.WaitGroup
	for range 2 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				data, err := os.ReadFile(Path(r, Courier))
				if err != nil {
					errc <- err
					return
				}
				p := expfmt.NewTextParser(model.LegacyValidation)
				mfs, err := p.TextToMetricFamilies(bytes.NewReader(data))
				if err != nil {
					errc <- fmt.Errorf("a read does not parse: %v", err)
					return
				}
				va, oka := value(mfs, "ytkeep_test_a", nil)
				vb, okb := value(mfs, "ytkeep_test_b", nil)
				if !oka || !okb || va != vb {
					errc <- fmt.Errorf("a read shows a=%v (%v), b=%v (%v)", va, oka, vb, okb)
					return
				}
			}
		}()
	}
	for i := range writes {
		mu.Lock()
		a, b = float64(i), float64(i)
		mu.Unlock()
		if err := f.Write(); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	readers.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
}

func TestOffWhenDirEmpty(t *testing.T) {
	stop, err := Start("", time.Second, New(Receiver), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	stop()
	// A nil set counts nothing and does not fail.
	var s *Set
	s.AlertSent(1)
	s.AlertDropped("queue_full", 1)
	s.SlackCall("chat.postMessage", 429)
	s.SlackError("chat.postMessage", "ratelimited")
	s.Downloaded(time.Second)
	s.Stored(1)
	s.Launch("started")
	s.WatchQueue(func() QueueStats { return QueueStats{} })
	s.WatchChildren(func() int { return 0 })
	if l := slog.New(slog.DiscardHandler); Events(l, nil) != l {
		t.Error("Events with a nil set must return the logger itself")
	}
}

func TestStartWritesAtOnceAndAtStop(t *testing.T) {
	r := root(t, Downloader)
	s := New(Downloader)
	// An hour between writes: only the first and the last can happen.
	stop, err := Start(r, time.Hour, s, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	s.Launch("started")
	stop()
	data, err := os.ReadFile(Path(r, Downloader))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := value(parse(t, data), "ytkeep_downloader_launches_total", map[string]string{"outcome": "started"}); got != 1 {
		t.Errorf("the last write has launches{started} = %v, want 1", got)
	}
}

func TestOpenFileRefuses(t *testing.T) {
	for _, c := range []struct {
		name  string
		setup func(r string) error
	}{
		{"missing", func(r string) error { return os.Remove(Dir(r, Worker)) }},
		{"other-writable root", func(r string) error { return os.Chmod(r, 0o777) }},
		{"sticky shared root", func(r string) error { return os.Chmod(r, 0o1777) }},
		{"symlink", func(r string) error {
			if err := os.Remove(Dir(r, Worker)); err != nil {
				return err
			}
			if err := os.Mkdir(filepath.Join(r, "elsewhere"), 0o755); err != nil {
				return err
			}
			return os.Symlink("elsewhere", Dir(r, Worker))
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := root(t, Worker)
			if err := c.setup(r); err != nil {
				t.Fatal(err)
			}
			if f, err := OpenFile(r, New(Worker)); err == nil {
				f.Close()
				t.Fatal("OpenFile accepted it")
			}
		})
	}
}

// TestOpenFileRepairsMode: the daemon's own directory with another mode
// (a download child of the downloader's user can chmod it) is set back to
// 0755 and reported, not refused: refusing would keep the daemon down.
func TestOpenFileRepairsMode(t *testing.T) {
	for _, mode := range []os.FileMode{0o775, 0o777, 0o000, 0o700} {
		r := root(t, Worker)
		if err := os.Chmod(Dir(r, Worker), mode); err != nil {
			t.Fatal(err)
		}
		Repaired = ""
		f, err := OpenFile(r, New(Worker))
		if err != nil {
			t.Fatalf("mode %04o: %v", mode, err)
		}
		f.Close()
		st, err := os.Stat(Dir(r, Worker))
		if err != nil || st.Mode().Perm() != 0o755 || Repaired == "" {
			t.Errorf("mode %04o: now %v (%v), reported %q", mode, st.Mode().Perm(), err, Repaired)
		}
	}
	Repaired = ""
}

func TestEvents(t *testing.T) {
	s := New(Receiver)
	var out bytes.Buffer
	// At level error: the audit events must be counted all the same.
	log := Events(audit.NewLogger(&out, "error", "receiver"), s)
	audit.Event(log, audit.Accepted, "job", "J1", "user", "U1")
	audit.Event(log, audit.Refused, "reason", "rate_limited", "user", "U1")
	audit.Alert(log, audit.Refused, "reason", "unauthorized_user", "user", "U2")
	audit.Event(log, audit.Refused, "reason", "couldn't parse: the user's text", "user", "U2")
	audit.Event(log.With("kind", "cancel"), audit.Requested)
	audit.Alert(log, audit.Violation, "signal", "SIGSYS", "job", "J1")
	audit.Alert(log, audit.Violation, "reason", "disk_budget")
	audit.Alert(log, audit.Quarantined, "file", "x.job", "reason", "not a job")
	audit.Alert(log, audit.Violation, "from", "worker", "reason", "disk_budget") // relayed: not ours
	log.Info("not an audit record", "event", audit.Accepted)
	if out.Len() != 0 {
		t.Errorf("the log at level error printed %q", out.String())
	}
	var buf bytes.Buffer
	mfs, err := s.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		expfmt.MetricFamilyToText(&buf, mf)
	}
	got := parse(t, buf.Bytes())
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"ytkeep_commands_total", map[string]string{"outcome": "accepted", "reason": ""}, 1},
		{"ytkeep_commands_total", map[string]string{"outcome": "rate_limited", "reason": "rate_limited"}, 1},
		{"ytkeep_commands_total", map[string]string{"outcome": "refused", "reason": "unauthorized_user"}, 1},
		{"ytkeep_commands_total", map[string]string{"outcome": "refused", "reason": "other"}, 1},
		{"ytkeep_commands_total", map[string]string{"outcome": "requested", "reason": "cancel"}, 1},
		{"ytkeep_sandbox_violations_total", map[string]string{"kind": "seccomp"}, 1},
		{"ytkeep_sandbox_violations_total", map[string]string{"kind": "disk_budget"}, 1},
		{"ytkeep_quarantined_files_total", nil, 1},
		{"ytkeep_audit_events_total", map[string]string{"event": "refused"}, 3},
		{"ytkeep_alerts_raised_total", map[string]string{"event": "violation"}, 2},
	} {
		if v, ok := value(got, c.name, c.labels); !ok || v != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, v, ok, c.want)
		}
	}
	if strings.Contains(buf.String(), "U1") || strings.Contains(buf.String(), "J1") {
		t.Errorf("a user or job ID became a label:\n%s", buf.String())
	}
}

// TestLabelsBounded: values not of a constant's form, and any past the
// first maxValues, count as "other".
func TestLabelsBounded(t *testing.T) {
	s := New(Courier)
	for i := range 3 * maxValues {
		s.SlackError("chat.postMessage", fmt.Sprintf("code_%d", i))
	}
	s.SlackError("chat.postMessage", "has space")
	s.SlackError("chat.postMessage", strings.Repeat("a", 49))
	s.SlackError("chat.postMessage", ".hidden")
	mfs, err := s.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "ytkeep_slack_api_errors_total" {
			continue
		}
		if n := len(mf.Metric); n != maxValues+1 {
			t.Errorf("%d series, want %d and other", n, maxValues)
		}
		for _, m := range mf.Metric {
			for _, l := range m.Label {
				if l.GetName() == "code" && l.GetValue() == "other" && m.Counter.GetValue() != 2*maxValues+3 {
					t.Errorf("other = %v", m.Counter.GetValue())
				}
			}
		}
	}
}

func TestWriteFailureIsLoggedOnce(t *testing.T) {
	r := root(t, Receiver)
	f, err := OpenFile(r, New(Receiver))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// The directory made unwritable: every write fails.
	if os.Geteuid() == 0 {
		t.Skip("root writes whatever the mode: this case needs an unprivileged user")
	}
	if err := os.Chmod(Dir(r, Receiver), 0o555); err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logged, nil))
	f.write(log)
	f.write(log)
	if n := strings.Count(logged.String(), "couldn't write the metrics file"); n != 1 {
		t.Errorf("logged %d times, want once:\n%s", n, logged.String())
	}
	os.Chmod(Dir(r, Receiver), 0o755)
	f.write(log)
	if !strings.Contains(logged.String(), "written again") {
		t.Errorf("the recovery was not logged:\n%s", logged.String())
	}
	if _, err := os.Stat(Path(r, Receiver)); err != nil {
		t.Error(err)
	}
}
