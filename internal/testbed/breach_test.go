//go:build breach

package testbed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
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
// It is complete before the world starts (whatever starts the launcher
// server probes it then); the targets, which need the world's paths and
// ports, it reads from a file the suite writes afterwards.
const hostileYtDlp = `#!/usr/bin/python3
# Hostile stand-in for yt-dlp (assume-breach test only).
import json, os, sys
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
with open(%q) as f:
    os.environ.update(json.load(f))
# The egress proxy, with this job's credentials, as yt-dlp learns it
# (https_proxy; the command line holds no credentials).
proxy = [os.environ["https_proxy"]] if os.environ.get("https_proxy") else []
if proxy:
    os.environ["YTKEEP_BREACH_PROXY"] = proxy[0]
video = os.path.basename(sys.argv[-1]).split(".")[0]
if video.startswith("ytkB"):
    # One attempt as the sandboxed process itself, in a job of its own.
    os.execv(%[2]q, [%[2]q, "attempt", video[3:6]])
os.execv(%[2]q, [%[2]q, "all", os.environ["YTKEEP_BREACH_REPORT_URL"]] + proxy)
`

// ablations are the runs of the suite: every layer on, then each layer
// switched off in turn (layer ablation).
var ablations = []string{"", confine.LayerDAC, confine.LayerLandlock, confine.LayerSeccomp, confine.LayerRlimit, confine.LayerBroker}

// tellTales are escapes each ablation run must show, in the domains
// listed: proof that the switch really turned its layer off (otherwise an
// ablation run that changed nothing would pass for "no single-layer
// dependence").
var tellTales = map[string]struct {
	id      string
	domains []string
}{
	confine.LayerDAC:      {"B09", domains},
	confine.LayerLandlock: {"B17", domains},
	confine.LayerSeccomp:  {"B70", domains},
	confine.LayerRlimit:   {"B80", []string{breach.Downloader}},
}

// domains are the four domains the catalog runs in, in the report's
// order. (The receiver runs it a second time in Socket Mode:
// receiverSocket.)
var domains = []string{breach.Receiver, breach.Worker, breach.Courier, breach.Downloader}

// run is one run of the catalog in the four domains.
type run map[string][]breach.Result // domain -> results

// TestBreach runs the catalog in the four domains with every layer on
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
	for _, a := range brokerAnswers {
		with, _ := find(runs[""][breach.Downloader], a.id)
		without, _ := find(runs[confine.LayerBroker][breach.Downloader], a.id)
		if with.Escaped || !strings.Contains(with.Outcome, a.with) || without.Escaped || !strings.Contains(without.Outcome, a.without) {
			t.Errorf("downloader %s: %q with every layer (want %s, the broker's), %q without the broker (want %s, Landlock's): the broker's switch did not work", a.id, with.Outcome, a.with, without.Outcome, a.without)
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
	build := exec.Command("go", "build", "-tags", "breach", "-o", bin+"/", "../../cmd/ytkeep-receiver", "../../cmd/ytkeep-worker", "../../cmd/ytkeep-downloader", "../../cmd/ytkeep-courier", "../../cmd/ytkeep-breach")
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
				(st.Uid == ReceiverUID || st.Uid == WorkerUID || st.Uid == CourierUID) {
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

// breachRun runs the catalog in the four domains, with layer switched
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
	for _, d := range domains {
		for _, r := range out[d] {
			total++
			if r.Escaped {
				escapes++
			}
		}
	}
	t.Logf("without %q: %d attempts in %d domains, %d escapes", layer, total, len(domains), escapes)
	for _, d := range domains {
		if len(out[d]) != len(breach.Catalog) {
			t.Errorf("%s: %d results for %d attempts", d, len(out[d]), len(breach.Catalog))
		}
	}
	if layer == "" {
		for _, d := range domains {
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
	other := filepath.Join(w.SpoolDir, "work", "bbbbbbbbbbbbbbbbbbbbbbbbbb")
	os.WriteFile(stored, []byte("a stored video"), 0o640)
	os.Mkdir(other, 0o700)
	os.WriteFile(filepath.Join(other, "part"), []byte("x"), 0o600)
	if st, err := os.Stat(filepath.Join(w.SpoolDir, "worker")); err == nil {
		uid := int(st.Sys().(*syscall.Stat_t).Uid)
		os.Chown(stored, uid, MediaGID)
		os.Chown(other, uid, DownloaderGID)
		os.Chown(filepath.Join(other, "part"), uid, DownloaderGID)
	}
	// The credentials and private files the other domains must not read,
	// as the world makes them (or, where this world has none, as
	// production would: the same owner and mode).
	layout := spool.Layout{Root: w.SpoolDir}
	ownerOf := func(dir string) int {
		if st, err := os.Stat(dir); err == nil {
			return int(st.Sys().(*syscall.Stat_t).Uid)
		}
		return -1
	}
	botToken := filepath.Join(w.Dir, "bot_token") // WorldOptions.Bot's
	appToken := filepath.Join(w.Dir, "breach_app_token")
	receiverFile := layout.Receiver("breach-private")
	for _, f := range []struct {
		path, text string
		uid        int
		mode       os.FileMode
	}{
		{botToken, "xoxb-breach-decoy\n", ownerOf(layout.Courier("")), 0o400},
		{appToken, "xapp-breach-decoy\n", ownerOf(layout.Receiver("")), 0o400},
		// The directory's group (setgid: the courier's), 0600 as the
		// receiver makes every file there but the reply key.
		{receiverFile, "the receiver's alone\n", ownerOf(layout.Receiver("")), 0o600},
	} {
		if _, err := os.Lstat(f.path); err == nil {
			continue
		}
		if err := os.WriteFile(f.path, []byte(f.text), f.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(f.path, f.uid, -1); err != nil {
			t.Fatal(err)
		}
	}
	u, err := url.Parse(w.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	// A loopback web server for B48 to reach, as root can bind them.
	for _, port := range []int{443, 80} {
		listenLoopback(t, port)
	}
	return map[string]string{
		"YTKEEP_BREACH_SECRET":        filepath.Join(w.Dir, "signing_secret"),
		"YTKEEP_BREACH_SPOOL":         w.SpoolDir,
		"YTKEEP_BREACH_DOWNLOADS":     w.DownloadsDir,
		"YTKEEP_BREACH_JOBROOT":       filepath.Join(w.SpoolDir, "work"),
		"YTKEEP_BREACH_OTHERJOB":      other,
		"YTKEEP_BREACH_STORED":        stored,
		"YTKEEP_BREACH_CONFIG":        w.ConfigPath,
		"YTKEEP_BREACH_RECEIVER_PORT": u.Port(),
		"YTKEEP_BREACH_SLACK_PORT":    w.Slack.Port(),
		"YTKEEP_BREACH_SETUID":        filepath.Join(bin, setuidName),
		"YTKEEP_BREACH_MEDIA_PORT":    w.Media.Port(),
		"YTKEEP_BREACH_BOT_TOKEN":     botToken,
		"YTKEEP_BREACH_APP_TOKEN":     appToken,
		"YTKEEP_BREACH_RECEIVER_FILE": receiverFile,
	}
}

// listenLoopback listens on 127.0.0.1:port until the test ends,
// accepting and closing every connection, so that a direct connect
// there (B48) is a connection made, not only an errno. A port already
// taken is said loudly; the attempt is then judged by its errno alone
// (ECONNREFUSED counts as success all the same).
func listenLoopback(t *testing.T, port int) {
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(context.Background(), "tcp4", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Logf("LISTENER SKIPPED: 127.0.0.1:%d: %v; B48 is judged by its errno alone", port, err)
		return
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
}

// hostsFile is where the launcher server's resolver (Go's, "hosts: files
// dns") looks first.
// notMeaningful says B96 cannot be set up, and fails on CI, where it must.
func notMeaningful(t *testing.T, err error) {
	t.Helper()
	msg := fmt.Sprintf("B96 NOT MEANINGFUL: %s: %v; the proxy will refuse %s as a name that does not resolve", hostsFile, err, breach.RebindName)
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Log(msg)
}

const hostsFile = "/etc/hosts"

// hostsMarker ends the lines the suite adds to hostsFile.
const hostsMarker = "# ytkeep breach suite (B96): removed after the test"

// rebindName makes breach.RebindName, a name the proxy's default
// allowlist admits (*.youtube.com), resolve on this machine to loopback
// and to a public address, until the test ends: the proxy must resolve
// it itself and refuse it for its loopback answer (B96). It reports
// whether the lines are in place. The test machine has no other way to
// give an allowed name an internal address: the launcher server resolves
// with the system's resolver, which no test hook reaches.
func rebindName(t *testing.T) bool {
	dropOurs := func() error {
		b, err := os.ReadFile(hostsFile)
		if err != nil {
			return err
		}
		lines := strings.SplitAfter(string(b), "\n")
		kept := slices.DeleteFunc(slices.Clone(lines), func(l string) bool { return strings.Contains(l, hostsMarker) })
		if len(kept) == len(lines) {
			return nil
		}
		return os.WriteFile(hostsFile, []byte(strings.Join(kept, "")), 0o644) // in place: the same inode
	}
	if err := dropOurs(); err != nil { // a killed run's, if any
		notMeaningful(t, err)
		return false
	}
	b, _ := os.ReadFile(hostsFile)
	lead := ""
	if len(b) > 0 && b[len(b)-1] != '\n' {
		lead = "\n"
	}
	f, err := os.OpenFile(hostsFile, os.O_WRONLY|os.O_APPEND, 0)
	if err == nil {
		_, err = fmt.Fprintf(f, "%s127.0.0.1 %s %s\n8.8.8.8 %s %s\n", lead, breach.RebindName, hostsMarker, breach.RebindName, hostsMarker)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	t.Cleanup(func() {
		if err := dropOurs(); err != nil {
			t.Errorf("removing the suite's lines from %s: %v", hostsFile, err)
		}
	})
	if err != nil {
		notMeaningful(t, err)
		return false
	}
	return true
}

// breachDaemons runs every attempt inside the receiver, the worker and
// the courier, reached the way an attacker would reach them: a crafted
// request to the receiver's port (no signature needed: the backdoor
// stands for a bug in request handling), a crafted job file for the
// worker, a crafted result file for the courier. Breach builds of the
// daemons start exactly as in production (their user, Landlock,
// seccomp; the courier with its bot token, its configuration on
// standard input), one process per attempt, since seccomp kills the
// process on the worst ones. The receiver attacks the world's worker,
// the worker and the courier the world's receiver.
func breachDaemons(t *testing.T, bin, layer string) map[string][]breach.Result {
	opt := ablationOptions(bin, layer)
	opt.Bot = true // the courier's bot token, in reach of its attacker
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
	for _, d := range []string{breach.Receiver, breach.Worker, breach.Courier} {
		victim := w.Worker.Cmd.Process.Pid
		switch d {
		case breach.Worker:
			// The world's worker would claim the crafted jobs itself.
			if err := w.Worker.Stop(); err != nil {
				t.Fatalf("stopping the worker: %v", err)
			}
			victim = w.Receiver.Cmd.Process.Pid
		case breach.Courier:
			// Likewise the world's courier the crafted results (it
			// relayed the worker's alerts until now).
			if err := w.Courier.Stop(); err != nil {
				t.Fatalf("stopping the courier: %v", err)
			}
			victim = w.Receiver.Cmd.Process.Pid
		}
		for _, a := range breach.Catalog {
			pl, plants := planted[a.ID]
			plants = plants && pl.domain == d && layer == ""
			quarantined := countAlerts(w, "quarantined", "file="+pl.file)
			outcome, stopped := daemonAttempt(t, bin, d, cfgPath, cwd, env, victim, layout, recvUID, addr, nil, a.ID)
			if outcome == "" && stopped != "" {
				// Stopped (SIGINT or SIGTERM) by something no attempt
				// did, seen once on CI at the worker's first attempt;
				// the daemon now logs the signal. Once more, and say so;
				// a second time is a failure. (Not a process group of its
				// own: a group leader's setsid fails with EPERM whatever
				// the filter, and B70's ablation would prove nothing.)
				t.Logf("%s %s: the daemon was stopped (%s) before its backdoor opened; trying once more", d, a.ID, stopped)
				outcome, stopped = daemonAttempt(t, bin, d, cfgPath, cwd, env, victim, layout, recvUID, addr, nil, a.ID)
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
	out[receiverSocket] = breachReceiverSocket(t, bin, layer, w, cfg, cwd, env, layout, recvUID)
	return out
}

// receiverSocket names the receiver in Socket Mode in a run's results.
const receiverSocket = "receiver-socket"

// breachReceiverSocket runs every attempt inside the receiver in Socket
// Mode (with layer switched off, as the other runs): its own Landlock
// rules (no bind right) and seccomp domain (no accept). The backdoor
// opens on a slash command envelope, as a bug in envelope handling
// would: the simulated Slack's Socket Mode server delivers one whose
// text carries the attempt. The attacks aim at the world's downloader.
func breachReceiverSocket(t *testing.T, bin, layer string, w *World, cfg []byte, cwd string, env []string, layout spool.Layout, recvUID int) []breach.Result {
	sm, err := NewSocketMode(w.Slack)
	if err != nil {
		t.Fatal(err)
	}
	defer sm.Close()
	tokenPath := filepath.Join(w.Dir, "breach_app_token")
	if err := os.WriteFile(tokenPath, []byte(sm.AppToken+"\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	if recvUID >= 0 {
		os.Chown(tokenPath, recvUID, recvUID)
	}
	socketCfg := strings.Replace(string(cfg), "[receiver]\nmode = \"http\"\n", fmt.Sprintf("[receiver]\nmode = \"socket\"\napp_token_file = %q\n", tokenPath), 1)
	socketCfg = strings.Replace(socketCfg, "[testing]\n", fmt.Sprintf("[testing]\nslack_api_url = %q\n", sm.APIURL()), 1)
	if socketCfg == string(cfg) || !strings.Contains(socketCfg, "slack_api_url") {
		t.Fatal("couldn't make the Socket Mode configuration")
	}
	cfgPath := filepath.Join(w.Dir, "breach-socket.toml")
	if err := os.WriteFile(cfgPath, []byte(socketCfg), 0o644); err != nil {
		t.Fatal(err)
	}
	// Another daemon's user, as in HTTP mode (its worker is stopped by
	// now): the downloader. (The world's receiver is this one's user.)
	victim := w.Downloader.Cmd.Process.Pid
	var out []breach.Result
	for _, a := range breach.Catalog {
		outcome, stopped := daemonAttempt(t, bin, breach.Receiver, cfgPath, cwd, env, victim, layout, recvUID, "", sm, a.ID)
		if outcome == "" {
			t.Logf("receiver (Socket Mode) %s: no outcome (%s); trying once more", a.ID, stopped)
			outcome, stopped = daemonAttempt(t, bin, breach.Receiver, cfgPath, cwd, env, victim, layout, recvUID, "", sm, a.ID)
		}
		if outcome == "" {
			t.Fatalf("receiver (Socket Mode) %s: the backdoor never opened (%s)", a.ID, stopped)
		}
		if i := strings.LastIndexByte(outcome, '\n'); i >= 0 {
			outcome = outcome[i+1:]
		}
		r := breach.Result{ID: a.ID, What: a.What, Layers: a.Layers, Expect: a.Expect, Outcome: outcome}
		breach.Judge(&r, breach.Receiver)
		out = append(out, r)
	}
	logResults(t, receiverSocket, layer, out)
	return out
}

// attemptWait bounds one attempt in daemonAttempt (its daemon is killed
// after it) and the wait for the previous one's connection to close: a
// hang guard, which an attempt reaches only if it never ends.
const attemptWait = 2 * time.Minute

// daemonAttempt starts a breach build of daemon d and triggers attempt id
// in it: a crafted request for the receiver, a crafted job file for the
// worker, a crafted result file for the courier. It returns the
// attempt's outcome, or "" and how the daemon ended without running it
// (its last log line).
func daemonAttempt(t *testing.T, bin, d, cfgPath, cwd string, env []string, victim int, layout spool.Layout, recvUID int, addr string, sm *SocketMode, id string) (outcome, stopped string) {
	cmd := exec.Command(filepath.Join(bin, "ytkeep-"+d), "-config", cfgPath)
	if d == breach.Courier {
		// As from its unit: the configuration on standard input (the
		// courier is not in the group the file is readable by).
		f, err := os.Open(cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close() // the daemon has its own copy once started
		cmd = exec.Command(filepath.Join(bin, "ytkeep-"+d), "-config", "-")
		cmd.Stdin = f
		crafted := clearCourierInbox(t, layout)
		// A crafted result file, as a compromised worker would leave it:
		// its user's, 0644 as its outbox writes them, where the courier
		// checks the owner and reads the bytes (the backdoor) before it
		// parses anything.
		p := filepath.Join(layout.Results(), job.NewID()+".done.result")
		if err := os.WriteFile(p, []byte(`{"`+breach.TriggerKey+id+`"}`), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, crafted, SpoolGID); err != nil {
			t.Fatal(err)
		}
	}
	cmd.Dir = cwd
	cmd.Env = append(slices.Clone(env), "YTKEEP_BREACH_SERVER="+fmt.Sprint(victim))
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
	if sm != nil {
		// The previous attempt's connection must be gone, so that the one
		// counted next is this process's.
		if err := waitFor(attemptWait, func() bool { return sm.Connections() == 0 }); err != nil {
			t.Fatalf("receiver (Socket Mode) %s: the previous attempt's connection is still open", id)
		}
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// The trigger is sent until this attempt's daemon has ended (ended
	// is closed on return, after it was reaped), never to the next one.
	ended, cancel := context.WithCancel(context.Background())
	defer cancel()
	switch {
	case d == breach.Receiver && sm != nil:
		// A slash command envelope, once the receiver has connected
		// (the previous attempt's connection has closed: its process
		// ended).
		go func() {
			if sm.WaitConnected(ended, 1) == nil {
				sm.Send(ended, Invocation{User: User, Channel: Channel, Command: "/ytkeep", Text: breach.TriggerKey + id})
			}
		}()
	case d == breach.Receiver:
		go craftedRequest(ended, "http://"+addr+"/slack/commands?"+breach.TriggerKey+id)
	}
	var err error
	timedOut := false
	select {
	case err = <-done:
	case <-time.After(attemptWait):
		cmd.Process.Kill()
		err = <-done
		timedOut = true
	}
	outcome = strings.TrimSpace(stdout.String())
	if timedOut && outcome == "" {
		// The suite's own kill is no outcome of the attempt: the
		// backdoor never opened, or the attempt never ended.
		return "", fmt.Sprintf("no outcome within %v; killed by the suite", attemptWait)
	}
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

// clearCourierInbox removes what the last courier attempt left (its
// crafted result, claimed into courier/claimed/, which a courier handles
// again at start; B11's and B35's files) and returns the uid the courier
// takes results from: the worker's, the owner of worker/.
func clearCourierInbox(t *testing.T, layout spool.Layout) (workerUID int) {
	t.Helper()
	for _, dir := range []string{layout.Results(), layout.Courier("claimed")} {
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.Remove(layout.Courier(filepath.Join("replies", breach.CourierRecord))); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	uid, err := spool.Owner(layout.Worker(""))
	if err != nil {
		t.Fatal(err)
	}
	return uid
}

// planted are the attempts that leave a hostile file for the other
// daemon, which must quarantine it with an alert: a forged job from the
// receiver, a forged result from the worker.
var planted = map[string]struct{ domain, file string }{
	"B10": {breach.Receiver, "aaaaaaaaaaaaaaaaaaaaaaaaaa.job"},
	"B11": {breach.Worker, "aaaaaaaaaaaaaaaaaaaaaaaaaa.done.result"},
}

// craftedRequest posts to url until the daemon, still starting, takes it,
// or ctx ends (the daemon ended without listening).
func craftedRequest(ctx context.Context, url string) {
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader("text=x"))
		if err != nil {
			return
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			return
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return // the daemon took it, and died on it
		}
		select {
		case <-ctx.Done():
			return // the daemon ended without listening
		case <-time.After(50 * time.Millisecond):
		}
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
		case strings.HasPrefix(r.Outcome, breach.NotHere):
			mark = "not applicable"
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
// processes under every layer. The world is the test mode's, whose only
// difference from production is the egress proxy's one loopback origin
// (the media server, through which the report leaves): the children's
// Landlock rules name the proxy's port alone, as in production (B41,
// B90), and the proxy refuses every other loopback destination (B93).
func breachDownloader(t *testing.T, bin, layer string) []breach.Result {
	attackDir := t.TempDir()
	OpenUp(attackDir)
	OpenUp(filepath.Dir(attackDir))
	runner := filepath.Join(bin, "ytkeep-breach")
	script := filepath.Join(attackDir, "yt-dlp")
	targetsFile := filepath.Join(attackDir, "targets.json")
	rebound := rebindName(t)

	// The world needs the script's path before it starts; the targets need
	// the world's paths: the script reads them when it runs a download.
	if err := os.WriteFile(script, []byte(fmt.Sprintf(hostileYtDlp, targetsFile, runner)), 0o755); err != nil {
		t.Fatal(err)
	}
	opt := ablationOptions(bin, layer)
	opt.YtDlp, opt.NoWorker, opt.AnyUser = script, true, true
	opt.ExtraWorker = fmt.Sprintf("extra_exec_paths = [%q, %q]\n", attackDir, bin)
	w := newWorld(t, opt)

	// The runner, inside a downloader, sends its findings over the only
	// channel it has: the egress proxy's tunnel to the media server.
	reports := make(chan []byte, 4)
	w.Media.Handle("POST /report", http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		select {
		case reports <- b:
		default:
		}
	}))
	env := targets(t, w, bin)
	env["YTKEEP_BREACH_DOMAIN"] = breach.Downloader
	env["YTKEEP_BREACH_DISK_BUDGET"] = fmt.Sprint(jobDiskBudget(t, w))
	env["YTKEEP_BREACH_REPORT_URL"] = w.Media.URL + "/report"
	envJSON, _ := json.Marshal(env)
	if err := os.WriteFile(targetsFile, envJSON, 0o644); err != nil {
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
		t.Fatalf("no report from inside the downloader\nworker log:\n%s", w.Worker.Log())
	}
	waitFinal(t, w, id)
	var results []breach.Result
	if err := json.Unmarshal(report, &results); err != nil {
		t.Fatalf("report: %v\n%s", err, report)
	}
	if len(results) < 40 {
		t.Fatalf("%d attempts, want at least 40", len(results))
	}
	for _, a := range breach.Catalog {
		if breach.OwnJob(a.ID) {
			results = append(results, ownJobAttempt(t, w, a))
		}
	}
	for _, r := range results {
		// Through the proxy, only its refusal is a block; anything else
		// but an escape means the attempt tested nothing.
		if slices.Contains(r.Layers, layerEgressProxy) && !r.Escaped && !strings.HasPrefix(r.Outcome, breach.ProxyRefused) {
			t.Errorf("downloader %s is inconclusive: %s", r.ID, r.Outcome)
		}
	}
	logResults(t, breach.Downloader, layer, results)
	if layer == "" {
		detectDownloader(t, w, results, rebound)
	}
	for _, id := range downloaderTellTales[layer] {
		if r, ok := find(results, id); !ok || !r.Escaped {
			t.Errorf("without %s, downloader %s was not an escape (%+v): the switch did not work, or something else stops it too (update downloaderTellTales and the threat model)", layer, id, r)
		}
	}
	return results
}

// Layers that no ablation run switches off: the egress proxy's policy
// and the worker's disk budget have no switch.
const (
	layerEgressProxy = "egress-proxy"
	layerDiskBudget  = "disk-budget"
)

// downloaderTellTales are escapes the downloader must show with a layer
// off, besides tellTales. None today: its direct connections (B48, B90)
// and UDP (B91), which one layer alone used to stop, have two now (the
// connect broker behind Landlock and seccomp). The broker's switch shows
// in who answers instead (brokerAnswers).
var downloaderTellTales = map[string][]string{}

// brokerAnswers are, for direct connections of the downloader, how the
// refusal must read with every layer (the broker's EPERM: it sees the
// call before Landlock does) and without the broker (Landlock's EACCES):
// proof that the broker's switch works, as no attempt escapes with the
// broker alone off.
var brokerAnswers = []struct{ id, with, without string }{
	{"B48", "EPERM", "EACCES"},
	{"B90", "EPERM", "EACCES"},
}

// jobDiskBudget is the bytes the world's worker lets one job directory
// hold: twice max_file_mb and 64 MiB (worker.diskBudget).
func jobDiskBudget(t *testing.T, w *World) int64 {
	cfg, err := os.ReadFile(w.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^max_file_mb = (\d+)$`).FindSubmatch(cfg)
	if m == nil {
		t.Fatalf("no max_file_mb in %s", w.ConfigPath)
	}
	mb, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return 2*mb<<20 + 64<<20
}

// ownJobAlert is, for each attempt that runs as a job of its own
// (breach.OwnJob), the alert its job must end with to count as blocked:
// B83 must be stopped by the worker's disk budget.
var ownJobAlert = map[string][]string{
	"B83": {": violation ", "reason=disk_budget"},
}

// ownJobAttempt runs attempt a as a download of its own, as the
// sandboxed process itself, and judges it by how that job ends: blocked
// only if the worker stopped it with the expected alert, an escape if
// the job ended any other way (its timeout, the attempt's own exit).
func ownJobAttempt(t *testing.T, w *World, a breach.Attempt) breach.Result {
	want, ok := ownJobAlert[a.ID]
	if !ok {
		t.Fatalf("%s runs as a job of its own but has no alert to judge it by", a.ID)
	}
	video := "ytk" + a.ID + "aaaaa"
	inv := w.Invocation("https://youtu.be/" + video)
	inv.User = "U0BREACH" + a.ID // one user each: the rate limit is per user
	_, id, status, err := w.Slack.Send(context.Background(), http.DefaultClient, w.Endpoint, inv)
	if err != nil || status != http.StatusOK {
		t.Fatalf("sending %s: %d %v", video, status, err)
	}
	// The job timeout (120 s) ends the job at the latest.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := w.Slack.WaitFor(ctx, id, Final); err != nil {
		t.Fatalf("%s: the job never ended: %v\nworker log:\n%s", a.ID, err, w.Worker.Log())
	}
	r := breach.Result{ID: a.ID, What: a.What, Layers: a.Layers, Expect: a.Expect}
	parts := append([]string{"video=" + video}, want...)
	if waitAlert(w, 30*time.Second, parts...) {
		r.Outcome = "job stopped, alerted: " + strings.Join(want[1:], " ")
		if l := alertField(w, "limit", parts...); l != "" {
			r.Outcome += " limit=" + l
		}
		r.Observable, r.Alerted = true, true
	} else {
		r.Outcome = "succeeded: its job ended without " + strings.Join(want, " ")
	}
	breach.Judge(&r, breach.Downloader)
	return r
}

// alertField returns the value of key=value in the first admin-channel
// alert line that contains every one of parts ("" if none).
func alertField(w *World, key string, parts ...string) string {
	for _, m := range w.AdminAlerts() {
		for _, line := range strings.Split(m, "\n") {
			ok := true
			for _, p := range parts {
				ok = ok && strings.Contains(line, p)
			}
			if !ok {
				continue
			}
			for _, f := range strings.Fields(line) {
				if v, found := strings.CutPrefix(f, key+"="); found {
					return strings.Trim(v, "`")
				}
			}
		}
	}
	return ""
}

// proxyReason is, for each attempt through the egress proxy, what the
// reason of one of its egress_denied alerts must contain: the refusal is
// for the right cause (B96's name was resolved, and refused for its
// loopback answer, which Go's resolver gives from /etc/hosts in the
// IPv4-mapped form).
var proxyReason = map[string][]string{
	"B92": {"reason=example.com is not an allowed host"},
	"B93": {"host=1.1.1.1", "reason=an IP address is not a host name"},
	"B94": {"reason=an IP address is not a host name"},
	"B95": {"host=metadata.google.internal", "reason=metadata.google.internal is not an allowed host"},
	"B96": {"reason=" + breach.RebindName + " resolves to a non-public address", "127.0.0.1"},
}

// detectDownloader checks the alerts for the downloader: every attempt
// that got its process killed, or that the egress proxy refused (it
// reports each refusal), runs again as a job of its own, this time as the
// sandboxed process itself (not a grandchild of the launcher), and the
// admin channel must get the violation or egress_denied alert, relayed by
// the worker through the spool and posted by the receiver. rebound says
// whether B96's name resolves to loopback here (rebindName).
func detectDownloader(t *testing.T, w *World, results []breach.Result, rebound bool) {
	for i := range results {
		r := &results[i]
		var parts []string
		switch {
		case strings.HasPrefix(r.Outcome, "killed by "):
			parts = []string{"signal=" + strings.TrimPrefix(r.Outcome, "killed by ")}
		case strings.HasPrefix(r.Outcome, breach.ProxyRefused):
			reason, ok := proxyReason[r.ID]
			if !ok {
				t.Fatalf("%s: the proxy refused it, but proxyReason does not say why it should", r.ID)
			}
			if r.ID == "B96" && !rebound {
				reason = []string{"reason=" + breach.RebindName + " does not resolve"}
			}
			parts = append([]string{": egress_denied "}, reason...)
		default:
			continue
		}
		r.Observable = true
		video := "ytk" + r.ID + "aaaaa"
		inv := w.Invocation("https://youtu.be/" + video)
		inv.User = fmt.Sprintf("U0BREACH%s", r.ID) // one user each: the rate limit is per user
		if _, _, status, err := w.Slack.Send(context.Background(), http.DefaultClient, w.Endpoint, inv); err != nil || status != http.StatusOK {
			t.Fatalf("sending %s: %d %v", video, status, err)
		}
		r.Alerted = waitAlert(w, time.Minute, append(parts, "video="+video)...) // a hang guard: the alert is expected
		if !r.Alerted {
			t.Errorf("downloader %s ended %q but no alert with %q reached the admin channel", r.ID, r.Outcome, parts)
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
  receiver, worker and downloader (three processes and users, every
  layer on); the "yt-dlp" they start is a hostile Python script that
  executes the attack runner. Each attempt runs in its own process inside
  the per-job sandbox, and the report leaves over the one channel a
  downloader has (its egress proxy, tunnelled to the media server).
  The network attempts run under the production policy: the children's
  one port is the proxy's, and the proxy allows no loopback destination
  but the test mode's media server. A direct connection counts as
  blocked only when the sandbox refuses it (EACCES, EPERM) or kills the
  process: a timeout, a refusal by the far end or a missing route means
  it was let out (the suite listens on 127.0.0.1:443 and :80, as root,
  so that B48 can connect). Through the proxy, only its refusal (403)
  is a block; the suite adds ` + "`/etc/hosts`" + ` lines for the
  test that give B96's allowed name a loopback answer. B83 ends the job it
  runs in, so it runs as a download of its own, judged by how that ends.
- **Receiver, worker, courier**: breach builds of the daemons start
  exactly as in production (their user, Landlock, seccomp) and run one
  attempt right after confinement, where they would next handle
  untrusted input (a crafted request, job file or result file: the
  courier's is the worker's user's, as it accepts no other); one
  process per attempt, since seccomp kills the process on the worst ones.
  The courier runs with its bot token and its configuration on standard
  input, as from its unit. Signals, tracing and /proc aim at another
  daemon: the receiver's at the worker, the worker's and the courier's
  at the receiver, the downloader's at the downloader daemon (the
  children's parent).

| id | attempt | layers meant to stop it | receiver | worker | courier | downloader |
|---|---|---|---|---|---|---|
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
		case r.Allowed && breach.Succeeded(r.Outcome):
			return "allowed: own right"
		case r.Expect == breach.Accepted && breach.Succeeded(r.Outcome):
			return "accepted risk"
		case strings.HasPrefix(r.Outcome, breach.NotHere):
			return "n/a"
		}
		return r.Outcome
	}
	total, escapes, na := 0, 0, 0
	for _, a := range breach.Catalog {
		layers := strings.Join(a.Layers, ", ")
		if layers == "" {
			layers = "—"
		}
		fmt.Fprintf(&b, "| %s | %s | %s |", a.ID, a.What, layers)
		for _, d := range domains {
			r, ok := byID[a.ID][d]
			if ok {
				total++
				if r.Escaped {
					escapes++
				}
				if strings.HasPrefix(r.Outcome, breach.NotHere) {
					na++
				}
			}
			fmt.Fprintf(&b, " %s |", cell(r, ok))
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "\n**%d attempts in %d domains (%d each), %d escapes.** An outcome is how the attempt ended: an errno, the process killed by the seccomp filter (SIGSYS), the egress proxy's answer. %d are n/a: their target exists in the downloader alone (its egress proxy, its job's disk budget). \"allowed: own right\" is an attempt that succeeded where it is the domain's own right (`breach.AllowedIn`); an own right refused anyway (an errno) is shown as such: the receiver and the courier read their credentials before they confine themselves, and Landlock refuses the files afterwards.\n", total, len(domains), len(breach.Catalog), escapes, na)
	b.WriteString(socketModeMarkdown(runs[""]))
	b.WriteString(detectionMarkdown(results))
	b.WriteString(ablationMarkdown(runs))
	return b.String()
}

// socketModeMarkdown reports the receiver's run in Socket Mode: its
// escapes, and the attempts whose outcome differs from HTTP mode's.
func socketModeMarkdown(r run) string {
	sock := r[receiverSocket]
	if len(sock) == 0 {
		return ""
	}
	escapes := 0
	var diff []string
	for _, s := range sock {
		if s.Escaped {
			escapes++
		}
		if h, ok := find(r[breach.Receiver], s.ID); ok && h.Outcome != s.Outcome {
			diff = append(diff, fmt.Sprintf("%s (HTTP mode: %s; Socket Mode: %s)", s.ID, h.Outcome, s.Outcome))
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n**The receiver in Socket Mode** (its own Landlock rules, without a bind right, and seccomp domain, without accept; the backdoor opened by a slash command envelope from the simulated Slack): %d attempts, %d escapes.", len(sock), escapes)
	if len(diff) > 0 {
		fmt.Fprintf(&b, " Outcomes that differ from HTTP mode: %s.", strings.Join(diff, "; "))
	}
	b.WriteString("\n")
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
its process killed by a signal (seccomp's SIGSYS), a hostile file left
for another daemon (B10 from the receiver, for the worker; B11 from the
worker, for the courier), which must quarantine it with an alert, a destination the egress proxy refused
(it reports each refusal: ` + "`egress_denied`" + `, with the reason, which the
suite checks), or a job the worker stopped for its disk budget (B83). For
the daemons (the receiver, the worker, the courier), systemd
runs the unit's ` + "`ExecStopPost=… -exit-alert`" + ` after the kill (the
suite runs the same command with the same environment); for the
downloader, each observable attempt runs again as the sandboxed process
itself (in a job of its own, as the worker allows a job five refusal
alerts a minute), and the launcher reports its signal or its refusals to
the worker. Every alert
must reach the admins' Slack channel (the simulated Slack's incoming
webhook): the worker's cross the spool as alert files, the courier posts
them; the receiver and the courier post their own. A missing alert fails
` + "`make test`" + `.

An attempt refused with an error (EACCES, EPERM) is not observable by
ytkeep: Landlock and seccomp refuse silently. The kernel's audit log has
the seccomp kills (type 1326) on any kernel, and Landlock denials on
Linux 6.15+ when audit is on; docs/audit.md shows how to forward them.

| domain | attempts | observable | alerted | detection rate | alerted attempts |
|---|---|---|---|---|---|
`)
	to, ta := 0, 0
	for _, d := range domains {
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

The catalog again, in all four domains and in the receiver in Socket
Mode, with one layer switched off at a time (breach builds only:
` + "`confine.Ablated`" + ` is a constant false in release builds; the
escapes column counts the four domains, not the receiver's second run
in Socket Mode). An attempt that escapes then is stopped by that layer
alone in that domain. Without Unix users the daemons and the downloader
run as root (with one owner for the whole tree, or the owner checks
would refuse every spool file). Each run must show its tell-tale escape
(` + "`tellTales`" + `), or the suite fails: a switch that changed nothing
would otherwise look like "no single-layer dependence".

| layer off | escapes | receiver | worker | courier | downloader | receiver (Socket Mode) |
|---|---|---|---|---|---|---|
`)
	type key struct{ id, layer string }
	single := map[key][]string{}
	for _, layer := range ablations[1:] {
		n := 0
		cells := map[string][]string{}
		for _, d := range append(slices.Clone(domains), receiverSocket) {
			for _, r := range runs[layer][d] {
				if r.Escaped {
					if d != receiverSocket {
						n++ // the four domains, not the second run
					}
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
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s |\n", layer, n, cell(breach.Receiver), cell(breach.Worker), cell(breach.Courier), cell(breach.Downloader), cell(receiverSocket))
	}
	b.WriteString(unswitchedMarkdown())
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

// switchedWith names, for layers of the catalog that are part of an
// ablated one, the ablation that switches them off.
var switchedWith = map[string]string{"landlock-scope": confine.LayerLandlock}

// unswitched says, for each layer of the catalog that no ablation run
// switches off, what stands in for the missing measurement.
var unswitched = map[string]string{
	layerEgressProxy: "the proxy's policy (internal/egress) has no switch. Its unit tests check every refusal with a resolver and a dialer of their own (`egress/TestProxyRefuses`). Behind it, only the downloader daemon's own Landlock ports (443, 53, the test media port): they would stop B93's receiver port, nothing on 443",
	layerDiskBudget:  "the worker's walk of the job directory (`worker/TestDiskUse`) has no switch; behind it, RLIMIT_FSIZE per file (B80) and the file system's quota, if the operator sets one",
	"nnp":            "no_new_privs is set with or without seccomp and has no switch of its own; B32 checks it against a setuid-root program that works without it",
	"spool-checks":   "the worker's claim checks (`spool/TestClaimHostile`)",
	"sysctl":         "host settings (net.mptcp.enabled, net.ipv4.tcp_fastopen), not switched here; ytkeep doctor warns while they are on",
	"systemd":        "the units are not run by this suite (`make systemd-test`)",
}

// unswitchedMarkdown lists the layers of the catalog that no ablation run
// switches off, with the attempts that name them: their "no escape" in
// every run says nothing about what else would stop them.
func unswitchedMarkdown() string {
	ablated := map[string]bool{}
	for _, l := range ablations[1:] {
		ablated[l] = true
	}
	var layers, only []string
	named := map[string][]string{}
	for _, a := range breach.Catalog {
		switched := false
		for _, l := range a.Layers {
			if ablated[l] || ablated[switchedWith[l]] {
				switched = true
				continue
			}
			if named[l] == nil {
				layers = append(layers, l)
			}
			named[l] = append(named[l], a.ID)
		}
		if !switched && len(a.Layers) > 0 {
			only = append(only, a.ID)
		}
	}
	if len(layers) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, `
### Layers without a switch

No run switches these off, so the attempts that name them were never
tried without them: that they were blocked in every run does not show
a second layer. The attempts that name no other layer (%s) rely on
them alone as far as this suite knows.

| layer | attempts naming it | instead |
|---|---|---|
`, strings.Join(only, " "))
	for _, l := range layers {
		note := unswitched[l]
		if note == "" {
			note = "no switch"
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", l, strings.Join(named[l], " "), note)
	}
	return b.String()
}

// secondLayer says, for attempts that one layer alone stops in this
// suite, what else stands behind it (in production or in the code), or
// why nothing does. docs/threat-model.md carries the same list.
var secondLayer = map[string]string{
	"B05": "the downloader's own user (ytkeep-dl) is in none of the spool's groups; its unit binds only spool/work",
	"B06": "as B05", "B07": "a job directory is the downloader group's only while its download runs (0700 otherwise)", "B10": "as B05; the worker checks the job file's owner and content", "B11": "in the downloader, as B05. In the receiver (whose group, the spool's, may create files in results/), the courier's owner check: it claims only the worker's user's files, and quarantines any other with an alert (courier/TestResultsOnlyFromTheWorker); the receiver's AppArmor profile denies results/ (not enforced on the test kernels)",
	"B08": "DAC: the configuration is root's and the spool group's (0640); the downloader gets it from systemd on standard input and keeps /dev/null there; its unit's root does not hold it (testbed/TestDownloaderConfigOnStdin, TestSystemd)",
	"B12": "as B05; the worker copies only its own job's output under a name it builds", "B13": "as B05", "B14": "as B07",
	"B09": "it is what the DAC layer means; running as root, every other attempt stays blocked by Landlock and seccomp; systemd User= (units)",
	"B17": "systemd PrivateTmp=yes and the empty RootDirectory= (units: TestSystemd checks that the downloader's /tmp is its own)",
	"B21": "the child jail's seccomp filter refuses symlink and link calls (confine/TestChildJail); the worker opens outputs with O_NOFOLLOW and keeps regular files only", "B22": "the worker refuses outputs with more than one link (and copies, never renames, into downloads/)",
	"B23": "the child jail refuses mknod (confine/TestChildJail); the worker's output checks (regular files only)",
	"B24": "the worker's claim: rename into its private dir, then O_NOFOLLOW, regular file, one link (spool/TestClaimHostile)",
	"B25": "the next job's directory is the worker's (0700) until its download starts; each job has its own HOME, and yt-dlp runs with --ignore-config and --no-cache-dir", "B30": "the child jail refuses every execute bit on what a download writes (chmod, and opens that create), so the kernel's DAC check refuses to run it (confine/TestChildJail)",
	"B40": "in the downloader, the connect broker: the server refuses every connect but the child's own proxy port (sandbox/TestBrokerRefusesDirectConnections); in the receiver and the courier, none in-process: their Landlock ports are their only network rule", "B41": "as B40",
	"B43": "sysctl net.mptcp.enabled=0 where nothing needs MPTCP (ytkeep doctor warns); none in-process: Landlock's TCP rules do not cover MPTCP",
	"B52": "the child jail refuses kill, tgkill, sigqueue and pidfd_open naming the server, its group or every process, and the connect broker a signal to any of its thread ids (confine/TestChildJail, sandbox/TestBrokerAnswers)",
	"B98": "in the downloader, none in-process: the downloads run as the server's user, and neither Landlock nor the units refuse prlimit (systemd puts it in @default); seccomp refuses it for any process but the caller, in the daemons' and the downloads' filters. In the other daemons, DAC (another user)", "B53": "the downloader daemon is non-dumpable, so its /proc files are root's (confine/TestNoDumpLayer); systemd ProtectProc=invisible (units)", "B54": "none needed: the process's own memory",
	"B63": "systemd KeyringMode=private (units)", "B68": "systemd SystemCallArchitectures=native (units)",
	"B70": "the downloader daemon is its children's subreaper and kills what left the group before it answers (sandbox/TestEscapedProcessIsKilled); systemd kills the whole cgroup (units)", "B74": "as B70", "B71": "systemd LockPersonality=yes (units)",
	"B80": "the worker's size check on the result and the downloads disk budget",
	"B33": "none in-process: Landlock's execute right is checked on paths and a memfd has none; the host sysctl vm.memfd_noexec=2",
	"B73": "systemd RestrictNamespaces=yes (units)",
	"B32": "systemd NoNewPrivileges=yes and an empty CapabilityBoundingSet= (units); in the daemons, seccomp kills exec",
	"B82": "systemd MemoryMax= (units; not run here)", "B81": "systemd TasksMax= (units; not run here)",
	"B47": "in the downloader, the connect broker (as B40); the proxy refuses the same destination when asked (B94). In the receiver and the courier, none: their Landlock ports (443, 53) are their network rules",
	"B48": "as B47; the proxy refuses loopback when asked (B93)", "B49": "as B47", "B99": "as B47: in the receiver and the courier, port 80 is refused by Landlock's port rules alone", "B90": "as B47; the proxy allows the media server by test configuration only",
	"B91": "in the downloader, the connect broker refuses every socket but TCP. In the worker, none in-process: Landlock ABI 7 has no UDP rules; the unit's PrivateNetwork=yes (units), and its AppArmor profile allows no datagram socket (not enforced on the test kernels)",
	"B97": "none in-process in the daemons: a send with MSG_FASTOPEN connects without passing Landlock's connect check (landlock-lsm/linux issue 41); the host sysctl net.ipv4.tcp_fastopen without its client bit (1) refuses such a send; in the worker, the unit's PrivateNetwork=yes. In the downloader, the connect broker refuses it",
}
