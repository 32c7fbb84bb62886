//go:build breach

package testbed

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ytkeep/ytkeep/internal/breach"
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
         "max-downloads", "extract-audio"]
if sys.argv[1:] == ["--version"]:
    print("2099.01.01")
    sys.exit(0)
if sys.argv[1:] == ["--help"]:
    for f in FLAGS:
        print("    --" + f + "    (hostile)")
    sys.exit(0)
os.environ.update(%s)
os.execv(%q, [%q, "all", %q])
`

// TestBreach runs the catalog in the three domains and fails on any
// escape; with YTKEEP_BREACH_REPORT set it writes the report there.
func TestBreach(t *testing.T) {
	needTools(t)
	results := map[string][]breach.Result{}
	t.Run("downloader", func(t *testing.T) { results[breach.Downloader] = breachDownloader(t) })
	t.Run("daemons", func(t *testing.T) {
		for d, rs := range breachDaemons(t) {
			results[d] = rs
		}
	})
	total, escapes := 0, 0
	for _, d := range []string{breach.Receiver, breach.Worker, breach.Downloader} {
		for _, r := range results[d] {
			total++
			if r.Escaped {
				escapes++
			}
		}
		t.Logf("%s domain: %d attempts", d, len(results[d]))
	}
	t.Logf("%d attempts in 3 domains, %d escapes", total, escapes)
	if p := os.Getenv("YTKEEP_BREACH_REPORT"); p != "" && !t.Failed() {
		if err := os.WriteFile(p, []byte(markdown(results)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// targets are the paths and pids the attempts aim at.
func targets(t *testing.T, w *World) map[string]string {
	stored := filepath.Join(w.DownloadsDir, "aaaaaaaaaaa-best.mp4")
	other := filepath.Join(w.SpoolDir, "worker", "work", "bbbbbbbbbbbbbbbbbbbbbbbbbb")
	os.WriteFile(stored, []byte("a stored video"), 0o640)
	os.Mkdir(other, 0o700)
	os.WriteFile(filepath.Join(other, "part"), []byte("x"), 0o600)
	if os.Geteuid() == 0 {
		os.Chown(stored, WorkerUID, MediaGID)
		os.Chown(other, WorkerUID, SpoolGID)
		os.Chown(filepath.Join(other, "part"), WorkerUID, SpoolGID)
	}
	u, err := url.Parse(w.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	port := u.Port()
	return map[string]string{
		"YTKEEP_BREACH_SECRET":        filepath.Join(w.Dir, "signing_secret"),
		"YTKEEP_BREACH_SPOOL":         w.SpoolDir,
		"YTKEEP_BREACH_DOWNLOADS":     w.DownloadsDir,
		"YTKEEP_BREACH_JOBROOT":       filepath.Join(w.SpoolDir, "worker", "work"),
		"YTKEEP_BREACH_OTHERJOB":      other,
		"YTKEEP_BREACH_STORED":        stored,
		"YTKEEP_BREACH_CONFIG":        w.ConfigPath,
		"YTKEEP_BREACH_RECEIVER_PORT": port,
	}
}

// breachDaemons runs every attempt inside the receiver and the worker:
// breach builds of the daemons start exactly as in production (their
// user, Landlock, seccomp) and then run one attempt each, one process per
// attempt (seccomp kills the process on the worst ones). The release
// daemons run alongside as the targets of signals and tracing.
func breachDaemons(t *testing.T) map[string][]breach.Result {
	w := newWorld(t, WorldOptions{})
	bin := t.TempDir()
	build := exec.Command("go", "build", "-tags", "breach", "-o", bin+"/", "../../cmd/ytkeep-receiver", "../../cmd/ytkeep-worker")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building breach daemons: %v\n%s", err, out)
	}
	OpenUp(bin)
	OpenUp(filepath.Dir(bin))
	// The same configuration on another port (the release receiver has its own).
	cfg, _ := os.ReadFile(w.ConfigPath)
	addr, _ := FreePort()
	u, _ := url.Parse(w.Endpoint)
	listen := u.Host
	cfgPath := filepath.Join(w.Dir, "breach.toml")
	os.WriteFile(cfgPath, []byte(strings.Replace(string(cfg), listen, addr, 1)), 0o644)
	tg := targets(t, w)
	cwd := t.TempDir()
	OpenUp(cwd)

	out := map[string][]breach.Result{}
	for _, d := range []string{breach.Receiver, breach.Worker} {
		victim := w.Worker.Cmd.Process.Pid // the receiver attacks the worker…
		if d == breach.Worker {
			victim = w.Receiver.Cmd.Process.Pid // …and the worker the receiver
		}
		for _, a := range breach.Catalog {
			cmd := exec.Command(filepath.Join(bin, "ytkeep-"+d), "-config", cfgPath)
			cmd.Dir = cwd
			cmd.Env = []string{"PATH=/usr/bin:/bin", "YTKEEP_BREACH_ATTEMPT=" + a.ID, "YTKEEP_BREACH_SERVER=" + fmt.Sprint(victim)}
			for k, v := range tg {
				cmd.Env = append(cmd.Env, k+"="+v)
			}
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			timer := time.AfterFunc(30*time.Second, func() { cmd.Process.Kill() })
			err := cmd.Run()
			timer.Stop()
			outcome := strings.TrimSpace(stdout.String())
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
					outcome = "killed by " + unix.SignalName(ws.Signal())
				} else if outcome == "" {
					t.Fatalf("%s %s: the daemon failed before the attempt: %v\n%s", d, a.ID, err, stderr.String())
				}
			}
			if i := strings.LastIndexByte(outcome, '\n'); i >= 0 {
				outcome = outcome[i+1:]
			}
			r := breach.Result{ID: a.ID, What: a.What, Layers: a.Layers, Expect: a.Expect, Outcome: outcome}
			breach.Judge(&r, d)
			out[d] = append(out[d], r)
		}
		logResults(t, d, out[d])
	}
	return out
}

func logResults(t *testing.T, domain string, results []breach.Result) {
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
	if escapes > 0 {
		t.Errorf("%d of %d attempts escaped the %s domain", escapes, len(results), domain)
	}
}

// breachDownloader is the realistic breach: code execution inside the
// downloader through yt-dlp itself, reached with a real signed slash
// command through the real receiver, worker and launcher, as separate
// processes under every layer.
func breachDownloader(t *testing.T) []breach.Result {
	attackDir := t.TempDir()
	build := exec.Command("go", "build", "-tags", "breach", "-o", attackDir+"/", "../../cmd/ytkeep-breach")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the runner: %v\n%s", err, out)
	}
	if err := OpenUp(attackDir); err != nil {
		t.Fatal(err)
	}
	OpenUp(filepath.Dir(attackDir))
	runner := filepath.Join(attackDir, "ytkeep-breach")
	script := filepath.Join(attackDir, "yt-dlp")

	// The world needs the script's path before it starts; the script needs
	// the world's paths: write a placeholder, start, then write the script.
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	w := newWorld(t, WorldOptions{YtDlp: script, ExtraWorker: fmt.Sprintf("extra_exec_paths = [%q]\n", attackDir), NoWorker: true})

	env := targets(t, w)
	envJSON, _ := json.Marshal(env)
	src := fmt.Sprintf(hostileYtDlp, envJSON, runner, runner, w.Media.URL+"/report")
	if err := os.WriteFile(script, []byte(src), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := w.StartWorker(); err != nil {
		t.Fatal(err)
	}

	_, id := send(t, w, "https://youtu.be/dQw4w9WgXcQ")
	var report []byte
	select {
	case report = <-w.Media.Reports:
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
	logResults(t, breach.Downloader, results)
	return results
}

// markdown renders docs/breach-report.md (make breach-report).
func markdown(results map[string][]breach.Result) string {
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
  downloader has (its allowed media port).
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
		case r.Allowed:
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
	b.WriteString(`
## Not yet in this report

Layer ablation (each layer switched off in turn, to find attempts that
rely on one layer only) and the detection table (which attempts raise an
alert) are the next steps of the assume-breach work.
`)
	return b.String()
}
