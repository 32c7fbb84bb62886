//go:build breach

package testbed

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// TestBreachDownloader is the realistic breach: code execution inside the
// downloader through yt-dlp itself, reached with a real signed slash
// command through the real receiver, worker and launcher, as separate
// processes under every layer. Every attempt of the catalog must fail.
func TestBreachDownloader(t *testing.T) {
	needTools(t)
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

	// Targets: a stored video, another job's directory.
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
	env := map[string]string{
		"YTKEEP_BREACH_SECRET":        filepath.Join(w.Dir, "signing_secret"),
		"YTKEEP_BREACH_SPOOL":         w.SpoolDir,
		"YTKEEP_BREACH_DOWNLOADS":     w.DownloadsDir,
		"YTKEEP_BREACH_JOBROOT":       filepath.Join(w.SpoolDir, "worker", "work"),
		"YTKEEP_BREACH_OTHERJOB":      other,
		"YTKEEP_BREACH_STORED":        stored,
		"YTKEEP_BREACH_CONFIG":        w.ConfigPath,
		"YTKEEP_BREACH_RECEIVER_PORT": w.Endpoint[strings.LastIndexByte(w.Endpoint[:strings.LastIndexByte(w.Endpoint, '/')], ':')+1 : strings.LastIndexByte(w.Endpoint, '/')],
	}
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
		t.Fatalf("report: %v\\n%s", err, report)
	}
	if len(results) < 40 {
		t.Fatalf("%d attempts, want at least 40", len(results))
	}
	escapes := 0
	for _, r := range results {
		mark := "blocked"
		if r.Escaped {
			mark = "ESCAPED"
			escapes++
		} else if r.Expect == breach.Accepted {
			mark = "accepted risk"
		}
		t.Logf("%s %-45s %-10s %-22s %s", r.ID, r.What, r.Expect, r.Outcome, mark)
	}
	if escapes > 0 {
		t.Fatalf("%d of %d attempts escaped the downloader domain", escapes, len(results))
	}
	t.Logf("downloader domain: %d attempts, 0 escapes", len(results))
	if p := os.Getenv("YTKEEP_BREACH_REPORT"); p != "" {
		if err := os.WriteFile(p, []byte(markdown(results)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// markdown renders docs/breach-report.md (make breach-report).
func markdown(results []breach.Result) string {
	var b strings.Builder
	b.WriteString(`# Breach report

Generated by ` + "`make breach-report`" + ` from the assume-breach suite
(` + "`go test -tags breach -run TestBreachDownloader ./internal/testbed`" + `).
Do not edit by hand.

## Downloader domain: yt-dlp replaced by a hostile program

A real signed slash command goes through the real receiver, worker and
launcher server, running as separate processes and users with every layer
on. The "yt-dlp" they start is a hostile Python script that executes the
attack runner; each attempt runs in its own process inside the per-job
sandbox, and the report leaves over the one channel a downloader has (its
allowed media port).

| id | attempt | layers meant to stop it | expected | outcome | verdict |
|---|---|---|---|---|---|
`)
	escapes, accepted := 0, 0
	for _, r := range results {
		verdict := "blocked"
		switch {
		case r.Escaped:
			verdict = "**ESCAPED**"
			escapes++
		case r.Expect == breach.Accepted:
			verdict = "accepted risk (docs/threat-model.md)"
			accepted++
		case r.Expect == breach.Contained:
			verdict = "contained"
		}
		layers := strings.Join(r.Layers, ", ")
		if layers == "" {
			layers = "—"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", r.ID, r.What, layers, r.Expect, r.Outcome, verdict)
	}
	fmt.Fprintf(&b, "\n**%d attempts, %d escapes, %d accepted risks.**\n", len(results), escapes, accepted)
	b.WriteString(`
## Not yet in this report

The same catalog run inside the receiver and the worker (through a crafted
Slack request and a crafted job file), the layer ablation (each layer
switched off in turn) and the detection table are the next steps of the
assume-breach work.
`)
	return b.String()
}
