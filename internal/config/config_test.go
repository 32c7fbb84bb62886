package config

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/ytkeep/ytkeep/internal/egress"
)

const valid = `
[spool]
dir = "/var/spool/ytkeep"
[receiver]
app_id = "A0YTKEEP01"
allowed_teams = ["T1DC2JH3J"]
allowed_channels = ["C1"]
allowed_users = ["*"]
[worker]
concurrency = 3
`

func TestDefaultsAndChecks(t *testing.T) {
	c, err := Parse(valid)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CheckReceiver(); err != nil {
		t.Fatal(err)
	}
	if err := c.CheckWorker(); err != nil {
		t.Fatal(err)
	}
	if c.Receiver.Listen != "127.0.0.1:3000" || c.Worker.Concurrency != 3 || c.Worker.MaxFileMB != 2048 || c.Receiver.Command != "/ytkeep" {
		t.Fatalf("defaults: %+v", c)
	}
	if !slices.Equal(c.Worker.EgressHosts, egress.DefaultHosts) {
		t.Fatalf("egress hosts default to %q", c.Worker.EgressHosts)
	}
	if w := c.Warnings(); len(w) != 1 || !strings.Contains(w[0], "allowed_users") {
		t.Fatalf("warnings %q", w)
	}
}

// TestUploadSettings: uploads default to Slack's per-file limit and a
// quota of 2000 MB a day; 0 turns them off (it is not "unset"), and then
// the downloads directory does not matter to the courier.
func TestUploadSettings(t *testing.T) {
	c, err := Parse(valid)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CheckCourier(); err != nil {
		t.Fatal(err)
	}
	if c.MaxUploadBytes() != 1000*MB || c.UploadQuotaBytes() != 2000*MB {
		t.Errorf("defaults: %d bytes a file, %d a day; want 1000 MB and 2000 MB", c.MaxUploadBytes(), c.UploadQuotaBytes())
	}
	off := strings.Replace(valid, "concurrency = 3", `downloads_dir = "dl"`, 1) + "\n[courier]\nmax_upload_mb = 0\nupload_quota_mb_per_day = 5\n"
	if c, err = Parse(off); err != nil {
		t.Fatal(err)
	}
	if err := c.CheckCourier(); err != nil || c.MaxUploadBytes() != 0 || c.UploadQuotaBytes() != 5*MB {
		t.Errorf("max_upload_mb = 0: %v, %d bytes a file, %d a day; want uploads off", err, c.MaxUploadBytes(), c.UploadQuotaBytes())
	}
}

func TestExampleConfigIsValid(t *testing.T) {
	c, err := Load("../../ytkeep.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CheckReceiver(); err != nil {
		t.Fatal(err)
	}
	if err := c.CheckWorker(); err != nil {
		t.Fatal(err)
	}
	if len(c.Warnings()) != 0 {
		t.Fatalf("the example weakens security: %q", c.Warnings())
	}
}

func TestRefused(t *testing.T) {
	tests := []struct {
		name, text, want string
		check            func(*Config) error
	}{
		{"unknown key", valid + "\n[log]\nlevle = \"debug\"\n", "unknown keys: log.levle", nil},
		{"unknown table", valid + "\n[extra]\nx = 1\n", "unknown keys", nil},
		{"secret inline", strings.Replace(valid, "[receiver]", "[receiver]\nsigning_secret = \"abc\"", 1), "unknown keys: receiver.signing_secret", nil},
		{"relative spool", strings.Replace(valid, `"/var/spool/ytkeep"`, `"spool"`, 1), "absolute", nil},
		{"public test media", valid + "\n[testing]\nmedia_base_url = \"http://203.0.113.5/media/\"\n", "loopback", nil},
		{"named test media", valid + "\n[testing]\nmedia_base_url = \"http://localhost/media/\"\n", "loopback", nil},
		{"plain http public", strings.Replace(valid, "[receiver]", "[receiver]\nlisten = \"0.0.0.0:3000\"", 1), "plain HTTP is only allowed on loopback", (*Config).CheckReceiver},
		{"half tls", strings.Replace(valid, "[receiver]", "[receiver]\ntls_cert_file = \"/etc/c.pem\"", 1), "must be set together", (*Config).CheckReceiver},
		{"tls in socket mode", strings.Replace(valid, "[receiver]", "[receiver]\nmode = \"socket\"\ntls_cert_file = \"/etc/c.pem\"", 1), "Socket Mode listens on no port", (*Config).CheckReceiver},
		{"unknown mode", strings.Replace(valid, "[receiver]", "[receiver]\nmode = \"events\"", 1), `receiver.mode "events" is neither`, (*Config).CheckReceiver},
		{"public slack api", valid + "\n[testing]\nslack_api_url = \"https://slack.com/api/\"\n", "testing.slack_api_url", nil},
		{"slack api without slash", valid + "\n[testing]\nslack_api_url = \"http://127.0.0.1:9/api\"\n", "must end with /", nil},
		{"slack api without port", valid + "\n[testing]\nslack_api_url = \"http://127.0.0.1/api/\"\n", "must name its port", nil},
		{"no teams", strings.Replace(valid, `allowed_teams = ["T1DC2JH3J"]`, ``, 1), "allowed_teams is empty", (*Config).CheckReceiver},
		{"wildcard team", strings.Replace(valid, `["T1DC2JH3J"]`, `["*"]`, 1), "may not contain", (*Config).CheckReceiver},
		{"bad id", strings.Replace(valid, `["C1"]`, `["general"]`, 1), "not a Slack ID", (*Config).CheckReceiver},
		{"no users", strings.Replace(valid, `allowed_users = ["*"]`, ``, 1), "allowed_users is empty", (*Config).CheckReceiver},
		{"wildcard admin", strings.Replace(valid, "[receiver]", "[receiver]\nadmins = [\"*\"]", 1), `receiver.admins: "*" is not a Slack ID`, (*Config).CheckReceiver},
		{"concurrency", strings.Replace(valid, "concurrency = 3", "concurrency = 0\nmax_attempts = 99", 1), "max_attempts 99", (*Config).CheckWorker},
		{"negative quota", strings.Replace(valid, "concurrency = 3", "download_quota_mb_per_day = -1", 1), "worker.download_quota_mb_per_day -1", (*Config).CheckWorker},
		{"egress anywhere", strings.Replace(valid, "concurrency = 3", `egress_hosts = ["*"]`, 1), "worker.egress_hosts", (*Config).CheckWorker},
		{"egress to a TLD", strings.Replace(valid, "concurrency = 3", `egress_hosts = ["*.com"]`, 1), "worker.egress_hosts", (*Config).CheckWorker},
		{"egress to nothing", strings.Replace(valid, "concurrency = 3", `egress_hosts = []`, 1), "worker.egress_hosts", (*Config).CheckWorker},
		{"team as app id", strings.Replace(valid, `"A0YTKEEP01"`, `"T1DC2JH3J"`, 1), `receiver.app_id "T1DC2JH3J" is not a Slack app ID`, (*Config).CheckReceiver},
		{"lower-case app id", strings.Replace(valid, `"A0YTKEEP01"`, `"a0ytkeep01"`, 1), "is not a Slack app ID", (*Config).CheckReceiver},
		{"team as enterprise", strings.Replace(valid, "[receiver]", "[receiver]\nallowed_enterprises = [\"E0GRIDORG\", \"T1DC2JH3J\"]", 1), `receiver.allowed_enterprises: "T1DC2JH3J" is not an Enterprise Grid organization ID`, (*Config).CheckReceiver},
		{"wildcard enterprise", strings.Replace(valid, "[receiver]", "[receiver]\nallowed_enterprises = [\"*\"]", 1), "receiver.allowed_enterprises", (*Config).CheckReceiver},
		{"no hook host", strings.Replace(valid, "[receiver]", "[receiver]\nresponse_url_hosts = []", 1), "receiver.response_url_hosts is empty", (*Config).CheckReceiver},
		{"hook host with scheme", strings.Replace(valid, "[receiver]", "[receiver]\nresponse_url_hosts = [\"https://hooks.slack.com\"]", 1), "is not a host name", (*Config).CheckReceiver},
		{"hook host with port", strings.Replace(valid, "[receiver]", "[receiver]\nresponse_url_hosts = [\"hooks.slack.com:443\"]", 1), "is not a host name", (*Config).CheckReceiver},
		{"hook host upper case", strings.Replace(valid, "[receiver]", "[receiver]\nresponse_url_hosts = [\"HOOKS.SLACK.COM\"]", 1), "is not a host name", (*Config).CheckReceiver},
		{"hook host an address", strings.Replace(valid, "[receiver]", "[receiver]\nresponse_url_hosts = [\"169.254.169.254\"]", 1), "is not a host name", (*Config).CheckReceiver},
		{"hook host a wildcard", strings.Replace(valid, "[receiver]", "[receiver]\nresponse_url_hosts = [\"*.slack.com\"]", 1), "is not a host name", (*Config).CheckReceiver},
		{"hook host trailing dot", strings.Replace(valid, "[receiver]", "[receiver]\nresponse_url_hosts = [\"hooks.slack.com.\"]", 1), "is not a host name", (*Config).CheckReceiver},
		{"upload over Slack's limit", valid + "\n[courier]\nmax_upload_mb = 1001\n", "courier.max_upload_mb 1001 is not between 0 (no uploads) and 1000", (*Config).CheckCourier},
		{"negative upload cap", valid + "\n[courier]\nmax_upload_mb = -1\n", "courier.max_upload_mb -1", (*Config).CheckCourier},
		{"no upload quota", valid + "\n[courier]\nupload_quota_mb_per_day = 0\n", "courier.upload_quota_mb_per_day 0 is not between 1", (*Config).CheckCourier},
		{"relative downloads for uploads", strings.Replace(valid, "concurrency = 3", `downloads_dir = "dl"`, 1), "the courier reads the stored files", (*Config).CheckCourier},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(tt.text)
			if tt.check != nil && err == nil {
				err = tt.check(c)
			}
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q, want it to mention %q", err, tt.want)
			}
		})
	}
}

// TestReadFor: a configuration read from a descriptor (the downloader's
// standard input) is bounded, decoded strictly and checked like a file,
// and an empty one is refused.
func TestReadFor(t *testing.T) {
	tests := []struct {
		name string
		r    io.Reader
		want string // "" = accepted
	}{
		{"valid", strings.NewReader(valid), ""},
		{"valid at the limit", strings.NewReader(valid + strings.Repeat("#", maxConfigSize-len(valid))), ""},
		{"empty", strings.NewReader(""), "config from standard input is empty"},
		{"white space", strings.NewReader(" \n\t\n"), "config from standard input is empty"},
		{"too large", strings.NewReader(valid + strings.Repeat("#", maxConfigSize-len(valid)+1)), "config from standard input is larger than 1 MiB"},
		{"endless", endless{}, "config from standard input is larger than 1 MiB"},
		{"read error", iotest.ErrReader(errors.New("boom")), "couldn't read config from standard input: boom"},
		{"unknown key", strings.NewReader(valid + "\n[log]\nlevle = \"debug\"\n"), "unknown keys: log.levle"},
		{"fails the check", strings.NewReader(strings.Replace(valid, "concurrency = 3", "concurrency = 99", 1)),
			"invalid configuration from standard input:\nworker.concurrency 99 is not between 1 and 16"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ReadFor(tt.r, "standard input", (*Config).CheckDownloader)
			switch {
			case tt.want == "" && err != nil:
				t.Fatal(err)
			case tt.want == "" && c.Worker.Concurrency != 3:
				t.Fatalf("concurrency %d, want 3 (from the input)", c.Worker.Concurrency)
			case tt.want != "" && err == nil:
				t.Fatal("accepted")
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Fatalf("error %q, want it to mention %q", err, tt.want)
			}
		})
	}
}

// endless is an input that never ends.
type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = '#'
	}
	return len(p), nil
}

func TestDownloadsInsideSpool(t *testing.T) {
	c, _ := Parse(strings.Replace(valid, "concurrency = 3", `downloads_dir = "/var/spool/ytkeep/dl"`, 1))
	if err := c.CheckWorker(); err == nil || !strings.Contains(err.Error(), "inside spool.dir") {
		t.Fatalf("CheckWorker = %v", err)
	}
}

func TestSigningSecret(t *testing.T) {
	dir := t.TempDir()
	c, _ := Parse(valid)
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	t.Setenv("YTKEEP_SIGNING_SECRET", "")
	if _, _, err := c.SigningSecret(); err == nil {
		t.Fatal("no secret configured, yet one was found")
	}
	t.Setenv("YTKEEP_SIGNING_SECRET", "from-env\n")
	if s, src, err := c.SigningSecret(); err != nil || s != "from-env" || !strings.Contains(src, "environment") {
		t.Fatalf("env: %q %q %v", s, src, err)
	}
	p := filepath.Join(dir, "signing_secret")
	os.WriteFile(p, []byte("from-file\n"), 0o640)
	t.Setenv("CREDENTIALS_DIRECTORY", dir)
	if s, _, err := c.SigningSecret(); err != nil || s != "from-file" {
		t.Fatalf("credential: %q %v", s, err)
	}
	os.Chmod(p, 0o644)
	if _, _, err := c.SigningSecret(); err == nil || !strings.Contains(err.Error(), "readable or writable by others") {
		t.Fatalf("world-readable secret: %v", err)
	}
	os.WriteFile(p, nil, 0o600)
	if _, _, err := c.SigningSecret(); err == nil {
		t.Fatal("empty secret accepted")
	}
}

// TestReceiverWarnings: each weakening of the receiver's Slack checks is
// announced at start; Slack's own hook hosts are not weakenings.
func TestReceiverWarnings(t *testing.T) {
	tests := []struct {
		name, text, want string // want "" = no warning
	}{
		{"app id set", valid, ""},
		{"no app id", strings.Replace(valid, `app_id = "A0YTKEEP01"`, ``, 1), "receiver.app_id is not set: requests of any Slack app signed with this signing secret are accepted"},
		{"GovSlack", strings.Replace(valid, "[receiver]", "[receiver]\nresponse_url_hosts = [\"hooks.slack-gov.com\"]", 1), ""},
		{"both clouds", strings.Replace(valid, "[receiver]", "[receiver]\nresponse_url_hosts = [\"hooks.slack.com\", \"hooks.slack-gov.com\"]", 1), ""},
		{"another host", strings.Replace(valid, "[receiver]", "[receiver]\nresponse_url_hosts = [\"hooks.example.org\"]", 1),
			`receiver.response_url_hosts includes "hooks.example.org", which is not one of Slack's hook hosts`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(tt.text)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.CheckReceiver(); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, w := range c.Warnings() {
				if strings.HasPrefix(w, "receiver.app_id") || strings.HasPrefix(w, "receiver.response_url_hosts") {
					got = append(got, w)
				}
			}
			switch {
			case tt.want == "" && len(got) != 0:
				t.Fatalf("warnings %q", got)
			case tt.want != "" && (len(got) != 1 || !strings.HasPrefix(got[0], tt.want)):
				t.Fatalf("warnings %q, want %q", got, tt.want)
			}
		})
	}
}

// TestGovSlackHosts: response_url_hosts replaces hooks.slack.com, for
// replies and for the alert webhook alike.
func TestGovSlackHosts(t *testing.T) {
	gov, _ := Parse(strings.Replace(valid, "[receiver]", "[receiver]\nresponse_url_hosts = [\"hooks.slack-gov.com\"]", 1))
	def, _ := Parse(valid)
	for u, want := range map[string][2]bool{ // default, GovSlack
		"https://hooks.slack.com/commands/T1/1/x":      {true, false},
		"https://hooks.slack-gov.com/commands/T1/1/x":  {false, true},
		"https://hooks.slack-gov.com.evil/commands/x":  {false, false},
		"http://hooks.slack-gov.com/commands/T1/1/x":   {false, false},
		"https://hooks.slack-gov.com:8443/commands/x":  {false, false},
		"https://x@hooks.slack-gov.com/commands/T1/1/": {false, false},
	} {
		if got := [2]bool{def.ResponseURLAllowed(u), gov.ResponseURLAllowed(u)}; got != want {
			t.Errorf("ResponseURLAllowed(%q) = %v (default, GovSlack), want %v", u, got, want)
		}
	}
	hook := filepath.Join(t.TempDir(), "alert_webhook")
	os.WriteFile(hook, []byte("https://hooks.slack-gov.com/services/T1/B1/secret\n"), 0o600)
	gov.Receiver.AlertWebhookFile, def.Receiver.AlertWebhookFile = hook, hook
	if u, err := gov.AlertWebhook(); err != nil || u != "https://hooks.slack-gov.com/services/T1/B1/secret" {
		t.Errorf("GovSlack webhook: %q, %v", u, err)
	}
	if _, err := def.AlertWebhook(); err == nil || !strings.Contains(err.Error(), "not an https://hooks.slack.com/ URL") {
		t.Errorf("GovSlack webhook with the default hosts: %v", err)
	}
}

func TestResponseURLAllowed(t *testing.T) {
	c, _ := Parse(valid)
	for u, want := range map[string]bool{
		"https://hooks.slack.com/commands/T1/1/x": true,
		"http://hooks.slack.com/commands/T1/1/x":  false,
		"https://hooks.slack.com.evil/x":          false,
		"https://user@hooks.slack.com/x":          false,
		"https://hooks.slack.com:8443/x":          false,
		"http://127.0.0.1:8080/r/1":               false,
		"":                                        false,
	} {
		if got := c.ResponseURLAllowed(u); got != want {
			t.Errorf("ResponseURLAllowed(%q) = %v", u, got)
		}
	}
	c.Testing.LoopbackResponsePort = 8080
	if !c.ResponseURLAllowed("http://127.0.0.1:8080/r/1") || c.ResponseURLAllowed("http://10.0.0.1:8080/r") ||
		c.ResponseURLAllowed("http://127.0.0.1:8081/r/1") {
		t.Error("loopback test option")
	}
}

// TestAppToken: the app-level token comes from its file (or the systemd
// credential), never the environment; a file others may read, a bot or
// user token, or a token of the wrong shape is refused.
func TestAppToken(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	t.Setenv("SLACK_APP_TOKEN", "xapp-1-A0ENV-1-fromtheenvironment")
	good := "xapp-1-A0YTKEEP01-1234567890-abcdef0123456789"
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
		return p
	}
	c := &Config{}
	if _, _, err := c.AppToken(); err == nil {
		t.Error("no file and no credential: want an error (never the environment)")
	}
	for _, tt := range []struct {
		name, content string
		mode          os.FileMode
		want          string // "" ok, else in the error
	}{
		{"good", good + "\n", 0o400, ""},
		{"others may read", good, 0o604, "group or others"},
		{"the group may read", good, 0o440, "group or others"},
		{"bot token", "xoxb-1234-5678-abcdefabcdef", 0o400, "bot or user token"},
		{"not a token", "hello there", 0o400, "not an app-level token"},
		{"short", "xapp-1", 0o400, "length"},
		{"odd character", "xapp-1-A0YTKEEP01-1234567890-abc/def", 0o400, "character"},
		{"empty", "", 0o400, "empty"},
	} {
		if tt.name == "good" {
			// Someone else's file: neither root's nor ours.
			c.Receiver.AppTokenFile = write("theirs", good, 0o400)
			os.Chown(c.Receiver.AppTokenFile, 65534, 65534)
			if os.Geteuid() == 0 {
				if _, _, err := c.AppToken(); err == nil || !strings.Contains(err.Error(), "neither root") {
					t.Errorf("a token of uid 65534: %v", err)
				}
			}
		}
		c.Receiver.AppTokenFile = write(tt.name, tt.content, tt.mode)
		tok, src, err := c.AppToken()
		switch {
		case tt.want == "" && (err != nil || tok != good || src != c.Receiver.AppTokenFile):
			t.Errorf("%s: %q from %q, %v", tt.name, tok, src, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: %v, want an error with %q", tt.name, err, tt.want)
		}
	}
	c.Receiver.AppTokenFile = ""
	cred := t.TempDir()
	write("x", "", 0o400)
	if err := os.WriteFile(filepath.Join(cred, "app_token"), []byte(good), 0o400); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CREDENTIALS_DIRECTORY", cred)
	if tok, src, err := c.AppToken(); err != nil || tok != good || src != filepath.Join(cred, "app_token") {
		t.Errorf("systemd credential: %q from %q, %v", tok, src, err)
	}
}

// TestBotToken: the bot token comes from courier.bot_token_file (private,
// root's or this user's) or the credential bot_token (empty = none),
// never the environment, and must be a bot token.
func TestBotToken(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	c := &Config{}
	if tok, _, err := c.BotToken(); tok != "" || err != nil {
		t.Fatalf("nothing configured: %q, %v", tok, err)
	}
	t.Setenv("YTKEEP_BOT_TOKEN", "xoxb-1234567890-abcdefghijkl")
	if tok, _, _ := c.BotToken(); tok != "" {
		t.Fatal("read from the environment")
	}
	cred := filepath.Join(dir, "creds")
	os.Mkdir(cred, 0o700)
	t.Setenv("CREDENTIALS_DIRECTORY", cred)
	os.WriteFile(filepath.Join(cred, "bot_token"), nil, 0o400)
	if tok, _, err := c.BotToken(); tok != "" || err != nil {
		t.Fatalf("an empty credential: %q, %v", tok, err)
	}
	os.WriteFile(filepath.Join(cred, "bot_token"), []byte("xoxb-1234567890-abcdefghijkl\n"), 0o400)
	if tok, _, err := c.BotToken(); tok != "xoxb-1234567890-abcdefghijkl" || err != nil {
		t.Fatalf("the credential: %q, %v", tok, err)
	}
	f := filepath.Join(dir, "bot_token")
	c.Courier.BotTokenFile = f
	for _, tt := range []struct {
		content string
		mode    os.FileMode
		ok      bool
	}{
		{"xoxb-1234567890-abcdefghijkl", 0o400, true},
		{"xoxb-1234567890-abcdefghijkl", 0o440, false},
		{"xapp-1-A0-1234567890-abcdefgh", 0o400, false},
		{"xoxb--abc", 0o400, false},
	} {
		os.Remove(f)
		os.WriteFile(f, []byte(tt.content+"\n"), tt.mode)
		if tok, _, err := c.BotToken(); (err == nil) != tt.ok || (tt.ok && tok != tt.content) {
			t.Errorf("%q mode %v: %q, %v", tt.content, tt.mode, tok, err)
		}
	}
}
