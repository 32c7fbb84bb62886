//go:build systemd

package testbed

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// units are the services ytkeep ships, sockets its socket units: every
// file in deploy/systemd.
var units, sockets = shipped("service"), shipped("socket")

func shipped(kind string) []string {
	paths, _ := filepath.Glob("../../deploy/systemd/*." + kind)
	var us []string
	for _, p := range paths {
		us = append(us, filepath.Base(p))
	}
	return us
}

// TestSystemd installs ytkeep's Debian package (make deb) into a Debian 12
// system booted with its own systemd, exactly as the README tells an
// administrator to, configures it against the simulated Slack and media
// server on loopback, and checks that a slash command is served end to
// end by the installed units; at the end it removes and purges the
// package. Run with make systemd-test (as root); it prints the figures.
func TestSystemd(t *testing.T) {
	needContainerTools(t)
	if len(units) < 2 {
		t.Fatalf("deploy/systemd has %d units", len(units))
	}
	src, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"ytkeep", "ytkeep-receiver", "ytkeep-worker", "ytkeep-downloader", "ytkeep-courier"} {
		if _, err := FindBinary(filepath.Join(src, "bin"), b); err != nil {
			t.Fatal(err)
		}
	}
	deb := buildDeb(t, src)
	c := boot(t, rootfs(t), src)
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := c.run("journalctl --no-pager -o short-monotonic -n 200 -u 'ytkeep-*'")
			t.Logf("the units' journal:\n%s", out)
		}
	})

	// The world outside: Slack and YouTube, on the host's loopback, which
	// the container shares.
	clip := filepath.Join(t.TempDir(), "clip.mp4")
	if err := MakeClip("ffmpeg", clip, 3); err != nil {
		t.Fatal(err)
	}
	media, err := ServeMedia(clip)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(media.Close)
	slack, err := NewSlack(Team)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(slack.Close)
	listen, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}

	// README, "Install on a server": the dependencies (in the image
	// already, so this only checks them: bookworm-backports' yt-dlp) and
	// the package, with apt, as root.
	t.Logf("dependencies:\n%s", c.must("cd /src && ./scripts/ensure-deps.sh && yt-dlp --version"))
	copyInto(t, deb, c.path("/root/"+filepath.Base(deb)))
	install := "DEBIAN_FRONTEND=noninteractive apt-get install -y -q /root/" + filepath.Base(deb)
	t.Logf("install:\n%s", c.must(install))
	// The package starts and enables nothing: the admin does, configured.
	for _, u := range append(slices.Clone(sockets), units...) {
		if got, _ := c.run("systemctl is-enabled " + u + "; systemctl is-active " + u); strings.Join(strings.Fields(got), " ") != "disabled inactive" {
			t.Errorf("%s after the install: %q, want disabled and inactive", u, got)
		}
	}
	// The configuration is the spool group's, not the downloader's; an
	// earlier install's (0644, root's group) is put right by the next.
	const cfgMode = "stat -c '%a %U %G' /etc/ytkeep/ytkeep.toml"
	if got := c.must(cfgMode); got != "640 root ytkeep-spool" {
		t.Errorf("installed configuration: %s, want 640 root ytkeep-spool", got)
	}
	// An upgrade from a receiver that read results itself: what it had
	// claimed goes to the courier; a link planted among it (the receiver
	// owns the directory) moves no one's file and changes no mode.
	const claimed = "/var/spool/ytkeep/receiver/claimed"
	c.must("install -d -o ytkeep-recv -m 0700 " + claimed +
		" && printf x > " + claimed + "/aaaaaaaaaaaaaaaaaaaaaaaaaa.done.result && chown ytkeep-work:ytkeep-spool " + claimed + "/aaaaaaaaaaaaaaaaaaaaaaaaaa.done.result" +
		" && chmod 0640 " + claimed + "/aaaaaaaaaaaaaaaaaaaaaaaaaa.done.result" +
		" && printf secret > /root/bbbbbbbbbbbbbbbbbbbbbbbbbb.done.result && chmod 0600 /root/bbbbbbbbbbbbbbbbbbbbbbbbbb.done.result" +
		" && ln -s /root/bbbbbbbbbbbbbbbbbbbbbbbbbb.done.result " + claimed + "/bbbbbbbbbbbbbbbbbbbbbbbbbb.done.result" +
		" && ln -s /etc/ytkeep/bot_token " + claimed + "/cccccccccccccccccccccccccc.alert")
	// The package installed again over the existing install (the same
	// version: dpkg runs postinst as for an upgrade).
	again := c.must("chmod 0644 /etc/ytkeep/ytkeep.toml && chgrp root /etc/ytkeep/ytkeep.toml && " +
		"DEBIAN_FRONTEND=noninteractive apt-get install --reinstall -y -q /root/" + filepath.Base(deb))
	var moved []string
	for _, l := range lines(again) {
		if strings.HasPrefix(l, "Handing ") || strings.HasPrefix(l, "Not a result") {
			moved = append(moved, l)
		}
	}
	t.Logf("installed again over it (postinst as for an upgrade):\n%s", strings.Join(moved, "\n"))
	if got := c.must("stat -c '%a %U' /var/spool/ytkeep/results/aaaaaaaaaaaaaaaaaaaaaaaaaa.done.result"); got != "644 ytkeep-work" {
		t.Errorf("the old receiver's claimed result in results/: %s, want 644 ytkeep-work", got)
	}
	for f, want := range map[string]string{"/root/bbbbbbbbbbbbbbbbbbbbbbbbbb.done.result": "600 root", "/etc/ytkeep/bot_token": "400 root"} {
		if got := c.must("stat -c '%a %U' " + f); got != want {
			t.Errorf("%s after the upgrade: %s, want %s (a planted link was followed)", f, got, want)
		}
	}
	// The test result holds no record: out of the courier's way.
	c.must("rm /var/spool/ytkeep/results/aaaaaaaaaaaaaaaaaaaaaaaaaa.done.result && rm -rf /var/spool/ytkeep/.upgrade.*")
	if got := c.must(cfgMode); got != "640 root ytkeep-spool" {
		t.Errorf("configuration after installing over a 0644 one: %s, want 640 root ytkeep-spool", got)
	}
	// HTTP mode ("HTTP mode instead"): the simulated Slack posts signed
	// commands. The app-level token's file stays as the package made it,
	// empty: the unit loads it as a credential all the same, and an HTTP
	// receiver must start with it so.
	if got := c.must("stat -c '%a %U %s' /etc/ytkeep/app_token"); got != "400 root 0" {
		t.Errorf("installed app token file: %s, want 400 root 0 (empty)", got)
	}
	// The signing secret; the alert webhook (the simulated admins'
	// channel); the mode and the allowlists in the configuration, and for
	// this test the loopback stand-ins for Slack and YouTube.
	writeInto(t, c.path("/etc/ytkeep/signing_secret"), slack.Secret+"\n")
	writeInto(t, c.path("/etc/ytkeep/alert_webhook"), slack.URL+"/response/"+AdminChannel+"\n")
	cfgPath := c.path("/etc/ytkeep/ytkeep.toml")
	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	edited := replaceLines(t, string(cfg), map[string]string{
		`mode = "socket"`:                    `mode = "http"`,
		`listen = "127.0.0.1:3000"`:          fmt.Sprintf("listen = %q", listen),
		`allowed_teams = ["T0123456789"]`:    fmt.Sprintf("allowed_teams = [%q]", Team),
		`allowed_channels = ["C0123456789"]`: fmt.Sprintf("allowed_channels = [%q]", Channel),
		`allowed_users = ["U0123456789"]`:    fmt.Sprintf("allowed_users = [%q]", User),
	})
	// Metrics on, in the directory the package's tmpfiles.d makes (the
	// example's [metrics] keys, as an admin edits them): each unit must
	// write its own file from inside its sandbox.
	edited = replaceLines(t, edited, map[string]string{
		`dir = ""`:             `dir = "/var/lib/ytkeep/metrics"`,
		`interval_seconds = 5`: `interval_seconds = 1`,
	})
	edited += fmt.Sprintf("\n[testing]\nmedia_base_url = %q\nloopback_response_port = %s\n", media.BaseURL(), slack.Port())
	writeInto(t, cfgPath, edited)
	// Step 7, doctor: no FAIL.
	doctor, err := c.run("ytkeep doctor -config /etc/ytkeep/ytkeep.toml")
	t.Logf("ytkeep doctor:\n%s", doctor)
	if err != nil {
		t.Fatalf("ytkeep doctor failed: %v", err)
	}
	if !strings.Contains(doctor, "[OK  ] configuration /etc/ytkeep/ytkeep.toml is root's, for the spool group") {
		t.Errorf("doctor does not find the configuration the spool group's alone")
	}
	if !strings.Contains(doctor, "[OK  ] ytkeep-receiver.service: the files of its credentials exist (app_token, signing_secret, alert_webhook)") {
		t.Errorf("doctor does not find the receiver's credential files")
	}
	if strings.Contains(doctor, "app-level token") {
		t.Errorf("doctor checks the app-level token in HTTP mode")
	}
	// Step 8: enable and start.
	c.must("systemctl enable --now " + strings.Join(append(slices.Clone(sockets), units...), " "))
	for _, u := range units {
		waitActive(t, c, u, "")
	}
	base := "http://" + listen
	endpoint := base + "/slack/commands"
	waitHTTP(t, c, base+"/healthz")

	// A slash command, end to end.
	start := time.Now()
	reply, id := sendTo(t, slack, endpoint, "https://youtu.be/dQw4w9WgXcQ")
	msgs := waitReply(t, c, slack, id, Final)
	t.Logf("slash command: ack %q; final %q after %.1f s", reply, msgs[len(msgs)-1], time.Since(start).Seconds())
	if !strings.HasPrefix(msgs[len(msgs)-1], ":white_check_mark:") {
		t.Fatalf("the download failed: %q", msgs)
	}
	stored := c.must("ls -l /var/lib/ytkeep/downloads")
	if !strings.Contains(stored, "dQw4w9WgXcQ") {
		t.Fatalf("no stored file for the video:\n%s", stored)
	}
	t.Logf("stored:\n%s", stored)
	// Each unit's metrics file, its user's, written under its sandbox;
	// the receiver's counts the command.
	for d, user := range map[string]string{"receiver": "ytkeep-recv", "worker": "ytkeep-work", "downloader": "ytkeep-dl", "courier": "ytkeep-courier"} {
		f := "/var/lib/ytkeep/metrics/" + d + "/ytkeep_" + d + ".prom"
		want := "ytkeep_process_resident_memory_bytes"
		if d == "receiver" {
			want = `ytkeep_commands_total{daemon="receiver",outcome="accepted"`
		}
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) { // a hang guard
			b, err := os.ReadFile(c.path(f))
			if err == nil && strings.Contains(string(b), want) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s holds no %s (%v):\n%s", f, want, err, b)
			}
		}
		if got := c.must("stat -c '%U %a' " + f); got != user+" 644" {
			t.Errorf("%s: %s, want %s 644", f, got, user)
		}
	}
	t.Logf("metrics: each unit writes its own file under /var/lib/ytkeep/metrics")

	checkDownloaderView(t, c)

	// Exposure scores, as systemd 252 computes them for the running units.
	for _, u := range units {
		out, _ := c.run("systemd-analyze security --no-pager " + u)
		score, ok := exposure(out, u)
		if !ok {
			t.Fatalf("no exposure score for %s:\n%s", u, out)
		}
		t.Logf("exposure (online, systemd in the container): %s %.1f", u, score)
		if score > 1.0 {
			t.Errorf("%s: exposure %.1f > 1.0:\n%s", u, score, out)
		}
	}

	// The running downloader is a user of its own; its socket is root's,
	// for its group alone.
	if out, _ := c.run("ytkeep doctor -config /etc/ytkeep/ytkeep.toml"); !strings.Contains(out, "[OK  ] the downloader's socket /run/ytkeep-downloader/launcher.sock is root's") {
		t.Errorf("doctor does not find the downloader's socket root's:\n%s", out)
	}
	uids := map[string]bool{}
	for _, u := range units {
		uid := strings.TrimSpace(c.must("stat -c %u /proc/" + c.unitProperty(u, "MainPID")))
		if uid == "0" || uids[uid] {
			t.Errorf("%s runs as uid %s: root, or another unit's user", u, uid)
		}
		uids[uid] = true
	}

	// Kill each daemon: Restart= brings it back, and the ExecStopPost=
	// alert reaches the admins' channel.
	for _, u := range units {
		name := strings.TrimSuffix(u, ".service")
		before := c.unitProperty(u, "MainPID")
		restarts := c.unitProperty(u, "NRestarts")
		alerts := len(slack.Messages(AdminChannel))
		killed := time.Now()
		c.must("systemctl kill -s KILL " + u)
		waitActive(t, c, u, before)
		back := time.Since(killed)
		if got := c.unitProperty(u, "NRestarts"); got == restarts {
			t.Errorf("%s: NRestarts still %s after the kill", u, got)
		}
		parts := []string{"crashed", name, "SIGKILL"}
		if name == "ytkeep-downloader" {
			// It cannot write the spool: the worker, which loses its
			// connection, alerts (and restarts to reconnect).
			parts = []string{"crashed", name, "connection"}
		}
		ok := waitAdmin(slack, alerts, 60*time.Second, parts...)
		t.Logf("kill -9 %s: active again after %.1f s (pid %s → %s), alert delivered: %v", u, back.Seconds(),
			before, c.unitProperty(u, "MainPID"), ok)
		if !ok {
			t.Errorf("%s: no crash alert in the admins' channel; it has %q", u, slack.Messages(AdminChannel))
		}
	}
	// And the service still works after both restarts.
	_, id = sendTo(t, slack, endpoint, "https://www.youtube.com/watch?v=9bZkp7q19f0 audio")
	msgs = waitReply(t, c, slack, id, Final)
	if !strings.HasPrefix(msgs[len(msgs)-1], ":white_check_mark:") {
		t.Fatalf("after the restarts: %q", msgs)
	}

	sm, socketCfg := socketModeUnit(t, c, slack, edited)
	botTokenUnit(t, c, slack, sm, socketCfg)
	checkJournal(t, c)
	reportEnforcement(t, c)
	removeAndPurge(t, c)
}

// buildDeb builds the Debian package with make deb, as the README says,
// into a directory of the test's, and returns its path.
func buildDeb(t *testing.T, src string) string {
	t.Helper()
	version, err := os.ReadFile(filepath.Join(src, "VERSION"))
	if err != nil {
		t.Fatal(err)
	}
	dist := t.TempDir()
	cmd := exec.Command("make", "--no-print-directory", "-C", src, "deb", "DIST="+dist)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make deb: %v\n%s", err, out)
	}
	deb := filepath.Join(dist, "ytkeep_"+strings.TrimSpace(string(version))+"_amd64.deb")
	st, err := os.Stat(deb)
	if err != nil {
		t.Fatalf("make deb did not make %s: %v", deb, err)
	}
	t.Logf("package: %s (%.1f MiB)", filepath.Base(deb), float64(st.Size())/(1<<20))
	return deb
}

func copyInto(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// removeAndPurge removes the package from the running system, as the
// README says: apt remove stops and disables every unit (the daemons'
// processes end) and keeps the configuration, the spool, the videos and
// the users; purge with YTKEEP_PURGE_USERS=1 and YTKEEP_PURGE_DOWNLOADS=1
// leaves none of them.
func removeAndPurge(t *testing.T, c *container) {
	t.Helper()
	c.must("DEBIAN_FRONTEND=noninteractive apt-get remove -y -q ytkeep")
	for _, u := range append(slices.Clone(sockets), units...) {
		if got, _ := c.run("systemctl is-enabled " + u + "; systemctl is-active " + u); !strings.Contains(got, "inactive") || strings.Contains(got, "enabled") {
			t.Errorf("%s after apt remove: %q, want not enabled and inactive", u, got)
		}
	}
	// (No ps in the image: the processes' names from /proc.)
	if got := c.must(`for p in /proc/[0-9]*; do case "$(cat $p/comm 2>/dev/null)" in ytkeep*) echo "$p $(cat $p/comm)";; esac; done`); got != "" {
		t.Errorf("ytkeep processes after apt remove:\n%s", got)
	}
	if got, _ := c.run("find /etc/systemd/system -name 'ytkeep-*'"); strings.TrimSpace(got) != "" {
		t.Errorf("unit links after apt remove:\n%s", got)
	}
	c.must("test -s /etc/ytkeep/signing_secret && test -d /var/spool/ytkeep/incoming && ls /var/lib/ytkeep/downloads | grep -q dQw4w9WgXcQ && getent passwd ytkeep-recv")
	c.must("YTKEEP_PURGE_USERS=1 YTKEEP_PURGE_DOWNLOADS=1 DEBIAN_FRONTEND=noninteractive apt-get purge -y -q ytkeep")
	if got, _ := c.run("ls -d /etc/ytkeep /var/spool/ytkeep /var/lib/ytkeep /usr/bin/ytkeep* /usr/lib/systemd/system/ytkeep* 2>/dev/null; getent passwd | grep '^ytkeep'; getent group | grep '^ytkeep'"); strings.TrimSpace(got) != "" {
		t.Errorf("left after apt purge with YTKEEP_PURGE_USERS=1 YTKEEP_PURGE_DOWNLOADS=1:\n%s", got)
	}
	t.Logf("apt remove: every unit stopped and disabled; apt purge (users and videos asked): nothing left")
}

// socketModeUnit switches the installed receiver to Socket Mode, the
// example configuration's mode, as README's set-up does it: the app-level
// token in /etc/ytkeep/app_token, mode = "socket", a restart. (And the
// loopback stand-in for Slack's Web API, testing.slack_api_url.) A slash
// command arrives over the simulated WebSocket and is downloaded; the
// receiver's process holds sockets but none that listens; doctor checks
// the token; the unit still scores <= 1.0.
func socketModeUnit(t *testing.T, c *container, slack *Slack, cfg string) (*SocketMode, string) {
	sm, err := NewSocketMode(slack)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sm.Close)
	writeInto(t, c.path("/etc/ytkeep/app_token"), sm.AppToken+"\n")
	cfg = replaceLines(t, cfg, map[string]string{`mode = "http"`: `mode = "socket"`}) + fmt.Sprintf("slack_api_url = %q\n", sm.APIURL())
	writeInto(t, c.path("/etc/ytkeep/ytkeep.toml"), cfg)
	doctor, err := c.run("ytkeep doctor -config /etc/ytkeep/ytkeep.toml")
	if err != nil {
		t.Fatalf("ytkeep doctor in Socket Mode failed: %v\n%s", err, doctor)
	}
	if !strings.Contains(doctor, "[OK  ] app-level token") {
		t.Errorf("doctor does not check the app-level token in Socket Mode:\n%s", doctor)
	}
	const u = "ytkeep-receiver.service"
	before := c.unitProperty(u, "MainPID")
	c.must("systemctl restart " + u)
	waitActive(t, c, u, before)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := sm.WaitConnected(ctx, 1); err != nil {
		t.Fatalf("the receiver unit opened no Socket Mode connection: %v", err)
	}
	// Slack escapes the & of the link as &amp;.
	start := time.Now()
	reply, id, err := sm.Send(ctx, Invocation{User: User, Channel: Channel, Command: "/ytkeep",
		Text: "https://www.youtube.com/watch?v=jNQXAC9IVRw&amp;t=5s audio"})
	if err != nil || !strings.Contains(reply, "Queued") {
		t.Fatalf("slash command over Socket Mode: reply %q, err %v", reply, err)
	}
	msgs := waitReply(t, c, slack, id, Final)
	t.Logf("Socket Mode slash command: ack %q; final %q after %.1f s", reply, msgs[len(msgs)-1], time.Since(start).Seconds())
	if !strings.HasPrefix(msgs[len(msgs)-1], ":white_check_mark:") {
		t.Fatalf("the download failed: %q", msgs)
	}
	// Its sockets (the WebSocket to the simulated Slack, the journal's),
	// and the listening ones of its network namespace, TCP, UDP and Unix:
	// no overlap.
	pid := c.unitProperty(u, "MainPID")
	socks := strings.Fields(c.must(fmt.Sprintf(`for f in /proc/%s/fd/*; do readlink "$f"; done | sed -n 's/^socket:\[\([0-9]*\)\]$/\1/p'`, pid)))
	// Listening: TCP in LISTEN (0A), UDP bound but not connected (07: a
	// connected DNS query shows 01), Unix sockets flagged __SO_ACCEPTCON.
	listening := strings.Fields(c.must(fmt.Sprintf(`awk '$4 == "0A" {print $10}' /proc/%[1]s/net/tcp /proc/%[1]s/net/tcp6; `+
		`awk '$4 == "07" {print $10}' /proc/%[1]s/net/udp /proc/%[1]s/net/udp6; `+
		`awk '$4 == "00010000" {print $7}' /proc/%[1]s/net/unix`, pid)))
	if len(socks) == 0 {
		t.Fatalf("the receiver (pid %s) holds no socket: the check would show nothing", pid)
	}
	for _, in := range socks {
		if slices.Contains(listening, in) {
			t.Errorf("the Socket Mode receiver listens (socket inode %s)", in)
		}
	}
	t.Logf("Socket Mode receiver: %d sockets, none listening (%d listening sockets in its namespace)", len(socks), len(listening))
	out, _ := c.run("systemd-analyze security --no-pager " + u)
	score, ok := exposure(out, u)
	if !ok || score > 1.0 {
		t.Errorf("%s in Socket Mode: exposure %.1f (found %v) > 1.0:\n%s", u, score, ok, out)
	}
	t.Logf("exposure (online) in Socket Mode: %s %.1f", u, score)
	return sm, cfg
}

// botTokenUnit gives the installed courier the app's bot token, as the
// README says (/etc/ytkeep/bot_token, courier.status_messages = true,
// both units restarted; and the loopback stand-in for Slack's Web API):
// a slash command's job then gets its status message in the requester's
// DM, updated to the end, and the acknowledgement says so.
func botTokenUnit(t *testing.T, c *container, slack *Slack, sm *SocketMode, cfg string) {
	api, err := NewWebAPI(slack)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(api.Close)
	writeInto(t, c.path("/etc/ytkeep/bot_token"), api.BotToken+"\n")
	cfg = replaceLines(t, cfg, map[string]string{`status_messages = false`: `status_messages = true`}) + fmt.Sprintf("bot_api_url = %q\n", api.APIURL())
	writeInto(t, c.path("/etc/ytkeep/ytkeep.toml"), cfg)
	doctor, err := c.run("ytkeep doctor -config /etc/ytkeep/ytkeep.toml")
	if err != nil || !strings.Contains(doctor, "[OK  ] bot token /etc/ytkeep/bot_token is private") {
		t.Fatalf("ytkeep doctor with a bot token: %v\n%s", err, doctor)
	}
	for _, u := range []string{"ytkeep-courier.service", "ytkeep-receiver.service"} {
		before := c.unitProperty(u, "MainPID")
		c.must("systemctl restart " + u)
		waitActive(t, c, u, before)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := sm.WaitConnected(ctx, 1); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	// "send": the installed courier reads the stored file (its group,
	// the unit's read-only bind, Landlock) and uploads it into the DM.
	reply, _, err := sm.Send(ctx, Invocation{User: User, Channel: Channel, Command: "/ytkeep", Text: "https://youtu.be/9bZkp7q19f0 360p send"})
	if err != nil || !strings.Contains(reply, "direct messages") {
		t.Fatalf("acknowledgement with a bot token: %q, %v", reply, err)
	}
	dm := api.DMOf(User)
	err = api.WaitFor(ctx, func(a *WebAPI) bool {
		m := a.Messages(dm)
		return len(m) == 1 && strings.HasPrefix(m[0].Text, ":white_check_mark: Saved")
	})
	if err != nil {
		t.Fatalf("no final status message in the DM: %+v (%v)", api.Messages(dm), err)
	}
	m := api.Messages(dm)[0]
	t.Logf("status message in the DM after %.1f s, %d update(s): %q", time.Since(start).Seconds(), m.Updates, m.Texts)
	err = api.WaitFor(ctx, func(a *WebAPI) bool {
		for _, f := range a.Files() {
			if f.Completed && f.Channel == dm {
				return true
			}
		}
		return false
	})
	stored, rerr := os.ReadFile(c.path("/var/lib/ytkeep/downloads/9bZkp7q19f0-360p.mp4"))
	if err != nil || rerr != nil {
		t.Fatalf("no file uploaded into the DM: %+v (%v, %v)", api.Files(), err, rerr)
	}
	for _, f := range api.Files() {
		if sum := sha256.Sum256(stored); f.Completed && (f.Size != int64(len(stored)) || f.SHA256 != hex.EncodeToString(sum[:])) {
			t.Errorf("the uploaded file (%d bytes) is not the stored one (%d bytes)", f.Size, len(stored))
		}
		t.Logf("uploaded %s (%d bytes) into the DM, the stored file byte for byte", f.Name, f.Size)
	}
	if v := api.Violations(); len(v) != 0 {
		t.Errorf("Slack's limits broken: %q", v)
	}
}

// checkDownloaderView looks at the running downloader unit from the
// container's root: through /proc/PID/root, paths resolve in the unit's
// mount namespace and root directory, as for the unit's processes. The
// unit has a /tmp of its own, without what the system's /tmp holds
// (PrivateTmp=; B17 writes /tmp), and not the configuration file
// (RootDirectory= without it; B08 reads it): systemd passes it on standard
// input, which the daemon has replaced with /dev/null, and no process of
// the unit holds it open. Its output goes to the journal. Each check
// fails without the directive it names (tried by editing the unit).
func checkDownloaderView(t *testing.T, c *container) {
	t.Helper()
	errs := 0
	errorf := func(format string, args ...any) { t.Helper(); errs++; t.Errorf(format, args...) }
	const unit = "ytkeep-downloader.service"
	pid := c.unitProperty(unit, "MainPID")
	root := "/proc/" + pid + "/root"
	marker := "/tmp/ytkeep-systemd-test-marker"
	c.must("echo marker >" + marker + " && test -e " + marker)
	// Positive controls: root leads into the unit's view.
	c.must("test -d " + root + "/var/spool/ytkeep/work && test -x " + root + "/usr/bin/yt-dlp")

	if out, _ := c.run("awk '$5 == \"/tmp\"' /proc/" + pid + "/mountinfo"); strings.TrimSpace(out) == "" {
		errorf("/tmp is not a mount of its own in %s's mount namespace (PrivateTmp=)", unit)
	}
	if _, err := c.run("test ! -e " + root + marker); err != nil {
		errorf("%s sees the system's %s", unit, marker)
	}
	// The units share their RootDirectory=, where systemd leaves the
	// mount points of the receiver's and the worker's binds: an empty
	// file may stand at the configuration's path, never the file itself.
	const cfg = "/etc/ytkeep/ytkeep.toml"
	cfgID := c.must("stat -c '%d:%i' " + cfg)
	if seen, _ := c.run("test ! -e " + root + cfg + " || stat -c '%d:%i %s' " + root + cfg); strings.TrimSpace(seen) != "" {
		if f := strings.Fields(seen); len(f) != 2 || f[0] == cfgID || f[1] != "0" {
			errorf("%s sees %s (device:inode size %s; the configuration's is %s)", unit, cfg, strings.TrimSpace(seen), cfgID)
		} else {
			t.Logf("%s: an empty mount point of another unit's at %s (not the configuration's inode %s)", unit, cfg, cfgID)
		}
	}
	if out, _ := c.run("awk '$5 ~ \"^/etc/ytkeep\"' /proc/" + pid + "/mountinfo"); strings.TrimSpace(out) != "" {
		errorf("%s mounts the configuration:\n%s", unit, out)
	}

	// Every process of the unit: its descriptors.
	fds := c.must(`for p in /proc/[0-9]*; do
	grep -qs '/` + unit + `$' $p/cgroup || continue
	for f in $p/fd/*; do echo "$p $(basename $f) $(readlink $f)"; done
done`)
	procs := map[string]bool{}
	for _, l := range lines(fds) {
		f := strings.Fields(l)
		if len(f) != 3 {
			errorf("unexpected line %q", l)
			continue
		}
		procs[f[0]] = true
		if strings.Contains(f[2], "ytkeep.toml") {
			errorf("%s (%s) holds the configuration open on descriptor %s", f[0], unit, f[1])
		}
		if f[0] != "/proc/"+pid {
			continue
		}
		want := map[string]string{"0": "/dev/null", "1": "socket:", "2": "socket:"}[f[1]]
		if want != "" && !strings.HasPrefix(f[2], want) {
			errorf("%s's descriptor %s is %s, want %s (the journal's stream for 1 and 2)", unit, f[1], f[2], want)
		}
	}
	if !procs["/proc/"+pid] {
		errorf("no descriptors found for %s's main process %s:\n%s", unit, pid, fds)
	}
	if errs == 0 {
		t.Logf("%s: its own /tmp, no configuration in its root; %d processes, none holding the configuration; standard input /dev/null, output the journal", unit, len(procs))
	}
}

func writeInto(t *testing.T, path, data string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(data); err != nil {
		t.Fatal(err)
	}
}

// replaceLines replaces whole lines of s; each must occur once.
func replaceLines(t *testing.T, s string, repl map[string]string) string {
	t.Helper()
	for old, new := range repl {
		if n := strings.Count(s, "\n"+old+"\n"); n != 1 {
			t.Fatalf("the example configuration has %d lines %q, want 1", n, old)
		}
		s = strings.Replace(s, "\n"+old+"\n", "\n"+new+"\n", 1)
	}
	return s
}

func sendTo(t *testing.T, slack *Slack, endpoint, text string) (reply, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reply, id, status, err := slack.Send(ctx, http.DefaultClient, endpoint, Invocation{User: User, Channel: Channel, Command: "/ytkeep", Text: text})
	if err != nil || status != http.StatusOK || !strings.Contains(reply, "Queued") {
		t.Fatalf("slash command %q: status %d, reply %q, err %v", text, status, reply, err)
	}
	return reply, id
}

func waitReply(t *testing.T, c *container, slack *Slack, id string, ok func(string) bool) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	msgs, err := slack.WaitFor(ctx, id, ok)
	if err != nil {
		out, _ := c.run("journalctl --no-pager -n 100 -u 'ytkeep-*'")
		t.Fatalf("%v\njournal:\n%s", err, out)
	}
	return msgs
}

// waitActive waits until unit is active with a main pid other than
// notPID.
func waitActive(t *testing.T, c *container, unit, notPID string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		state, _ := c.run("systemctl is-active " + unit)
		pid := c.unitProperty(unit, "MainPID")
		if strings.TrimSpace(state) == "active" && pid != "0" && pid != notPID {
			return
		}
		if time.Now().After(deadline) {
			status, _ := c.run("systemctl status --no-pager -l " + unit + "; journalctl --no-pager -n 60 -u " + unit)
			t.Fatalf("%s is %s (pid %s):\n%s", unit, strings.TrimSpace(state), pid, status)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func waitHTTP(t *testing.T, c *container, url string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			out, _ := c.run("journalctl --no-pager -n 60 -u ytkeep-receiver")
			t.Fatalf("%s does not answer: %v\n%s", url, err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitAdmin waits for a message after the first skip ones in the admins'
// channel that holds every part.
func waitAdmin(slack *Slack, skip int, timeout time.Duration, parts ...string) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		msgs := slack.Messages(AdminChannel)
		for _, m := range msgs[min(skip, len(msgs)):] {
			all := true
			for _, p := range parts {
				all = all && strings.Contains(m, p)
			}
			if all {
				return true
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return false
}

var exposureRE = regexp.MustCompile(`Overall exposure level for (\S+): ([0-9.]+)`)

func exposure(out, unit string) (float64, bool) {
	m := exposureRE.FindStringSubmatch(out)
	if m == nil || m[1] != unit {
		return 0, false
	}
	f, err := strconv.ParseFloat(m[2], 64)
	return f, err == nil
}

// checkJournal fails on error lines of ytkeep's units other than those the
// kills above cause.
func checkJournal(t *testing.T, c *container) {
	t.Helper()
	out := c.must("journalctl --no-pager -o cat -u 'ytkeep-*'")
	expected := []*regexp.Regexp{
		regexp.MustCompile(`Main process exited, code=killed, status=9/KILL`),
		regexp.MustCompile(`Failed with result 'signal'`),
		regexp.MustCompile(`"alert":"crashed".*"signal":"SIGKILL"`),
		// The downloader's kill: the worker loses its connection, alerts,
		// and exits to be started again.
		regexp.MustCompile(`"alert":"crashed".*"service":"ytkeep-downloader"`),
		regexp.MustCompile(`^ytkeep-worker: the downloader went away$`),
		regexp.MustCompile(`Main process exited, code=exited, status=1/FAILURE`),
		regexp.MustCompile(`Failed with result 'exit-code'`),
		regexp.MustCompile(`"alert":"crashed".*"service":"ytkeep-worker".*"result":"exit-code"`),
		// PrivateNetwork= with PrivateUsers=: systemd 252 cannot bring
		// up the new namespace's loopback, and says it goes on without
		// (the worker needs none).
		regexp.MustCompile(`^Failed to configure loopback network device, ignoring: Operation not permitted$`),
	}
	suspicious := regexp.MustCompile(`(?i)"level":"ERROR"|failed|error|denied|not permitted|status=`)
	var bad []string
	for _, l := range lines(out) {
		if !suspicious.MatchString(l) {
			continue
		}
		known := false
		for _, re := range expected {
			known = known || re.MatchString(l)
		}
		if !known {
			bad = append(bad, l)
		}
	}
	if len(bad) > 0 {
		t.Errorf("unexpected lines in the units' journal:\n%s", strings.Join(bad, "\n"))
	}
}

// reportEnforcement prints which of the units' cgroup-based directives
// this host enforces, as ytkeep doctor reads them back from the running
// units' cgroups (an administrator sees the same lines).
func reportEnforcement(t *testing.T, c *container) {
	t.Helper()
	out, _ := c.run("ytkeep doctor -config /etc/ytkeep/ytkeep.toml")
	var report []string
	for _, l := range lines(out) {
		for _, u := range units {
			if strings.Contains(l, u+":") || strings.Contains(l, u+" is not running") {
				report = append(report, l)
			}
		}
	}
	t.Logf("directives enforced by this host (ytkeep doctor, in the container):\n%s", strings.Join(report, "\n"))
	for _, u := range units {
		if !strings.Contains(out, u+": ") {
			t.Errorf("ytkeep doctor says nothing about %s's limits:\n%s", u, out)
		}
	}
}
