// Package doctor checks that a machine can run ytkeep safely: kernel
// features, the downloader's programs, the spool tree's owners and modes,
// the configuration and the credentials. Each check reports OK, WARN
// (works, but weaker or soon broken) or FAIL (must be fixed).
package doctor

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ytkeep/ytkeep/internal/config"
	"github.com/ytkeep/ytkeep/internal/confine"
	"github.com/ytkeep/ytkeep/internal/reply"
	"github.com/ytkeep/ytkeep/internal/spool"
	"github.com/ytkeep/ytkeep/internal/ytdlp"
)

// Level is a check's verdict.
type Level string

// The verdicts.
const (
	OK   Level = "OK"
	Warn Level = "WARN"
	Fail Level = "FAIL"
)

// Result is one check.
type Result struct {
	Level Level
	What  string
}

// Options say where to look.
type Options struct {
	ConfigPath string
	// LookPath finds optional programs (deno); default exec.LookPath.
	LookPath func(string) (string, error)
}

// Run performs every check.
func Run(opt Options) []Result {
	if opt.LookPath == nil {
		opt.LookPath = exec.LookPath
	}
	var rs []Result
	add := func(l Level, format string, args ...any) {
		rs = append(rs, Result{l, fmt.Sprintf(format, args...)})
	}

	cfg, err := config.Load(opt.ConfigPath)
	if err != nil {
		add(Fail, "configuration: %v", err)
		return rs
	}
	for _, c := range []struct {
		name  string
		check func() error
	}{{"receiver", cfg.CheckReceiver}, {"worker", cfg.CheckWorker}, {"downloader", cfg.CheckDownloader}} {
		if err := c.check(); err != nil {
			add(Fail, "configuration (%s): %s", c.name, strings.ReplaceAll(err.Error(), "\n", "; "))
		} else {
			add(OK, "configuration (%s) is valid", c.name)
		}
	}
	for _, w := range cfg.Warnings() {
		add(Warn, "configuration: %s", w)
	}

	// Kernel.
	switch abi := confine.LandlockABI(); {
	case abi >= confine.MinLandlockABI:
		add(OK, "Landlock ABI %d (need %d)", abi, confine.MinLandlockABI)
	case cfg.Security.InsecureNoLandlock:
		add(Warn, "Landlock ABI %d: the daemons run WITHOUT file system and network confinement (security.insecure_no_landlock)", abi)
	default:
		add(Fail, "Landlock ABI %d, need %d (Linux 6.12 or newer): the daemons will refuse to start", abi, confine.MinLandlockABI)
	}
	if confine.SeccompAvailable() {
		add(OK, "seccomp filters are available")
	} else {
		add(Fail, "seccomp filters are not available in this kernel")
	}
	if b, err := os.ReadFile("/proc/sys/net/mptcp/enabled"); err == nil && strings.TrimSpace(string(b)) != "0" {
		add(Warn, "MPTCP is enabled (net.mptcp.enabled=1): Landlock's TCP port rules do not cover MPTCP sockets, so only ytkeep's seccomp filters (which kill them) stop them; set net.mptcp.enabled=0 if nothing on this host uses MPTCP, for a second layer")
	} else {
		add(OK, "MPTCP is off or absent (net.mptcp.enabled)")
	}
	if b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_fastopen"); err == nil && tfoClientOn(b) {
		add(Warn, "TCP Fast Open is on for clients (net.ipv4.tcp_fastopen has bit 1): a send with MSG_FASTOPEN connects without Landlock's connect check, so only ytkeep's seccomp filters (and the downloads' connect broker) stop it; set net.ipv4.tcp_fastopen=0 (or 2, servers only) if nothing on this host needs it, for another layer")
	} else {
		add(OK, "TCP Fast Open is off for clients (net.ipv4.tcp_fastopen)")
	}
	if b, err := os.ReadFile("/sys/module/apparmor/parameters/enabled"); err == nil && strings.TrimSpace(string(b)) == "Y" {
		add(OK, "AppArmor is enabled (load deploy/apparmor/* with apparmor_parser -r)")
	} else {
		add(Warn, "AppArmor is not enabled in this kernel: the profiles in deploy/apparmor are not enforced (Landlock, seccomp and users still are)")
	}

	// Programs.
	rs = append(rs, checkYtDlp(cfg.Worker.YtDlp)...)
	for _, p := range []string{cfg.Worker.FFmpeg, filepath.Join(filepath.Dir(cfg.Worker.FFmpeg), "ffprobe")} {
		if st, err := os.Stat(p); err != nil || st.Mode()&0o111 == 0 {
			add(Fail, "%s is missing or not executable (apt-get install ffmpeg)", p)
		} else {
			add(OK, "%s is installed", p)
		}
	}
	if p, err := opt.LookPath("deno"); err == nil {
		add(OK, "JavaScript runtime for YouTube: %s", p)
	} else {
		add(Warn, "no JavaScript runtime (deno) found: current YouTube downloads need one with yt-dlp %s or newer", ytdlp.CurrentVersion)
	}

	l := spool.Layout{Root: cfg.Spool.Dir}
	rs = append(rs, checkTree(l, cfg.Worker.DownloadsDir, cfg.Downloader.Socket)...)
	spoolGID := -1 // unknown without the tree, which checkTree reports
	var in unix.Stat_t
	if unix.Stat(l.Incoming(), &in) == nil {
		spoolGID = int(in.Gid)
	}
	rs = append(rs, checkConfigFile(opt.ConfigPath, spoolGID)...)
	// The receiver reads only its mode's secret.
	if cfg.Receiver.Mode == "socket" {
		add(OK, "receiver.mode is \"socket\": the receiver connects out to Slack and listens on no port: no open port, reverse proxy or certificate is needed")
		rs = append(rs, checkAppToken(cfg)...)
	} else {
		rs = append(rs, checkSecret(cfg)...)
	}
	rs = append(rs, checkAlertWebhook(cfg)...)
	rs = append(rs, checkBotToken(cfg))
	rs = append(rs, checkCredentialFiles(systemRoots.UnitDirs)...)
	rs = append(rs, checkUnits(systemRoots)...)
	return rs
}

func checkYtDlp(path string) []Result {
	v, err := exec.Command(path, "--version").Output()
	if err != nil {
		return []Result{{Fail, fmt.Sprintf("yt-dlp at %s does not run: %v (apt-get install yt-dlp, or install a current release)", path, err)}}
	}
	ver, err := ytdlp.ParseVersion(v)
	if err != nil {
		return []Result{{Fail, err.Error()}}
	}
	h, err := exec.Command(path, "--help").Output()
	if err != nil {
		return []Result{{Fail, fmt.Sprintf("yt-dlp --help failed: %v", err)}}
	}
	caps := ytdlp.ParseHelp(ver, h)
	var rs []Result
	if m := caps.Missing(); len(m) > 0 {
		rs = append(rs, Result{Fail, fmt.Sprintf("yt-dlp %s lacks flags ytkeep requires: %s", ver, strings.Join(m, " "))})
	} else {
		rs = append(rs, Result{OK, fmt.Sprintf("yt-dlp %s has every flag ytkeep requires", ver)})
	}
	if ytdlp.OlderThan(ver, ytdlp.CurrentVersion) {
		rs = append(rs, Result{Warn, fmt.Sprintf("yt-dlp %s is old: YouTube changes often and needs yt-dlp %s or newer with a JavaScript runtime; keep it current", ver, ytdlp.CurrentVersion)})
	}
	return rs
}

// checkTree compares the spool tree with deploy/tmpfiles.d/ytkeep.conf.
func checkTree(l spool.Layout, downloads, socket string) []Result {
	var rs []Result
	stat := func(p string) (*unix.Stat_t, bool) {
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			rs = append(rs, Result{Fail, fmt.Sprintf("%s: %v (run systemd-tmpfiles --create)", p, err)})
			return nil, false
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			rs = append(rs, Result{Fail, fmt.Sprintf("%s is not a directory", p)})
			return nil, false
		}
		return &st, true
	}
	recv, ok1 := stat(l.Receiver(""))
	work, ok2 := stat(l.Worker(""))
	cour, ok3 := stat(l.Courier(""))
	if !ok1 || !ok2 || !ok3 {
		return rs
	}
	if recv.Uid == 0 || work.Uid == 0 || cour.Uid == 0 || recv.Uid == work.Uid || cour.Uid == recv.Uid || cour.Uid == work.Uid {
		rs = append(rs, Result{Fail, fmt.Sprintf("receiver/ (uid %d), worker/ (uid %d) and courier/ (uid %d) must belong to three different users, none root", recv.Uid, work.Uid, cour.Uid)})
	}
	in, ok := stat(l.Incoming())
	if !ok {
		return rs
	}
	uids := map[spool.Role]uint32{spool.RoleRoot: 0, spool.RoleReceiver: recv.Uid, spool.RoleWorker: work.Uid, spool.RoleCourier: cour.Uid}
	bad := 0
	for _, e := range l.Tree(downloads) {
		st, ok := stat(e.Path)
		if !ok {
			bad++
			continue
		}
		if mode := st.Mode & 0o7777; mode != e.Mode || st.Uid != uids[e.Owner] {
			rs = append(rs, Result{Fail, fmt.Sprintf("%s has mode %04o and owner uid %d; want mode %04o and uid %d (%s)", e.Path, mode, st.Uid, e.Mode, uids[e.Owner], spool.Names[e.Owner])})
			bad++
		}
		if e.Group == spool.RoleDownloader && (st.Gid == in.Gid || st.Gid == 0) {
			rs = append(rs, Result{Fail, fmt.Sprintf("%s has group %d; want the downloader's own group (%s), not the spool's or root's", e.Path, st.Gid, spool.Names[spool.RoleDownloader])})
			bad++
		}
		if e.Group == spool.RoleCourierGroup && (st.Gid != cour.Gid || st.Gid == in.Gid || st.Gid == 0) {
			rs = append(rs, Result{Fail, fmt.Sprintf("%s has group %d; want the courier's own group %d of courier/ (%s), not the spool's or root's", e.Path, st.Gid, cour.Gid, spool.Names[spool.RoleCourierGroup])})
			bad++
		}
		if e.Group == spool.RoleSpool && st.Gid != in.Gid {
			rs = append(rs, Result{Fail, fmt.Sprintf("%s has group %d; want the spool group %d of incoming/ (%s)", e.Path, st.Gid, in.Gid, spool.Names[spool.RoleSpool])})
			bad++
		}
	}
	if bad == 0 {
		rs = append(rs, Result{OK, fmt.Sprintf("spool %s and downloads %s have the documented owners and modes", l.Root, downloads)})
	}
	rs = append(rs, checkReplyKey(l.Receiver(reply.KeyFile), recv.Uid, cour.Gid))
	return append(rs, checkDownloaderSocket(socket, recv.Uid, work.Uid, in.Gid)...)
}

// checkReplyKey: the reply key is the receiver's, readable by the
// courier's group alone (0640), once the receiver has made it.
func checkReplyKey(path string, recvUID, courierGID uint32) Result {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return Result{Warn, fmt.Sprintf("reply key %s: %v (the receiver makes it at its first start)", path, err)}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Nlink != 1 || st.Uid != recvUID || st.Gid != courierGID || st.Mode&0o7777 != reply.KeyMode {
		return Result{Fail, fmt.Sprintf("reply key %s: mode %04o, uid %d, gid %d, %d link(s); want a file of mode %04o, the receiver's (uid %d), group the courier's (gid %d), one link (the receiver rewrites an older install's at its next start)",
			path, st.Mode&0o7777, st.Uid, st.Gid, st.Nlink, reply.KeyMode, recvUID, courierGID)}
	}
	return Result{OK, fmt.Sprintf("reply key %s is the receiver's, readable by the courier's group alone", path)}
}

// checkDownloaderSocket: only the downloader's group (the worker) may
// connect to its socket, and only root may change that: systemd makes it
// (ytkeep-downloader.socket), since the downloads run as the downloader's
// user and could change the mode of a socket that user owned.
func checkDownloaderSocket(path string, recvUID, workUID, spoolGID uint32) []Result {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return []Result{{Warn, fmt.Sprintf("downloader socket %s: %v (fine while ytkeep-downloader.socket is stopped)", path, err)}}
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFSOCK:
		return []Result{{Fail, fmt.Sprintf("%s is not a socket", path)}}
	case st.Uid == recvUID || st.Uid == workUID:
		return []Result{{Fail, fmt.Sprintf("downloader socket %s belongs to uid %d, the receiver's or the worker's", path, st.Uid)}}
	case st.Gid == spoolGID || st.Gid == 0:
		return []Result{{Fail, fmt.Sprintf("downloader socket %s has group %d: want the downloader's own group (ytkeep-dl)", path, st.Gid)}}
	case st.Mode&0o007 != 0:
		return []Result{{Fail, fmt.Sprintf("downloader socket %s has mode %04o: others may connect", path, st.Mode&0o7777)}}
	case st.Uid != 0:
		return []Result{{Warn, fmt.Sprintf("downloader socket %s belongs to uid %d: the downloads, which run as the downloader's user, could change its mode; let systemd make it (ytkeep-downloader.socket)", path, st.Uid)}}
	}
	return []Result{{OK, fmt.Sprintf("the downloader's socket %s is root's, for its group %d alone", path, st.Gid)}}
}

// checkConfigFile: the configuration holds no secret, but it is for the
// receiver and the worker alone, who read it with the spool group (spoolGID,
// incoming/'s; -1 when unknown). The downloader gets it from systemd on
// standard input; its downloads, which run as its user, in no group but
// its own, must not be able to read it.
func checkConfigFile(path string, spoolGID int) []Result {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return []Result{{Fail, fmt.Sprintf("configuration %s: %v", path, err)}}
	}
	mode := st.Mode & 0o7777
	var rs []Result
	if mode&0o007 != 0 {
		rs = append(rs, Result{Fail, fmt.Sprintf("configuration %s is readable by every user (mode %04o), the downloads included; chmod 0640 and chgrp ytkeep-spool (installing the package again does)", path, mode)})
	}
	if mode&0o070 != 0o040 {
		rs = append(rs, Result{Fail, fmt.Sprintf("configuration %s: its group (the spool's) must read it and nothing more (mode %04o); chmod 0640", path, mode)})
	}
	if spoolGID >= 0 && st.Gid != uint32(spoolGID) {
		rs = append(rs, Result{Fail, fmt.Sprintf("configuration %s belongs to group %d; want the spool group %d of incoming/ (ytkeep-spool), with which the receiver and the worker read it", path, st.Gid, spoolGID)})
	}
	if st.Uid != 0 {
		rs = append(rs, Result{Warn, fmt.Sprintf("configuration %s belongs to uid %d, who may change it and its mode; chown root", path, st.Uid)})
	}
	if len(rs) == 0 {
		rs = append(rs, Result{OK, fmt.Sprintf("configuration %s is root's, for the spool group %d alone (mode %04o): the downloads cannot read it", path, st.Gid, mode)})
	}
	return rs
}

func checkSecret(cfg *config.Config) []Result {
	path := cfg.SigningSecretPath()
	if path == "" {
		path = "/etc/ytkeep/signing_secret"
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return []Result{{Warn, fmt.Sprintf("signing secret %s: %v (fine if systemd's LoadCredential= supplies it from elsewhere)", path, err)}}
	}
	if st.Mode&0o077 != 0 {
		return []Result{{Fail, fmt.Sprintf("signing secret %s has mode %04o: chmod 0400 (or 0600) and let only root or the receiver own it", path, st.Mode&0o7777)}}
	}
	return []Result{{OK, fmt.Sprintf("signing secret %s is private (mode %04o, uid %d)", path, st.Mode&0o7777, st.Uid)}}
}

// checkBotToken: with courier.status_messages the courier must have a bot
// token (the receiver tells users their status comes in their DM); a
// token without it is unused by the acknowledgement's wording. The file
// must be private and a bot token's shape (config.CheckBotToken).
func checkBotToken(cfg *config.Config) Result {
	path := cfg.Courier.BotTokenFile
	if path == "" {
		path = "/etc/ytkeep/bot_token" // what the courier's unit loads as the credential bot_token
	}
	const next = "OAuth & Permissions -> Bot User OAuth Token (xoxb-…, scopes chat:write and im:write), root's, mode 0400"
	data, err := os.ReadFile(path)
	token := strings.TrimSpace(string(data))
	switch {
	case !cfg.Courier.StatusMessages && token == "":
		return Result{OK, "no bot token: results go to each command's response_url, for 30 minutes (courier.status_messages is off)"}
	case !cfg.Courier.StatusMessages:
		return Result{Warn, fmt.Sprintf("bot token %s is set but courier.status_messages is off: the courier does not use it, results go to each command's response_url (for 30 minutes); set courier.status_messages = true", path)}
	case err != nil || token == "":
		return Result{Fail, fmt.Sprintf("courier.status_messages is on but the bot token %s is missing or empty (%v): paste the %s", path, err, next)}
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil || st.Mode&0o077 != 0 {
		return Result{Fail, fmt.Sprintf("bot token %s has mode %04o: chmod 0400 (root's, or the courier's)", path, st.Mode&0o7777)}
	}
	if err := config.CheckBotToken(token); err != nil {
		return Result{Fail, fmt.Sprintf("bot token %s: %v", path, err)}
	}
	return Result{OK, fmt.Sprintf("bot token %s is private and has a bot token's form: status messages go to the requesters' DMs", path)}
}

// appTokenNext tells where the app-level token comes from and where it
// goes.
const appTokenNext = "generate it in the Slack app's settings (Basic Information -> App-Level Tokens -> Generate, scope connections:write) and paste the xapp-… token there, root's, mode 0400"

// checkAppToken: in Socket Mode the receiver cannot start without the
// app-level token. Its file must be there, private (like the signing
// secret: neither the group, which may be the spool's and so the
// worker's, nor others may read it), not empty and an app-level token's
// shape (config.CheckAppToken, as the receiver checks it).
func checkAppToken(cfg *config.Config) []Result {
	path := cfg.AppTokenPath()
	if path == "" {
		path = "/etc/ytkeep/app_token" // what the unit loads as the credential app_token
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return []Result{{Fail, fmt.Sprintf("app-level token %s: %v: the receiver cannot connect to Slack (Socket Mode); %s", path, err, appTokenNext)}}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return []Result{{Fail, fmt.Sprintf("app-level token %s is not a regular file", path)}}
	}
	if st.Mode&0o077 != 0 {
		return []Result{{Fail, fmt.Sprintf("app-level token %s has mode %04o: chmod 0400 (or 0600) and let only root or the receiver own it", path, st.Mode&0o7777)}}
	}
	f, err := os.Open(path)
	if err != nil {
		return []Result{{Fail, fmt.Sprintf("app-level token %s: %v", path, err)}}
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 4096)) // a token has at most 512 bytes
	if err != nil {
		return []Result{{Fail, fmt.Sprintf("app-level token %s: %v", path, err)}}
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return []Result{{Fail, fmt.Sprintf("app-level token %s is empty: the receiver cannot connect to Slack (Socket Mode); %s", path, appTokenNext)}}
	}
	if err := config.CheckAppToken(token); err != nil {
		return []Result{{Fail, fmt.Sprintf("app-level token %s: %v", path, err)}}
	}
	return []Result{{OK, fmt.Sprintf("app-level token %s is private (mode %04o, uid %d) and has an app-level token's form (xapp-…)", path, st.Mode&0o7777, st.Uid)}}
}

// checkAlertWebhook: alerts need the admins' webhook URL; without one
// they stay in the journal, which is allowed but worth a warning.
func checkAlertWebhook(cfg *config.Config) []Result {
	path := cfg.Receiver.AlertWebhookFile
	if path == "" {
		path = "/etc/ytkeep/alert_webhook" // what the unit loads as a credential
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil || st.Size == 0 {
		why := "empty"
		if err != nil {
			why = err.Error()
		}
		return []Result{{Warn, fmt.Sprintf("alert webhook %s: %s: security alerts go to the journal only (paste the admins' channel incoming-webhook URL there)", path, why)}}
	}
	if st.Mode&0o077 != 0 {
		return []Result{{Fail, fmt.Sprintf("alert webhook %s has mode %04o: chmod 0400, it is a secret", path, st.Mode&0o7777)}}
	}
	c := *cfg
	c.Receiver.AlertWebhookFile = path
	if _, err := c.AlertWebhook(); err != nil {
		return []Result{{Fail, err.Error()}}
	}
	return []Result{{OK, fmt.Sprintf("alert webhook %s is private and points at Slack: alerts reach the admins' channel", path)}}
}

// Print writes the results and reports whether all passed (no FAIL).
func Print(w io.Writer, rs []Result) bool {
	ok := true
	for _, r := range rs {
		fmt.Fprintf(w, "[%-4s] %s\n", r.Level, r.What)
		if r.Level == Fail {
			ok = false
		}
	}
	return ok
}

// tfoClientOn reports whether the value of net.ipv4.tcp_fastopen lets
// clients open connections with MSG_FASTOPEN (bit 1; Linux's default is
// 1). A value that does not parse counts as on: the warning is the safe
// side.
func tfoClientOn(b []byte) bool {
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	return err != nil || v&1 != 0
}
