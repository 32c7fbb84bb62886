package doctor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ytkeep/ytkeep/internal/config"
	"github.com/ytkeep/ytkeep/internal/spool"
)

// install makes what a fresh installation has (deploy/tmpfiles.d and the
// example configuration), with numeric users.
func install(t *testing.T) (cfgPath string, l spool.Layout, downloads, secret string) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("CI must run the doctor tests as root")
		}
		t.Skip("SKIPPED: needs root to give the tree its two owners")
	}
	if _, err := os.Stat("/usr/bin/yt-dlp"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("yt-dlp missing on CI")
		}
		t.Skip("SKIPPED: yt-dlp is not installed")
	}
	root := t.TempDir()
	l = spool.Layout{Root: filepath.Join(root, "spool")}
	downloads = filepath.Join(root, "downloads")
	if err := l.Create(downloads, &spool.Owners{ReceiverUID: 61001, WorkerUID: 61002, SpoolGID: 61010, MediaGID: 61011, DownloaderGID: 61012, CourierUID: 61004, CourierGID: 61013}); err != nil {
		t.Fatal(err)
	}
	secret = filepath.Join(root, "signing_secret")
	os.WriteFile(secret, []byte("0123456789abcdef0123"), 0o400)
	os.Chown(secret, 61001, 61010)
	cfgPath = filepath.Join(root, "ytkeep.toml")
	cfg := fmt.Sprintf(`[spool]
dir = %q
[receiver]
signing_secret_file = %q
allowed_teams = ["T1"]
allowed_channels = ["C1"]
allowed_users = ["U1"]
[worker]
downloads_dir = %q
`, l.Root, secret, downloads)
	// As the package leaves it: root's, for the spool group, 0640.
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(cfgPath, 0, 61010); err != nil {
		t.Fatal(err)
	}
	return cfgPath, l, downloads, secret
}

func noDeno(string) (string, error) { return "", errors.New("not found") }

func TestFreshInstallPasses(t *testing.T) {
	cfg, _, _, _ := install(t)
	rs := Run(Options{ConfigPath: cfg, LookPath: noDeno})
	var b strings.Builder
	if !Print(&b, rs) {
		t.Fatalf("doctor fails on a fresh installation:\n%s", b.String())
	}
	for _, want := range []string{"[OK  ] Landlock ABI", "[OK  ] seccomp", "has every flag ytkeep requires", "documented owners and modes", "is private", "[WARN] no JavaScript runtime",
		"is root's, for the spool group 61010 alone (mode 0640)"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
}

func TestBrokenInstallFails(t *testing.T) {
	tests := []struct {
		name   string
		break_ func(l spool.Layout, downloads, secret string) error
		want   string
	}{
		{"world-writable incoming", func(l spool.Layout, _, _ string) error { return os.Chmod(l.Incoming(), 0o777) },
			"incoming has mode 0777 and owner uid 61002; want mode 1730 and uid 61002"},
		{"incoming owned by the receiver", func(l spool.Layout, _, _ string) error { return os.Chown(l.Incoming(), 61001, 61010) },
			"want mode 1730 and uid 61002"},
		{"one user for both", func(l spool.Layout, _, _ string) error { return os.Chown(l.Worker(""), 61001, 61010) },
			"must belong to three different users"},
		{"secret readable by others", func(_ spool.Layout, _, secret string) error { return os.Chmod(secret, 0o644) },
			"signing secret"},
		{"downloads not setgid", func(_ spool.Layout, downloads, _ string) error { return os.Chmod(downloads, 0o755) },
			"downloads has mode 0755"},
		{"missing quarantine", func(l spool.Layout, _, _ string) error { return os.Remove(l.Worker("quarantine")) },
			"quarantine: no such file or directory (run systemd-tmpfiles --create)"},
		// The configuration as an older install.sh made it (0644).
		{"config readable by all", func(l spool.Layout, _, _ string) error { return os.Chmod(configOf(l), 0o644) },
			"is readable by every user (mode 0644), the downloads included"},
		{"courier as the receiver", func(l spool.Layout, _, _ string) error { return os.Chown(l.Courier(""), 61001, 61013) },
			"must belong to three different users"},
		{"receiver dir of the spool group", func(l spool.Layout, _, _ string) error { return os.Chown(l.Receiver(""), 61001, 61010) },
			"want the courier's own group 61013"},
		{"reply key readable by all", func(l spool.Layout, _, _ string) error {
			p := l.Receiver("reply.key")
			if err := os.WriteFile(p, make([]byte, 32), 0o644); err != nil {
				return err
			}
			return os.Chown(p, 61001, 61013)
		}, "reply key"},
		{"config of root's group", func(l spool.Layout, _, _ string) error { return os.Chown(configOf(l), 0, 0) },
			"belongs to group 0; want the spool group 61010 of incoming/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, l, downloads, secret := install(t)
			if err := tt.break_(l, downloads, secret); err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			if Print(&b, Run(Options{ConfigPath: cfg, LookPath: noDeno})) {
				t.Fatalf("doctor passed a broken installation:\n%s", b.String())
			}
			if !strings.Contains(b.String(), tt.want) {
				t.Fatalf("report lacks %q:\n%s", tt.want, b.String())
			}
		})
	}
	t.Run("bad config", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "c.toml")
		os.WriteFile(p, []byte("[receiver]\nlisten = \"0.0.0.0:80\"\n"), 0o644)
		var b strings.Builder
		if Print(&b, Run(Options{ConfigPath: p, LookPath: noDeno})) || !strings.Contains(b.String(), "plain HTTP is only allowed on loopback") {
			t.Fatalf("report:\n%s", b.String())
		}
	})
}

// configOf is where install puts the configuration, next to the spool.
func configOf(l spool.Layout) string { return filepath.Join(filepath.Dir(l.Root), "ytkeep.toml") }

// TestConfigFileCheck: the configuration must be root's, readable by the
// spool group and by no one else (the downloads run as a user in neither
// group).
func TestConfigFileCheck(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("CI must run the doctor tests as root")
		}
		t.Skip("SKIPPED: needs root to give the file its owner and group")
	}
	const spoolGID = 61010
	tests := []struct {
		name     string
		mode     os.FileMode
		uid, gid int
		spoolGID int // -1: no spool tree to learn it from
		want     []Level
		wantText string
	}{
		{"as installed", 0o640, 0, spoolGID, spoolGID, []Level{OK}, "is root's, for the spool group 61010 alone (mode 0640)"},
		{"read-only", 0o440, 0, spoolGID, spoolGID, []Level{OK}, "(mode 0440)"},
		{"readable by all", 0o644, 0, spoolGID, spoolGID, []Level{Fail}, "is readable by every user (mode 0644)"},
		{"writable by the group", 0o660, 0, spoolGID, spoolGID, []Level{Fail}, "its group (the spool's) must read it and nothing more"},
		{"not for the group", 0o600, 0, spoolGID, spoolGID, []Level{Fail}, "its group (the spool's) must read it and nothing more (mode 0600)"},
		{"root's group", 0o640, 0, 0, spoolGID, []Level{Fail}, "belongs to group 0; want the spool group 61010"},
		{"no tree to compare with", 0o640, 0, 0, -1, []Level{OK}, "for the spool group 0 alone"},
		{"no tree, readable by all", 0o644, 0, 0, -1, []Level{Fail}, "is readable by every user"},
		{"the receiver's", 0o640, 61001, spoolGID, spoolGID, []Level{Warn}, "belongs to uid 61001, who may change it and its mode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "ytkeep.toml")
			if err := os.WriteFile(p, []byte("[worker]\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(p, tt.uid, tt.gid); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, tt.mode); err != nil {
				t.Fatal(err)
			}
			rs := checkConfigFile(p, tt.spoolGID)
			var levels []Level
			text := ""
			for _, r := range rs {
				levels = append(levels, r.Level)
				text += r.What + "\n"
			}
			if !slices.Equal(levels, tt.want) || !strings.Contains(text, tt.wantText) {
				t.Errorf("%+v, want %v and %q", rs, tt.want, tt.wantText)
			}
		})
	}
}

// TestAlertWebhookCheck: missing or empty warns; readable by others or
// not a Slack webhook fails; a private Slack URL passes.
func TestAlertWebhookCheck(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "alert_webhook")
	cfg := &config.Config{}
	cfg.Receiver.AlertWebhookFile = p
	check := func(content string, mode os.FileMode, want Level, wantText string) {
		t.Helper()
		os.Remove(p)
		if mode != 0 {
			if err := os.WriteFile(p, []byte(content), mode); err != nil {
				t.Fatal(err)
			}
			os.Chmod(p, mode)
		}
		rs := checkAlertWebhook(cfg)
		if len(rs) != 1 || rs[0].Level != want || !strings.Contains(rs[0].What, wantText) {
			t.Errorf("%q mode %v: %+v, want %s %q", content, mode, rs, want, wantText)
		}
	}
	check("", 0, Warn, "no such file")
	check("", 0o400, Warn, "empty")
	check("https://hooks.slack.com/services/T1/B1/x\n", 0o644, Fail, "chmod 0400")
	check("https://evil.example/hook\n", 0o400, Fail, "not an https://hooks.slack.com/ URL")
	check("https://hooks.slack.com/services/T1/B1/x\n", 0o400, OK, "alerts reach the admins' channel")
}

// TestTFOClientOn: the client bit of net.ipv4.tcp_fastopen, and junk
// counted as on.
func TestTFOClientOn(t *testing.T) {
	for in, want := range map[string]bool{"1\n": true, "3": true, "0\n": false, "2": false, "0x1": true, "": true, "1027": true, "1026": false} {
		if got := tfoClientOn([]byte(in)); got != want {
			t.Errorf("tfoClientOn(%q) = %v, want %v", in, got, want)
		}
	}
}

// TestAppTokenCheck: in Socket Mode the app-level token's file must be
// there, private, not empty and an app-level token; each failure says
// what to do.
func TestAppTokenCheck(t *testing.T) {
	const token = "xapp-1-A0123456789-1234567890123-0123456789abcdef0123456789abcdef"
	tests := []struct {
		name     string
		content  string
		mode     os.FileMode // 0: no file
		dir      bool
		want     Level
		wantText string
	}{
		{"missing", "", 0, false, Fail, "no such file or directory: the receiver cannot connect to Slack (Socket Mode); generate it in the Slack app's settings (Basic Information -> App-Level Tokens -> Generate, scope connections:write)"},
		{"a directory", "", 0, true, Fail, "is not a regular file"},
		{"readable by others", token + "\n", 0o644, false, Fail, "has mode 0644: chmod 0400"},
		{"readable by the group", token + "\n", 0o440, false, Fail, "has mode 0440: chmod 0400"},
		{"empty, as installed", "", 0o400, false, Fail, "is empty: the receiver cannot connect to Slack (Socket Mode); generate it"},
		{"only a newline", "\n", 0o400, false, Fail, "is empty"},
		{"a bot token", "xoxb-1234567890-1234567890123-abcdefghijklmnopqrstuvwx\n", 0o400, false, Fail, "this is a bot or user token (xox…), not the app-level token"},
		{"the signing secret", "8f14e45fceea167a5a36dedd4bea2543\n", 0o400, false, Fail, "not an app-level token (xapp-…)"},
		{"private token", token + "\n", 0o400, false, OK, "is private (mode 0400, uid "},
		{"private token, 0600", token, 0o600, false, OK, "has an app-level token's form (xapp-…)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "app_token")
			switch {
			case tt.dir:
				if err := os.Mkdir(p, 0o700); err != nil {
					t.Fatal(err)
				}
			case tt.mode != 0:
				if err := os.WriteFile(p, []byte(tt.content), 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(p, tt.mode); err != nil {
					t.Fatal(err)
				}
			}
			cfg := &config.Config{}
			cfg.Receiver.Mode = "socket"
			cfg.Receiver.AppTokenFile = p
			rs := checkAppToken(cfg)
			if len(rs) != 1 || rs[0].Level != tt.want || !strings.Contains(rs[0].What, p) || !strings.Contains(rs[0].What, tt.wantText) {
				t.Errorf("%+v, want %s %q", rs, tt.want, tt.wantText)
			}
		})
	}
}

// TestModeSecrets: doctor checks the secret of the receiver's mode and
// not the other's (which may stay an empty file); in Socket Mode it says
// that no port is needed.
func TestModeSecrets(t *testing.T) {
	dir := t.TempDir()
	token, secret := filepath.Join(dir, "app_token"), filepath.Join(dir, "signing_secret")
	for _, f := range []string{token, secret} {
		if err := os.WriteFile(f, nil, 0o400); err != nil { // both empty
			t.Fatal(err)
		}
	}
	tests := []struct {
		mode          string
		want, notWant []string
	}{
		{"socket", []string{"[OK  ] receiver.mode is \"socket\": the receiver connects out to Slack and listens on no port", "[FAIL] app-level token " + token + " is empty"},
			[]string{"signing secret " + secret}},
		{"http", []string{"[OK  ] signing secret " + secret + " is private"},
			[]string{"app-level token", "listens on no port"}},
		{"", []string{"[OK  ] signing secret " + secret + " is private"}, // unset: "http"
			[]string{"app-level token", "listens on no port"}},
	}
	for _, tt := range tests {
		t.Run("mode "+tt.mode, func(t *testing.T) {
			cfgPath := filepath.Join(t.TempDir(), "ytkeep.toml")
			mode := ""
			if tt.mode != "" {
				mode = fmt.Sprintf("mode = %q\n", tt.mode)
			}
			cfg := fmt.Sprintf("[spool]\ndir = %q\n[receiver]\n%sapp_token_file = %q\nsigning_secret_file = %q\n"+
				"allowed_teams = [\"T1\"]\nallowed_channels = [\"C1\"]\nallowed_users = [\"U1\"]\n", filepath.Join(dir, "nospool"), mode, token, secret)
			if err := os.WriteFile(cfgPath, []byte(cfg), 0o640); err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			Print(&b, Run(Options{ConfigPath: cfgPath, LookPath: noDeno}))
			for _, w := range tt.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("report lacks %q:\n%s", w, b.String())
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(b.String(), w) {
					t.Errorf("report has %q:\n%s", w, b.String())
				}
			}
		})
	}
}

// TestBotTokenCheck: with courier.status_messages the bot token must be
// there, private and a bot token; without it, a token is a warning.
func TestBotTokenCheck(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(dir, "bot_token")
	for _, tt := range []struct {
		name     string
		status   bool
		content  string
		mode     os.FileMode
		want     Level
		contains string
	}{
		{"off, none", false, "", 0o400, OK, "no bot token"},
		{"off, a token", false, "xoxb-1234567890-abcdefghij", 0o400, Warn, "status_messages is off"},
		{"on, none", true, "", 0o400, Fail, "missing or empty"},
		{"on, readable", true, "xoxb-1234567890-abcdefghij", 0o644, Fail, "chmod 0400"},
		{"on, an app token", true, "xapp-1-A0-1234567890-abcdef", 0o400, Fail, "not the bot token"},
		{"on, good", true, "xoxb-1234567890-abcdefghij", 0o400, OK, "private and has a bot token's form"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			os.Remove(tok)
			if err := os.WriteFile(tok, []byte(tt.content+"\n"), tt.mode); err != nil {
				t.Fatal(err)
			}
			cfg := &config.Config{}
			cfg.Courier.BotTokenFile, cfg.Courier.StatusMessages = tok, tt.status
			if r := checkBotToken(cfg); r.Level != tt.want || !strings.Contains(r.What, tt.contains) {
				t.Errorf("%+v, want %v with %q", r, tt.want, tt.contains)
			}
		})
	}
}
