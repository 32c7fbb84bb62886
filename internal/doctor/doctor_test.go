package doctor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
	if err := l.Create(downloads, &spool.Owners{ReceiverUID: 61001, WorkerUID: 61002, SpoolGID: 61010, MediaGID: 61011, DownloaderGID: 61012}); err != nil {
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
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
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
	for _, want := range []string{"[OK  ] Landlock ABI", "[OK  ] seccomp", "has every flag ytkeep requires", "documented owners and modes", "is private", "[WARN] no JavaScript runtime"} {
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
			"must belong to two different users"},
		{"secret readable by others", func(_ spool.Layout, _, secret string) error { return os.Chmod(secret, 0o644) },
			"signing secret"},
		{"downloads not setgid", func(_ spool.Layout, downloads, _ string) error { return os.Chmod(downloads, 0o755) },
			"downloads has mode 0755"},
		{"missing quarantine", func(l spool.Layout, _, _ string) error { return os.Remove(l.Worker("quarantine")) },
			"quarantine: no such file or directory (run systemd-tmpfiles --create)"},
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
