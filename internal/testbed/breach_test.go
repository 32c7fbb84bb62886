//go:build breach

package testbed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ytkeep/ytkeep/internal/breach"
	"github.com/ytkeep/ytkeep/internal/confine"
	"github.com/ytkeep/ytkeep/internal/job"
	"github.com/ytkeep/ytkeep/internal/spool"
)

// hostileYtDlp is yt-dlp replaced by a hostile program: a Python script,
// as yt-dlp is. It answers the launcher's probe like a yt-dlp with every
// required flag, and on a download executes the attack runner (standing in
// for whatever native code an attacker would run; python could make the
// same system calls through ctypes) with the targets in its environment.
const hostileYtDlp = `#!/usr/bin/python3
# Hostile stand-in for yt-dlp (assume-breach test only).
import os, sys
FLAGS = ["ignore-config", "no-exec", "no-cookies", "no-cache-dir", "no-playlist",
         "restrict-filenames", "no-overwrites", "max-filesize", "socket-timeout", "newline",
         "use-extractors", "print", "paths", "output", "format", "ffmpeg-location", "no-mtime",
         "max-downloads", "extract-audio", "no-plugin-dirs"]
if sys.argv[1:] == ["--version"]:
    print("2099.01.01")
    sys.exit(0)
if sys.argv[1:] == ["--help"]:
    for f in FLAGS:
        print("    --" + f + "    (hostile)")
    sys.exit(0)
os.environ.update(%s)
video = os.path.basename(sys.argv[-1]).split(".")[0]
if video.startswith("ytkB"):
    # One attempt as the sandboxed process itself, for the detection run.
    os.execv(%[2]q, [%[2]q, "attempt", video[3:6]])
proxy = [sys.argv[i + 1] for i, a in enumerate(sys.argv[:-1]) if a == "--proxy"]
os.execv(%[2]q, [%[2]q, "all", %[3]q] + proxy)
`

// ablations are the runs of the suite: every layer on, then each layer
// switched off in turn (layer ablation).
var ablations = []string{"", confine.LayerDAC, confine.LayerLandlock, confine.LayerSeccomp, confine.LayerRlimit}

// tellTales are escapes each ablation run must show, in the domains
// listed: proof that the switch really turned its layer off (otherwise an
// ablation run that changed nothing would pass for "no single-layer
// dependence").
var tellTales = map[string]struct {
	id      string
	domains []string
}{
	confine.LayerDAC:      {"B09", []string{breach.Receiver, breach.Worker, breach.Downloader}},
	confine.LayerLandlock: {"B17", []string{breach.Receiver, breach.Worker, breach.Downloader}},
	confine.LayerSeccomp:  {"B70", []string{breach.Receiver, breach.Worker, breach.Downloader}},
	confine.LayerRlimit:   {"B80", []string{breach.Downloader}},
}

// run is one run of the catalog in the three domains.
type run map[string][]breach.Result // domain -> results

// TestBreach runs the catalog in the three domains with every layer on
// and fails on any escape; then once per layer switched off, and reports
// which attempts that layer alone stops. With YTKEEP_BREACH_REPORT set it
// writes the report there.
func TestBreach(t *testing.T) {
	needTools(t)
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("the assume-breach suite must run as root on CI")
		}
		t.Skip("SKIPPED: the assume-breach suite needs root (separate users, as in production)")
	}
	bin := buildBreach(t)
	t.Cleanup(func() {
		litter, _ := filepath.Glob(breach.TmpLitter + "*")
		for _, f := range litter {
			os.Remove(f)
		}
	})
	runs := map[string]run{}
	for _, layer := range ablations {
		name := "all-layers"
		if layer != "" {
			name = "without-" + layer
		}
		t.Run(name, func(t *testing.T) { runs[layer] = breachRun(t, bin, layer) })
		// Each run's worlds are stopped; wait for their last processes
		// (fork-bomb zombies count against the next run's RLIMIT_NPROC).
		waitUsersGone(t)
		if t.Failed() {
			return
		}
	}
	for _, layer := range ablations[1:] {
		tt := tellTales[layer]
		for _, d := range tt.domains {
			if r, ok := find(runs[layer][d], tt.id); !ok || !r.Escaped {
				t.Errorf("without %s, %s in the %s domain was not an escape (%+v): the ablation switch did not work", layer, tt.id, d, r)
			}
		}
	}
	if p := os.Getenv("YTKEEP_BREACH_REPORT"); p != "" && !t.Failed() {
		if err := os.WriteFile(p, []byte(markdown(runs)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func find(rs []breach.Result, id string) (breach.Result, bool) {
	for _, r := range rs {
		if r.ID == id {
			return r, true
		}
	}
	return breach.Result{}, false
}

// buildBreach builds the breach daemons and the attack runner.
func buildBreach(t *testing.T) string {
	bin := t.TempDir()
	build := exec.Command("go", "build", "-tags", "breach", "-o", bin+"/", "../../cmd/ytkeep-receiver", "../../cmd/ytkeep-worker", "../../cmd/ytkeep-breach")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the breach binaries: %v\n%s", err, out)
	}
	OpenUp(bin)
	OpenUp(filepath.Dir(bin))
	installSetuid(t, bin)
	return bin
}

// setuidName is the runner installed setuid root for B32. It answers
// only "whoami" (its effective uid) and is executable only by the spool
// group, which both test users have.
const setuidName = "ytkeep-breach-setuid"

func installSetuid(t *testing.T, bin string) {
	data, err := os.ReadFile(filepath.Join(bin, "ytkeep-breach"))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(bin, setuidName)
	if err := os.WriteFile(p, data, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, 0, SpoolGID); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o750|os.ModeSetuid); err != nil {
		t.Fatal(err)
	}
	// Positive control: without no_new_privs it does make a test user root,
	// so B32's "no gain" inside the domains is their doing, not nosuid's.
	cmd := exec.Command(p, "whoami")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 61003, Gid: SpoolGID}}
	out, err := cmd.Output()
	if got := strings.TrimSpace(string(out)); err != nil || got != "euid=0" {
		t.Fatalf("the setuid control did not gain root (%q, %v): B32 would prove nothing", got, err)
	}
}

// waitUsersGone waits until no process of the test users is left.
func waitUsersGone(t *testing.T) {
	deadline := time.Now().Add(90 * time.Second)
	for {
		left := 0
		procs, _ := os.ReadDir("/proc")
		for _, p := range procs {
			var st unix.Stat_t
			if unix.Stat("/proc/"+p.Name(), &st) == nil && p.Name()[0] >= '0' && p.Name()[0] <= '9' &&
				(st.Uid == ReceiverUID || st.Uid == WorkerUID) {
				left++
			}
		}
		if left == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d processes of the test users still there after 90 s", left)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// breachRun runs the catalog in the three domains, with layer switched
// off unless it is empty.
func breachRun(t *testing.T, bin, layer string) run {
	out := run{}
	t.Run("downloader", func(t *testing.T) { out[breach.Downloader] = breachDownloader(t, bin, layer) })
	t.Run("daemons", func(t *testing.T) {
		for d, rs := range breachDaemons(t, bin, layer) {
			out[d] = rs
		}
	})
	total, escapes := 0, 0
	for _, d := range []string{breach.Receiver, breach.Worker, breach.Downloader} {
		for _, r := range out[d] {
			total++
			if r.Escaped {
				escapes++
			}
		}
	}
	t.Logf("without %q: %d attempts in 3 domains, %d escapes", layer, total, escapes)
	if layer == "" {
		for _, d := range []string{breach.Receiver, breach.Worker, breach.Downloader} {
			o, a, _ := detection(out[d])
			t.Logf("%s: %d observable attempts, %d alerted", d, o, a)
			if o == 0 {
				t.Errorf("%s: no observable attempt: the detection check checked nothing", d)
			}
		}
	}
	return out
}

// ablationOptions starts a world with layer switched off: breach builds
// of the daemons (release builds have no switch), one owner for the tree
// when Unix users are off (the owner checks would rightly refuse every
// file otherwise).
func ablationOptions(bin, layer string) WorldOptions {
	if layer == "" {
		return WorldOptions{}
	}
	return WorldOptions{BinDir: bin, SingleUser: layer == confine.LayerDAC, ExtraEnv: []string{"YTKEEP_BREACH_ABLATE=" + layer}}
}

// targets are the paths and pids the attempts aim at.
func targets(t *testing.T, w *World, bin string) map[string]string {
	stored := filepath.Join(w.DownloadsDir, "aaaaaaaaaaa-best.mp4")
	other := filepath.Join(w.SpoolDir, "worker", "work", "bbbbbbbbbbbbbbbbbbbbbbbbbb")
	os.WriteFile(stored, []byte("a stored video"), 0o640)
	os.Mkdir(other, 0o700)
	os.WriteFile(filepath.Join(other, "part"), []byte("x"), 0o600)
	if st, err := os.Stat(filepath.Join(w.SpoolDir, "worker")); err == nil {
		uid := int(st.Sys().(*syscall.Stat_t).Uid)
		os.Chown(stored, uid, MediaGID)
		os.Chown(other, uid, SpoolGID)
		os.Chown(filepath.Join(other, "part"), uid, SpoolGID)
	}
	u, err := url.Parse(w.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{
		"YTKEEP_BREACH_SECRET":        filepath.Join(w.Dir, "signing_secret"),
		"YTKEEP_BREACH_SPOOL":         w.SpoolDir,
		"YTKEEP_BREACH_DOWNLOADS":     w.DownloadsDir,
		"YTKEEP_BREACH_JOBROOT":       filepath.Join(w.SpoolDir, "worker", "work"),
		"YTKEEP_BREACH_OTHERJOB":      other,
		"YTKEEP_BREACH_STORED":        stored,
		"YTKEEP_BREACH_CONFIG":        w.ConfigPath,
		"YTKEEP_BREACH_RECEIVER_PORT": u.Port(),
		"YTKEEP_BREACH_SLACK_PORT":    w.Slack.Port(),
		"YTKEEP_BREACH_SETUID":        filepath.Join(bin, setuidName),
	}
}

// breachDaemons runs every attempt inside the receiver and the worker,
// reached the way an attacker would reach them: a crafted request to the
// receiver's port (no signature needed: the backdoor stands for a bug in
// request handling), a crafted job file for the worker. Breach builds of
// the daemons start exactly as in production (their user, Landlock,
// seccomp), one process per attempt, since seccomp kills the process on
// the worst ones. The receiver attacks the world's worker, the worker
// the world's receiver.
func breachDaemons(t *testing.T, bin, layer string) map[string][]breach.Result {
	opt := ablationOptions(bin, layer)
	w := newWorld(t, opt)
	cfg, _ := os.ReadFile(w.ConfigPath)
	addr, _ := FreePort()
	u, _ := url.Parse(w.Endpoint)
	cfgPath := filepath.Join(w.Dir, "breach.toml")
	os.WriteFile(cfgPath, []byte(strings.Replace(string(cfg), u.Host, addr, 1)), 0o644)
	tg := targets(t, w, bin)
	cwd := t.TempDir()
	OpenUp(cwd)
	env := append([]string{"PATH=/usr/bin:/bin"}, opt.ExtraEnv...)
	for k, v := range tg {
		env = append(env, k+"="+v)
	}
	layout := spool.Layout{Root: w.SpoolDir}
	recvUID := -1
	if st, err := os.Stat(layout.Receiver("")); err == nil {
		recvUID = int(st.Sys().(*syscall.Stat_t).Uid)
	}

	out := map[string][]breach.Result{}
	crashes := map[string]int{} // domain+signal -> crashes so far
	for _, d := range []string{breach.Receiver, breach.Worker} {
		victim := w.Worker.Cmd.Process.Pid
		if d == breach.Worker {
			// The world's worker would claim the crafted jobs itself.
			if err := w.Worker.Stop(); err != nil {
				t.Fatalf("stopping the worker: %v", err)
			}
			victim = w.Receiver.Cmd.Process.Pid
		}
		for _, a := range breach.Catalog {
			pl, plants := planted[a.ID]
			plants = plants && pl.domain == d && layer == ""
			quarantined := countAlerts(w, "quarantined", "file="+pl.file)
			outcome, stopped := daemonAttempt(t, bin, d, cfgPath, cwd, env, victim, layout, recvUID, addr, a.ID)
			if outcome == "" && stopped != "" {
				// Stopped (SIGINT or SIGTERM) by something no attempt
				// did, seen once on CI at the worker's first attempt;
				// the daemon now runs in a process group of its own and
				// logs the signal. Once more, and say so; a second time
				// is a failure.
				t.Logf("%s %s: the daemon was stopped (%s) before its backdoor opened; trying once more", d, a.ID, stopped)
				outcome, stopped = daemonAttempt(t, bin, d, cfgPath, cwd, env, victim, layout, recvUID, addr, a.ID)
			}
			if outcome == "" {
				t.Fatalf("%s %s: the backdoor never opened (%s)", d, a.ID, stopped)
			}
			if i := strings.LastIndexByte(outcome, '\n'); i >= 0 {
				outcome = outcome[i+1:]
			}
			r := breach.Result{ID: a.ID, What: a.What, Layers: a.Layers, Expect: a.Expect, Outcome: outcome}
			breach.Judge(&r, d)
			if sig, ok := strings.CutPrefix(outcome, "killed by "); ok && layer == "" {
				r.Observable = true
				crashes[d+sig]++
				if r.Alerted = exitAlert(t, w, d, cfgPath, sig, crashes[d+sig]); !r.Alerted {
					t.Errorf("%s %s: killed by %s, but no alert reached the admin channel", d, a.ID, sig)
				}
			}
			if plants && outcome == "succeeded" {
				r.Observable = true
				r.Alerted = waitCount(w, quarantined+1, "quarantined", "file="+pl.file)
				if !r.Alerted {
					t.Errorf("%s %s: the other daemon did not alert on the planted %s", d, a.ID, pl.file)
				}
			}
			out[d] = append(out[d], r)
		}
		logResults(t, d, layer, out[d])
	}
	return out
}

// daemonAttempt starts a breach build of daemon d and triggers attempt id
// in it: a crafted request for the receiver, a crafted job file for the
// worker. It returns the attempt's outcome, or "" and how the daemon
// ended without running it (its last log line).
func daemonAttempt(t *testing.T, bin, d, cfgPath, cwd string, env []string, victim int, layout spool.Layout, recvUID int, addr, id string) (outcome, stopped string) {
	cmd := exec.Command(filepath.Join(bin, "ytkeep-"+d), "-config", cfgPath)
	cmd.Dir = cwd
	cmd.Env = append(slices.Clone(env), "YTKEEP_BREACH_SERVER="+fmt.Sprint(victim))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if d == breach.Worker {
		// A crafted job file, as a compromised receiver would drop it.
		name := job.NewID() + ".job"
		p := filepath.Join(layout.Incoming(), name)
		if err := os.WriteFile(p, []byte(`{"`+breach.TriggerKey+id+`"}`), 0o640); err != nil {
			t.Fatal(err)
		}
		os.Chown(p, recvUID, SpoolGID)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	if d == breach.Receiver {
		go craftedRequest("http://" + addr + "/slack/commands?" + breach.TriggerKey + id)
	}
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		err = <-done
	}
	outcome = strings.TrimSpace(stdout.String())
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "killed by " + unix.SignalName(ws.Signal()), ""
		} else if outcome == "" {
			t.Fatalf("%s %s: the daemon failed before the attempt: %v\n%s", d, id, err, stderr.String())
		}
	}
	if outcome == "" {
		log := strings.TrimSpace(stderr.String())
		return "", log[strings.LastIndexByte(log, '\n')+1:]
	}
	return outcome, ""
}

// planted are the attempts that leave a hostile file for the other
// daemon, which must quarantine it with an alert: a forged job from the
// receiver, a forged result from the worker.
var planted = map[string]struct{ domain, file string }{
	"B10": {breach.Receiver, "aaaaaaaaaaaaaaaaaaaaaaaaaa.job"},
	"B11": {breach.Worker, "aaaaaaaaaaaaaaaaaaaaaaaaaa.done.result"},
}

// craftedRequest posts to url until the daemon, still starting, takes it
// (or 10 s have passed).
func craftedRequest(url string) {
	for i := 0; i < 200; i++ {
		resp, err := http.Post(url, "application/x-www-form-urlencoded", strings.NewReader("text=x"))
		if err == nil {
			resp.Body.Close()
			return
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return // the daemon took it, and died on it
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// logResults logs every outcome; with every layer on, an escape fails
// the test.
func logResults(t *testing.T, domain, layer string, results []breach.Result) {
	t.Helper()
	escapes := 0
	for _, r := range results {
		mark := "blocked"
		switch {
		case r.Escaped:
			mark = "ESCAPED"
			escapes++
		case r.Allowed:
			mark = "the domain's own right"
		case r.Expect == breach.Accepted:
			mark = "accepted risk"
		}
		t.Logf("%-10s %s %-45s %-22s %s", domain, r.ID, r.What, r.Outcome, mark)
	}
	switch {
	case escapes > 0 && layer == "":
		t.Errorf("%d of %d attempts escaped the %s domain", escapes, len(results), domain)
	case layer != "":
		t.Logf("without %s: %d of %d attempts escaped the %s domain", layer, escapes, len(results), domain)
	}
}

// breachDownloader is the realistic breach: code execution inside the
// downloader through yt-dlp itself, reached with a real signed slash
// command through the real receiver, worker and launcher, as separate
// processes under every layer.
func breachDownloader(t *testing.T, bin, layer string) []breach.Result {
	attackDir := t.TempDir()
	OpenUp(attackDir)
	OpenUp(filepath.Dir(attackDir))
	runner := filepath.Join(bin, "ytkeep-breach")
	script := filepath.Join(attackDir, "yt-dlp")

	// The world needs the script's path before it starts; the script needs
	// the world's paths: write a placeholder, start, then write the script.
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	opt := ablationOptions(bin, layer)
	opt.YtDlp, opt.NoWorker, opt.AnyUser = script, true, true
	opt.ExtraWorker = fmt.Sprintf("extra_exec_paths = [%q, %q]\n", attackDir, bin)
	w := newWorld(t, opt)

	// The runner, inside a downloader, sends its findings over the only
	// channel it has: the media server's port.
	reports := make(chan []byte, 4)
	w.Media.Handle("POST /report", http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		select {
		case reports <- b:
		default:
		}
	}))
	env := targets(t, w, bin)
	envJSON, _ := json.Marshal(env)
	src := fmt.Sprintf(hostileYtDlp, envJSON, runner, w.Media.URL+"/report")
	if err := os.WriteFile(script, []byte(src), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := w.StartWorker(); err != nil {
		t.Fatal(err)
	}

	_, id := send(t, w, "https://youtu.be/dQw4w9WgXcQ")
	var report []byte
	select {
	case report = <-reports:
	case <-time.After(3 * time.Minute):
		t.Fatalf("no report from inside the downloader\\nworker log:\\n%s", w.Worker.Log())
	}
	waitFinal(t, w, id)
	var results []breach.Result
	if err := json.Unmarshal(report, &results); err != nil {
		t.Fatalf("report: %v\n%s", err, report)
	}
	if len(results) < 40 {
		t.Fatalf("%d attempts, want at least 40", len(results))
	}
	logResults(t, breach.Downloader, layer, results)
	if layer == "" {
		detectDownloader(t, w, results)
	}
	return results
}

// detectDownloader checks the alerts for the downloader: every attempt
// that got its process killed runs again as a job of its own, this time
// as the sandboxed process itself (not a grandchild of the launcher), and
// the admin channel must get the violation alert, relayed by the worker
// through the spool and posted by the receiver.
func detectDownloader(t *testing.T, w *World, results []breach.Result) {
	for i := range results {
		r := &results[i]
		if !strings.HasPrefix(r.Outcome, "killed by ") {
			continue
		}
		r.Observable = true
		video := "ytk" + r.ID + "aaaaa"
		inv := w.Invocation("https://youtu.be/" + video)
		inv.User = fmt.Sprintf("U0BREACH%s", r.ID) // one user each: the rate limit is per user
		if _, _, status, err := w.Slack.Send(context.Background(), http.DefaultClient, w.Endpoint, inv); err != nil || status != http.StatusOK {
			t.Fatalf("sending %s: %d %v", video, status, err)
		}
		sig := strings.TrimPrefix(r.Outcome, "killed by ")
		r.Alerted = waitAlert(w, 30*time.Second, "video="+video, "signal="+sig)
		if !r.Alerted {
			t.Errorf("downloader %s was killed by %s but no alert reached the admin channel", r.ID, sig)
		}
	}
}

// waitAlert waits for an admin-channel alert line that contains every
// one of parts.
func waitAlert(w *World, timeout time.Duration, parts ...string) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if countAlerts(w, parts...) > 0 {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}

// exitAlert does what systemd does when a daemon's main process ends:
// it runs the unit's ExecStopPost= (the release binary's -exit-alert,
// deploy/systemd) with SERVICE_RESULT, EXIT_CODE and EXIT_STATUS set. It
// reports whether the admin channel then got the alert.
func exitAlert(t *testing.T, w *World, domain, cfgPath, sig string, n int) bool {
	cmd := exec.Command(filepath.Join(binDir, "ytkeep-"+domain), "-config", cfgPath, "-exit-alert")
	cmd.Env = []string{"PATH=/usr/bin:/bin", "SERVICE_RESULT=signal", "EXIT_CODE=killed", "EXIT_STATUS=" + strings.TrimPrefix(sig, "SIG")}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("%s -exit-alert: %v\n%s", domain, err, out)
		return false
	}
	// Each crash is one more alert line for the service.
	return waitCount(w, n, "service=ytkeep-"+domain, "signal="+sig)
}

// markdown renders docs/breach-report.md (make breach-report).
func markdown(runs map[string]run) string {
	results := runs[""]
	var b strings.Builder
	b.WriteString(`# Breach report

Generated by ` + "`make breach-report`" + ` from the assume-breach suite
(` + "`go test -tags breach -run TestBreach ./internal/testbed`" + `).
Do not edit by hand. The attack code exists only in builds with the
` + "`breach`" + ` tag; the release binaries contain none of it
(` + "`TestReleaseBinariesHaveNoBreachCode`" + `).

- **Downloader**: a real signed slash command goes through the real
  receiver, worker and launcher server (separate processes and users, every
  layer on); the "yt-dlp" they start is a hostile Python script that
  executes the attack runner. Each attempt runs in its own process inside
  the per-job sandbox, and the report leaves over the one channel a
  downloader has (its egress proxy, tunnelled to the media server).
- **Receiver, worker**: breach builds of the daemons start exactly as in
  production (their user, Landlock, seccomp) and run one attempt right
  after confinement, where they would next handle untrusted input; one
  process per attempt, since seccomp kills the process on the worst ones.
  Signals, tracing and /proc aim at the other daemon (at the launcher
  server for the downloader).

| id | attempt | layers meant to stop it | receiver | worker | downloader |
|---|---|---|---|---|---|
`)
	byID := map[string]map[string]breach.Result{}
	for d, rs := range results {
		for _, r := range rs {
			if byID[r.ID] == nil {
				byID[r.ID] = map[string]breach.Result{}
			}
			byID[r.ID][d] = r
		}
	}
	cell := func(r breach.Result, ok bool) string {
		switch {
		case !ok:
			return "—"
		case r.Escaped:
			return "**ESCAPED** (" + r.Outcome + ")"
		case r.Allowed && r.Outcome == "succeeded":
			return "allowed: own right"
		case r.Expect == breach.Accepted && r.Outcome == "succeeded":
			return "accepted risk"
		}
		return r.Outcome
	}
	total, escapes := 0, 0
	for _, a := range breach.Catalog {
		layers := strings.Join(a.Layers, ", ")
		if layers == "" {
			layers = "—"
		}
		row := byID[a.ID]
		rr, okr := row[breach.Receiver]
		rw, okw := row[breach.Worker]
		rd, okd := row[breach.Downloader]
		for _, x := range []struct {
			r  breach.Result
			ok bool
		}{{rr, okr}, {rw, okw}, {rd, okd}} {
			if x.ok {
				total++
				if x.r.Escaped {
					escapes++
				}
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", a.ID, a.What, layers, cell(rr, okr), cell(rw, okw), cell(rd, okd))
	}
	fmt.Fprintf(&b, "\n**%d attempts in 3 domains (%d each), %d escapes.** An outcome is how the attempt ended: an errno, or the process killed by the seccomp filter (SIGSYS).\n", total, len(breach.Catalog), escapes)
	b.WriteString(detectionMarkdown(results))
	b.WriteString(ablationMarkdown(runs))
	return b.String()
}

// detection counts, per domain, the attempts the system can observe and
// those that raised an alert in the admin channel.
func detection(rs []breach.Result) (observable, alerted int, ids []string) {
	for _, r := range rs {
		if r.Observable {
			observable++
			if r.Alerted {
				alerted++
				ids = append(ids, r.ID)
			}
		}
	}
	return observable, alerted, ids
}

func detectionMarkdown(results run) string {
	var b strings.Builder
	b.WriteString(`
## Detection

An attempt is *observable* when it ends in a way the system itself sees:
its process killed by a signal (seccomp's SIGSYS), or a hostile file left
for the other daemon (B10 from the receiver, B11 from the worker), which
must quarantine it with an alert. For the daemons, systemd
runs the unit's ` + "`ExecStopPost=… -exit-alert`" + ` after the kill (the
suite runs the same command with the same environment); for the
downloader, each observable attempt runs again as the sandboxed process
itself, and the launcher reports its signal to the worker. Every alert
must reach the admins' Slack channel (the simulated Slack's incoming
webhook): the worker's cross the spool as alert files, the receiver posts
them. A missing alert fails ` + "`make test`" + `.

An attempt refused with an error (EACCES, EPERM) is not observable by
ytkeep: Landlock and seccomp refuse silently. The kernel's audit log has
the seccomp kills (type 1326) on any kernel, and Landlock denials on
Linux 6.15+ when audit is on; docs/audit.md shows how to forward them.

| domain | attempts | observable | alerted | detection rate | alerted attempts |
|---|---|---|---|---|---|
`)
	to, ta := 0, 0
	for _, d := range []string{breach.Receiver, breach.Worker, breach.Downloader} {
		o, a, ids := detection(results[d])
		to, ta = to+o, ta+a
		rate := "—"
		if o > 0 {
			rate = fmt.Sprintf("%.0f%%", 100*float64(a)/float64(o))
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %s | %s |\n", d, len(results[d]), o, a, rate, strings.Join(ids, " "))
	}
	fmt.Fprintf(&b, "\n**%d of %d observable attempts raised an alert.**\n", ta, to)
	return b.String()
}

// ablationMarkdown renders the ablation table: for each layer switched
// off, the attempts that escaped, i.e. the ones that layer alone stops.
func ablationMarkdown(runs map[string]run) string {
	var b strings.Builder
	b.WriteString(`
## Layer ablation

The catalog again, in all three domains, with one layer switched off at a
time (breach builds only: ` + "`confine.Ablated`" + ` is a constant false in
release builds). An attempt that escapes then is stopped by that layer
alone in that domain. Without Unix users the daemons and the downloader
run as root (with one owner for the whole tree, or the owner checks
would refuse every spool file). Each run must show its tell-tale escape
(` + "`tellTales`" + `), or the suite fails: a switch that changed nothing
would otherwise look like "no single-layer dependence".

| layer off | escapes | receiver | worker | downloader |
|---|---|---|---|---|
`)
	type key struct{ id, layer string }
	single := map[key][]string{}
	for _, layer := range ablations[1:] {
		n := 0
		cells := map[string][]string{}
		for _, d := range []string{breach.Receiver, breach.Worker, breach.Downloader} {
			for _, r := range runs[layer][d] {
				if r.Escaped {
					n++
					cells[d] = append(cells[d], r.ID)
					single[key{r.ID, layer}] = append(single[key{r.ID, layer}], d)
				}
			}
		}
		cell := func(d string) string {
			if len(cells[d]) == 0 {
				return "none"
			}
			return strings.Join(cells[d], " ")
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s |\n", layer, n, cell(breach.Receiver), cell(breach.Worker), cell(breach.Downloader))
	}
	b.WriteString(`
### Attempts that rely on one layer

| id | attempt | only layer | domains | second layer |
|---|---|---|---|---|
`)
	for _, a := range breach.Catalog {
		for _, layer := range ablations[1:] {
			ds, ok := single[key{a.ID, layer}]
			if !ok {
				continue
			}
			second := secondLayer[a.ID]
			if second == "" {
				second = "none found yet"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", a.ID, a.What, layer, strings.Join(ds, ", "), second)
		}
	}
	return b.String()
}

// secondLayer says, for attempts that one layer alone stops in this
// suite, what else stands behind it (in production or in the code), or
// why nothing does. docs/threat-model.md carries the same list.
var secondLayer = map[string]string{
	"B05": "none in-process: the downloader runs as the worker's user (a third user is future work); systemd's empty RootDirectory= hides the spool from neither",
	"B06": "as B05", "B07": "as B05", "B08": "as B05", "B10": "as B05; the worker checks the job file's owner and content", "B11": "as B05; the receiver authenticates every result (sealed reply token)",
	"B12": "as B05; the worker copies only its own job's output under a name it builds", "B13": "as B05", "B14": "as B05",
	"B09": "it is what the DAC layer means; running as root, every other attempt stays blocked by Landlock and seccomp; systemd User= (units)",
	"B17": "systemd PrivateTmp=yes and the empty RootDirectory= (units; not run here)",
	"B21": "the worker opens outputs with O_NOFOLLOW and keeps regular files only", "B22": "the worker refuses outputs with more than one link (and copies, never renames, into downloads/)",
	"B23": "the worker's output checks (regular files only)",
	"B24": "the worker's claim: rename into its private dir, then O_NOFOLLOW, regular file, one link (spool/TestClaimHostile)",
	"B25": "none in-process (the downloader runs as the worker's user); each job has its own HOME, and yt-dlp runs with --ignore-config and --no-cache-dir", "B30": "none in-process: Landlock's execute right is the control",
	"B40": "in the downloader, the egress proxy refuses loopback and every address literal, and its children may reach only the proxy (seccomp: TCP sockets only); none for the receiver's own port", "B41": "as B40",
	"B43": "sysctl net.mptcp.enabled=0 where nothing needs MPTCP (ytkeep doctor warns); none in-process: Landlock's TCP rules do not cover MPTCP",
	"B52": "none: same user; Landlock's signal scope is the control", "B53": "the launcher server is non-dumpable, so its /proc files are root's (confine/TestNoDumpLayer); systemd ProtectProc=invisible (units)", "B54": "none needed: the process's own memory",
	"B63": "systemd KeyringMode=private (units)", "B68": "systemd SystemCallArchitectures=native (units)",
	"B70": "systemd kills the whole cgroup (units); the launcher's Pdeathsig", "B71": "systemd LockPersonality=yes (units)",
	"B80": "the worker's size check on the result and the downloads disk budget",
	"B33": "none in-process: Landlock's execute right is checked on paths and a memfd has none; the host sysctl vm.memfd_noexec=2",
	"B73": "systemd RestrictNamespaces=yes (units)",
	"B32": "systemd NoNewPrivileges=yes and an empty CapabilityBoundingSet= (units); in the daemons, seccomp kills exec",
	"B82": "systemd MemoryMax= (units; not run here)", "B81": "systemd TasksMax= (units; not run here)",
}
