package testbed

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ytkeep/ytkeep/internal/metrics"
)

// metricsIDs are the testbed's numbers for the users and groups that
// deploy/tmpfiles.d/ytkeep.conf names in the metrics tree.
var metricsIDs = map[string]int{
	"root": 0, "ytkeep-recv": ReceiverUID, "ytkeep-work": WorkerUID, "ytkeep-dl": DownloaderUID,
	"ytkeep-courier": CourierUID, "ytkeep-spool": SpoolGID,
}

// metricsGroups are the groups of the same names (a user's name and its
// group's may be the same, with other numbers).
var metricsGroups = map[string]int{
	"root": 0, "ytkeep-spool": SpoolGID, "ytkeep-dl": DownloaderGID, "ytkeep-courier": CourierGID,
}

// daemonUIDs are the daemons' users in the testbed.
var daemonUIDs = map[string]int{
	metrics.Receiver: ReceiverUID, metrics.Worker: WorkerUID, metrics.Downloader: DownloaderUID, metrics.Courier: CourierUID,
}

// daemonCreds are the daemons' users with their groups, as the testbed
// (and deploy/sysusers.d) gives them.
var daemonCreds = map[string]*syscall.Credential{
	metrics.Receiver:   {Uid: ReceiverUID, Gid: SpoolGID, Groups: []uint32{}},
	metrics.Worker:     {Uid: WorkerUID, Gid: SpoolGID, Groups: []uint32{DownloaderGID}},
	metrics.Downloader: {Uid: DownloaderUID, Gid: DownloaderGID, Groups: []uint32{}},
	metrics.Courier:    {Uid: CourierUID, Gid: CourierGID, Groups: []uint32{MediaGID}},
}

// makeMetricsTree makes the metrics tree as deploy/tmpfiles.d/ytkeep.conf
// says, under root instead of /var/lib/ytkeep/metrics (with the testbed's
// ids when running as root, else every directory the test's user's), and
// returns root.
func makeMetricsTree(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "metrics")
	if os.Geteuid() == 0 {
		if err := OpenUp(filepath.Dir(root)); err != nil {
			t.Fatal(err)
		}
		if err := OpenUp(filepath.Dir(filepath.Dir(root))); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open("../../deploy/tmpfiles.d/ytkeep.conf")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const prod = "/var/lib/ytkeep/metrics"
	made := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) != 6 || fs[0] != "d" || (fs[1] != prod && !strings.HasPrefix(fs[1], prod+"/")) {
			continue
		}
		mode, err := strconv.ParseUint(fs[2], 8, 32)
		if err != nil {
			t.Fatal(err)
		}
		p := root + strings.TrimPrefix(fs[1], prod)
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Fatal(err)
		}
		if os.Geteuid() == 0 {
			uid, ok1 := metricsIDs[fs[3]]
			gid, ok2 := metricsGroups[fs[4]]
			if !ok1 || !ok2 {
				t.Fatalf("tmpfiles.d names %s:%s, which the testbed has no number for", fs[3], fs[4])
			}
			if err := os.Chown(p, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chmod(p, os.FileMode(mode&0o777)|sticky(mode)); err != nil {
			t.Fatal(err)
		}
		made++
	}
	if made != 1+len(metrics.Daemons) {
		t.Fatalf("tmpfiles.d makes %d metrics directories, want the root and one per daemon", made)
	}
	return root
}

func sticky(mode uint64) os.FileMode {
	if mode&0o1000 != 0 {
		return os.ModeSticky
	}
	return 0
}

// readMetrics parses daemon's metrics file as node_exporter does.
func readMetrics(root, daemon string) (map[string]*dto.MetricFamily, error) {
	data, err := os.ReadFile(metrics.Path(root, daemon))
	if err != nil {
		return nil, err
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	return p.TextToMetricFamilies(bytes.NewReader(data))
}

// metricValue is the value (a histogram's count) of name's series with
// (at least) labels, and whether there is one.
func metricValue(mfs map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
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
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
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

// TestMetricsEndToEnd runs one job, with a bot token and a 429 from
// Slack on the status message's first update, and checks that each
// daemon's metrics file counts it: written under its sandbox (Landlock,
// seccomp, its own user), readable by others, and free of series that
// collide once node_exporter reads all four.
func TestMetricsEndToEnd(t *testing.T) {
	root := makeMetricsTree(t)
	w := newWorld(t, WorldOptions{Bot: true, MetricsDir: root})
	api := w.WebAPI
	api.RateLimit("chat.update", 1, time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, _, err := w.Send(ctx, w.Invocation("https://www.youtube.com/watch?v=dQw4w9WgXcQ 720p")); err != nil {
		t.Fatal(err)
	}
	dm := api.DMOf(User)
	if err := api.WaitFor(ctx, func(a *WebAPI) bool {
		m := a.Messages(dm)
		return len(m) == 1 && strings.HasPrefix(m[0].Text, ":white_check_mark: Saved *dQw4w9WgXcQ*")
	}); err != nil {
		t.Fatalf("no saved message: %v (calls %+v)", err, api.Calls())
	}
	clip, err := os.Stat(filepath.Join(w.DownloadsDir, "dQw4w9WgXcQ-720p.mp4"))
	if err != nil {
		t.Fatal(err)
	}

	// What the simulated Web API answered, by method and status: the
	// courier's file must count the same.
	wantCalls := map[[2]string]float64{}
	for _, c := range api.Calls() {
		st := strconv.Itoa(c.Status)
		if c.Status == 0 {
			st = "error"
		}
		wantCalls[[2]string{c.Method, st}]++
	}
	if wantCalls[[2]string{"chat.update", "429"}] != 1 {
		t.Fatalf("the simulated Slack did not answer one 429: %v", wantCalls)
	}

	type check struct {
		name   string
		labels []string
		ok     func(float64) bool
		want   string
	}
	eq := func(v float64) func(float64) bool { return func(x float64) bool { return x == v } }
	positive := func(x float64) bool { return x > 0 }
	checks := map[string][]check{
		metrics.Receiver: {
			{"ytkeep_commands_total", []string{"outcome", "accepted"}, eq(1), "1"},
		},
		metrics.Worker: {
			{"ytkeep_jobs_total", []string{"state", "claimed"}, eq(1), "1"},
			{"ytkeep_jobs_total", []string{"state", "finished"}, eq(1), "1"},
			{"ytkeep_download_duration_seconds", nil, eq(1), "a count of 1"},
			{"ytkeep_download_bytes", nil, eq(1), "a count of 1"},
			{"ytkeep_queue_depth", nil, eq(0), "0"},
			{"ytkeep_queue_oldest_age_seconds", nil, eq(0), "0"},
			{"ytkeep_jobs_running", nil, eq(0), "0"},
			{"ytkeep_egress_connections_total", []string{"outcome", "allowed"}, positive, "> 0"},
			{"ytkeep_alerts_dropped_total", nil, func(float64) bool { return false }, "absent"},
		},
		metrics.Downloader: {
			{"ytkeep_downloader_launches_total", []string{"outcome", "started"}, eq(1), "1"},
			{"ytkeep_downloader_children_running", nil, eq(0), "0"},
		},
		metrics.Courier: {
			{"ytkeep_slack_api_errors_total", []string{"method", "chat.update", "code", "ratelimited"}, eq(1), "1"},
			{"ytkeep_replies_total", []string{"outcome", "replied"}, positive, "> 0"},
		},
	}
	for call, n := range wantCalls {
		checks[metrics.Courier] = append(checks[metrics.Courier],
			check{"ytkeep_slack_api_calls_total", []string{"method", call[0], "status", call[1]}, eq(n), strconv.Itoa(int(n))})
	}
	for _, d := range metrics.Daemons {
		checks[d] = append(checks[d],
			check{"ytkeep_process_resident_memory_bytes", []string{"daemon", d}, positive, "> 0"},
			check{"ytkeep_process_open_fds", []string{"daemon", d}, positive, "> 0"},
			check{"ytkeep_process_cpu_seconds_total", []string{"daemon", d}, positive, "> 0"},
			check{"ytkeep_process_start_time_seconds", []string{"daemon", d}, func(v float64) bool {
				return math.Abs(v-float64(time.Now().Unix())) < 3600
			}, "within the last hour"})
	}
	// The files are rewritten every second: wait until each shows all,
	// with a generous deadline as the only bound.
	var last string
	err = waitFor(90*time.Second, func() bool {
		for _, d := range metrics.Daemons {
			mfs, err := readMetrics(root, d)
			if err != nil {
				last = fmt.Sprintf("%s: %v", d, err)
				return false
			}
			for _, c := range checks[d] {
				v, ok := metricValue(mfs, c.name, c.labels...)
				if c.want == "absent" {
					if ok {
						last = fmt.Sprintf("%s: %s%v = %v, want none", d, c.name, c.labels, v)
						return false
					}
					continue
				}
				if !ok || !c.ok(v) {
					last = fmt.Sprintf("%s: %s%v = %v (present: %v), want %s", d, c.name, c.labels, v, ok, c.want)
					return false
				}
			}
		}
		return true
	})
	if err != nil {
		t.Fatalf("the metrics files never showed the job: %s", last)
	}
	mfs, _ := readMetrics(root, metrics.Worker)
	if h := mfs["ytkeep_download_bytes"].Metric[0].Histogram; h.GetSampleSum() != float64(clip.Size()) {
		t.Errorf("ytkeep_download_bytes sum %v, want the stored file's %d bytes", h.GetSampleSum(), clip.Size())
	}

	// Each file is its daemon's, 0644, the only file in its directory;
	// together, as node_exporter reads them (--collector.textfile.directory
	// with a glob), no two series are the same.
	seen := map[string]string{}
	for _, d := range metrics.Daemons {
		st, err := os.Stat(metrics.Path(root, d))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o644 {
			t.Errorf("%s: mode %v, want 0644", d, st.Mode())
		}
		if os.Geteuid() == 0 {
			if uid := st.Sys().(*syscall.Stat_t).Uid; int(uid) != daemonUIDs[d] {
				t.Errorf("%s: owner %d, want %d", d, uid, daemonUIDs[d])
			}
		}
		ents, _ := os.ReadDir(metrics.Dir(root, d))
		if len(ents) != 1 {
			t.Errorf("%s's directory holds %d entries, want its file alone", d, len(ents))
		}
		mfs, err := readMetrics(root, d)
		if err != nil {
			t.Fatal(err)
		}
		for name, mf := range mfs {
			for _, m := range mf.Metric {
				key := name + fmt.Sprint(m.Label)
				if other, dup := seen[key]; dup {
					t.Errorf("%s and %s both have %s", other, d, key)
				}
				seen[key] = d
				if !strings.Contains(key, `value:"`+d+`"`) {
					t.Errorf("%s: %s has no daemon label", d, key)
				}
			}
		}
	}
}

// TestMetricsFilesProtected: in the tree deploy/tmpfiles.d makes, a
// daemon's user can neither overwrite, remove nor replace another
// daemon's metrics file, nor move its directory, nor add a file or a
// directory that node_exporter would read; it can replace its own (the
// control: the attempts below would show a success).
func TestMetricsFilesProtected(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: the protection of the metrics files is between Unix users; this test needs root to be them")
	}
	root := makeMetricsTree(t)
	as := func(daemon string, script string) error {
		cmd := exec.Command("/bin/sh", "-c", script)
		cmd.Dir = "/"
		cmd.Env = []string{"PATH=/usr/bin:/bin", "R=" + root}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: daemonCreds[daemon]}
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, bytes.TrimSpace(out))
		}
		return nil
	}
	// Each daemon writes its file, as metrics.File does: a temporary
	// file renamed over the old one.
	for _, d := range metrics.Daemons {
		f := metrics.FileName(d)
		if err := as(d, fmt.Sprintf(`umask 022; printf 'ytkeep_x{daemon="%s"} 1\n' > "$R/%s/.tmp" && mv -f "$R/%s/.tmp" "$R/%s/%s"`, d, d, d, d, f)); err != nil {
			t.Fatalf("%s cannot write its own file: %v", d, err)
		}
	}
	for _, attacker := range metrics.Daemons {
		for _, victim := range metrics.Daemons {
			if attacker == victim {
				continue
			}
			v, a := "$R/"+victim, "$R/"+attacker
			vf, af := v+"/"+metrics.FileName(victim), a+"/"+metrics.FileName(attacker)
			for _, c := range []struct{ name, script string }{
				{"overwrite", `printf 'forged 1\n' > ` + vf},
				{"append", `printf 'forged 1\n' >> ` + vf},
				{"remove", `rm -f ` + vf + ` && test ! -e ` + vf},
				{"rename own over", `cp ` + af + ` ` + a + `/.x && mv -f ` + a + `/.x ` + vf},
				{"create beside", `printf 'forged 1\n' > ` + v + `/.tmp`},
				{"move the directory", `mv ` + v + ` $R/moved`},
				{"add a file", `printf 'forged 1\n' > $R/ytkeep_forged.prom`},
				{"add a directory", `mkdir $R/forged`},
				{"add a link", `ln -s ` + a + ` $R/forged`},
				{"chmod", `chmod 0777 ` + v},
			} {
				if err := as(attacker, c.script); err == nil {
					t.Errorf("%s's user could %s %s's metrics: %s", attacker, c.name, victim, c.script)
				}
			}
		}
	}
	for _, d := range metrics.Daemons {
		data, err := os.ReadFile(metrics.Path(root, d))
		if err != nil || string(data) != fmt.Sprintf("ytkeep_x{daemon=%q} 1\n", d) {
			t.Errorf("%s's file is now %q (%v)", d, data, err)
		}
	}
	if ents, _ := os.ReadDir(root); len(ents) != len(metrics.Daemons) {
		t.Errorf("the metrics root holds %d entries, want the %d daemons' directories", len(ents), len(metrics.Daemons))
	}
}
