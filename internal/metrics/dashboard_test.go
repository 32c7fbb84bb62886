package metrics

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ytkeep/ytkeep/internal/audit"
)

// codeNames are the metric names this package's code registers, found in
// its source (string literals "ytkeep_…").
func codeNames(t *testing.T) map[string]bool {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	lit := regexp.MustCompile(`"(ytkeep_[a-z_]+)"`)
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range lit.FindAllStringSubmatch(string(src), -1) {
			names[m[1]] = true
		}
	}
	return names
}

// exercised gathers every daemon's Set after each of its methods and
// audit mappings has been used once: the names it exports.
func exercised(t *testing.T) (names map[string]bool, histograms map[string]bool) {
	t.Helper()
	names, histograms = map[string]bool{}, map[string]bool{}
	for _, d := range Daemons {
		s := New(d)
		s.AlertSent(1)
		s.AlertDropped("queue_full", 1)
		s.SlackCall("chat.postMessage", 200)
		s.SlackError("chat.postMessage", "ratelimited")
		s.Downloaded(time.Second)
		s.Stored(1)
		s.Launch("started")
		s.WatchQueue(func() QueueStats { return QueueStats{} })
		s.WatchChildren(func() int { return 0 })
		log := Events(slog.New(slog.DiscardHandler), s)
		for _, e := range []string{audit.Accepted, audit.Claimed, audit.Violation, audit.Quarantined, audit.Egress,
			audit.Replied, audit.Uploaded} {
			audit.Alert(log, e, "reason", "x")
		}
		mfs, err := s.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			names[mf.GetName()] = true
			if mf.GetType().String() == "HISTOGRAM" {
				histograms[mf.GetName()] = true
			}
		}
	}
	return names, histograms
}

// TestNamesInCodeAreExported: the names in the source and the names the
// four daemons' sets export are the same, so the dashboard's check below
// holds the dashboard to what the daemons write.
func TestNamesInCodeAreExported(t *testing.T) {
	code := codeNames(t)
	got, _ := exercised(t)
	for n := range code {
		if !got[n] {
			t.Errorf("%s is in the code but no daemon exports it", n)
		}
	}
	for n := range got {
		if !code[n] {
			t.Errorf("%s is exported but not found in the code", n)
		}
	}
}

// TestDashboard: deploy/grafana/ytkeep.json is valid JSON, and every
// query names only metrics the daemons write (a histogram's _bucket,
// _sum and _count included) or node_exporter's textfile collector's own.
func TestDashboard(t *testing.T) {
	data, err := os.ReadFile("../../deploy/grafana/ytkeep.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string            `json:"title"`
		UID    string            `json:"uid"`
		Panels []json.RawMessage `json:"panels"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	if dash.Title == "" || dash.UID == "" || len(dash.Panels) == 0 {
		t.Fatalf("the dashboard has no title, uid or panels")
	}
	// Every "expr" anywhere (panels, rows' panels, variables' queries).
	var exprs []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				if s, ok := e.(string); ok && (k == "expr" || k == "definition") {
					exprs = append(exprs, s)
				}
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	var all any
	json.Unmarshal(data, &all)
	walk(all)
	if len(exprs) < 10 {
		t.Fatalf("only %d queries found", len(exprs))
	}
	exported, histograms := exercised(t)
	known := map[string]bool{"node_textfile_mtime_seconds": true, "node_textfile_scrape_error": true}
	for n := range exported {
		known[n] = true
		if histograms[n] {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				known[n+suffix] = true
			}
		}
	}
	name := regexp.MustCompile(`\b(ytkeep_[a-z_]+|node_[a-z_]+)\b`)
	used := map[string]bool{}
	for _, e := range exprs {
		for _, m := range name.FindAllString(e, -1) {
			used[m] = true
			if !known[m] {
				t.Errorf("the dashboard queries %s, which no daemon writes: %s", m, e)
			}
		}
	}
	// The list: each has a panel.
	for _, n := range []string{"ytkeep_commands_total", "ytkeep_jobs_total", "ytkeep_queue_depth", "ytkeep_queue_oldest_age_seconds",
		"ytkeep_download_duration_seconds_bucket", "ytkeep_download_bytes_bucket", "ytkeep_sandbox_violations_total",
		"ytkeep_alerts_sent_total", "ytkeep_alerts_dropped_total", "ytkeep_slack_api_calls_total", "ytkeep_quarantined_files_total",
		"ytkeep_process_resident_memory_bytes"} {
		if !used[n] {
			t.Errorf("no panel shows %s", n)
		}
	}
	var unused []string
	for n := range exported {
		if !used[n] && !used[n+"_bucket"] && !used[n+"_sum"] && !used[n+"_count"] {
			unused = append(unused, n)
		}
	}
	slices.Sort(unused)
	t.Logf("metrics without a panel: %v", unused)
}
