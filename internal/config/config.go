// Package config loads ytkeep's one TOML configuration file, from its
// path or (the downloader's, which may not open it) from a descriptor.
//
// Decoding is strict: an unknown key is an error. Each daemon calls the
// check for its own part (CheckReceiver, CheckWorker) once at start; every
// bad value or combination is reported there, and every weakening of a
// security default is listed by Warnings so that it can be announced at
// each start. Secrets are never in the file, only paths to them.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/BurntSushi/toml"

	"github.com/ytkeep/ytkeep/internal/egress"
	"github.com/ytkeep/ytkeep/internal/slackreq"
)

// Config is the whole file. Field comments are the reference; the README
// and ytkeep.example.toml repeat them for admins.
type Config struct {
	Spool    Spool    `toml:"spool"`
	Receiver Receiver `toml:"receiver"`
	Worker   Worker   `toml:"worker"`
	// Downloader is the daemon that runs yt-dlp for the worker; its
	// downloads are configured in [worker] (ytdlp, egress_hosts, child_*).
	Downloader Downloader `toml:"downloader"`
	// Courier is the daemon that posts results to Slack.
	Courier  Courier  `toml:"courier"`
	Log      Log      `toml:"log"`
	Security Security `toml:"security"`
	Testing  Testing  `toml:"testing"`
	// Metrics turns on the daemons' metrics files (off by default).
	Metrics Metrics `toml:"metrics"`
}

// Metrics configures the metrics files, in Prometheus' text format, that
// node_exporter's textfile collector reads.
type Metrics struct {
	// Dir holds a directory per daemon (receiver/, worker/, downloader/,
	// courier/), each its user's alone, where the daemon rewrites
	// ytkeep_<daemon>.prom every IntervalSeconds. Empty (the default):
	// no metrics. Packages make /var/lib/ytkeep/metrics for it.
	Dir string `toml:"dir"`
	// IntervalSeconds is how often each file is written (default 5).
	IntervalSeconds int `toml:"interval_seconds"`
}

// RunAs names the Unix user a daemon switches to when started as root.
type RunAs struct {
	// User is a user name or numeric uid. Required when started as root.
	User string `toml:"user"`
	// Group is a group name or gid; default the user's primary group.
	Group string `toml:"group"`
	// Groups are supplementary groups (names or gids); default the user's
	// groups from /etc/group.
	Groups []string `toml:"groups"`
}

// Security holds explicit weakenings, each announced at every start.
type Security struct {
	// InsecureNoLandlock lets the daemons start on a kernel without
	// Landlock ABI 6 (Linux 6.12+). Without it they refuse to start.
	InsecureNoLandlock bool `toml:"insecure_no_landlock"`
}

// Spool locates the directories shared by the two daemons.
type Spool struct {
	// Dir holds incoming/, results/, receiver/ and worker/ (see the README
	// for owners and modes). Default /var/spool/ytkeep.
	Dir string `toml:"dir"`
}

// Receiver configures the Slack-facing daemon.
type Receiver struct {
	// Mode is "socket" (the example configuration's): the receiver opens a Socket Mode
	// connection to Slack (outbound only: it listens on no port) with the
	// app-level token; or "http": Slack posts slash commands to Listen,
	// signed with the signing secret (the default when unset, as before
	// Socket Mode).
	Mode string `toml:"mode"`
	// AppTokenFile holds the app-level token (xapp-…, scope
	// connections:write) for Socket Mode. If empty, the systemd credential
	// "app_token" is used. Never the environment or this file.
	AppTokenFile string `toml:"app_token_file"`
	// Listen is the address to listen on. Without TLS it must be a loopback
	// address (behind a reverse proxy). Default 127.0.0.1:3000.
	Listen string `toml:"listen"`
	// Path is the request URL path. Default /slack/commands.
	Path string `toml:"path"`
	// TLSCertFile and TLSKeyFile enable HTTPS when both are set.
	TLSCertFile string `toml:"tls_cert_file"`
	TLSKeyFile  string `toml:"tls_key_file"`
	// SigningSecretFile holds the app's signing secret. If empty, the
	// systemd credential "signing_secret" is used, then the environment
	// variable YTKEEP_SIGNING_SECRET.
	SigningSecretFile string `toml:"signing_secret_file"`
	// Command is the slash command name. Default /ytkeep.
	Command string `toml:"command"`
	// AppID is the Slack app's ID (A…, shown under Basic Information →
	// App Credentials). A command whose api_app_id is another, or none,
	// is refused. Empty: commands for any app are accepted as long as
	// this signing secret signed them (announced at every start).
	AppID string `toml:"app_id"`
	// AllowedTeams, AllowedChannels and AllowedUsers are allowlists of Slack
	// IDs. Nothing is allowed unless listed. Channels and users accept "*"
	// for any (announced as a warning at every start); teams do not. A
	// team is the workspace a command was typed in, also on an Enterprise
	// Grid organization.
	AllowedTeams    []string `toml:"allowed_teams"`
	AllowedChannels []string `toml:"allowed_channels"`
	AllowedUsers    []string `toml:"allowed_users"`
	// Admins are user IDs who may cancel anyone's job
	// ("/ytkeep cancel"); everyone else cancels only their own.
	Admins []string `toml:"admins"`
	// AllowedEnterprises lists Enterprise Grid organization IDs (E…).
	// When set, a command from another organization, or from a workspace
	// in none, is refused. Empty: no check (the team allowlist still
	// applies).
	AllowedEnterprises []string `toml:"allowed_enterprises"`
	// ResponseURLHosts are the hosts the receiver posts replies
	// (response_url) and alerts (alert_webhook_file) to, over https on
	// port 443 only. Default ["hooks.slack.com"]; GovSlack's is
	// "hooks.slack-gov.com". Any other host is announced at every start.
	ResponseURLHosts []string `toml:"response_url_hosts"`
	// AlertWebhookFile holds the incoming-webhook URL of the admins' Slack
	// channel (https://hooks.slack.com/services/…, on one of
	// ResponseURLHosts; a secret: mode 0400).
	// Security alerts of both daemons are posted there, batched. If empty,
	// the systemd credential "alert_webhook" is used; if that is absent or
	// empty, alerts go to the log only (announced at every start).
	AlertWebhookFile string `toml:"alert_webhook_file"`
	RunAs            RunAs  `toml:"run_as"`
}

// Worker configures the downloading daemon.
type Worker struct {
	// YtDlp is the absolute path of yt-dlp. Default /usr/bin/yt-dlp.
	YtDlp string `toml:"ytdlp"`
	// FFmpeg is the absolute path of ffmpeg. Default /usr/bin/ffmpeg.
	FFmpeg string `toml:"ffmpeg"`
	// DownloadsDir receives stored videos and their metadata sidecars.
	// Default /var/lib/ytkeep/downloads.
	DownloadsDir string `toml:"downloads_dir"`
	// Concurrency is the number of downloads at once (1-16). Default 2.
	Concurrency int `toml:"concurrency"`
	// JobTimeoutSeconds is the wall-clock limit of one download. Default 1800.
	JobTimeoutSeconds int `toml:"job_timeout_seconds"`
	// MaxFileMB caps the size of a stored file. Default 2048.
	MaxFileMB int `toml:"max_file_mb"`
	// DownloadQuotaMBPerDay caps what one user's jobs store in a UTC day,
	// in MiB (0, the default: no cap). A download starts only while the
	// user's day total plus max_file_mb for each of their downloads
	// under way is under it; a file already on the server costs nothing.
	DownloadQuotaMBPerDay int `toml:"download_quota_mb_per_day"`
	// MaxAttempts is how many times a job is run, the first included: a
	// run cut short (the worker crashed or stopped) is run again at the
	// next start, until this many have begun. Default 3.
	MaxAttempts int `toml:"max_attempts"`
	// SocketTimeoutSeconds is yt-dlp's --socket-timeout. Default 30.
	SocketTimeoutSeconds int `toml:"socket_timeout_seconds"`
	// ExtraExecPaths are directories the downloader may read and execute
	// beyond /usr, /lib and /bin: where a current yt-dlp or deno lives
	// (e.g. /opt/yt-dlp, /usr/local is under /usr already).
	ExtraExecPaths []string `toml:"extra_exec_paths"`
	// EgressHosts are the host names downloads may reach, through the
	// downloader's egress proxy, on port 443: "name" exactly, "*.name"
	// below it. Default egress.DefaultHosts (YouTube's).
	EgressHosts []string `toml:"egress_hosts"`
	// ChildMaxProcesses is the downloader's RLIMIT_NPROC (counted per
	// user, so it includes the worker's threads). Default 512.
	ChildMaxProcesses int `toml:"child_max_processes"`
	// ChildMaxOpenFiles is the downloader's RLIMIT_NOFILE. Default 256.
	ChildMaxOpenFiles int `toml:"child_max_open_files"`
	// ChildMaxMemoryMB is the downloader's RLIMIT_DATA: the writable
	// private memory of each of its processes (V8's large address-space
	// reservations are not counted). Default 2048.
	ChildMaxMemoryMB int   `toml:"child_max_memory_mb"`
	RunAs            RunAs `toml:"run_as"`
}

// Downloader configures the downloading daemon (ytkeep-downloader): its
// user and the socket the worker connects to. What it downloads, and
// how, is set in [worker], which both daemons read.
type Downloader struct {
	// Socket is the path of the daemon's Unix socket, where the worker
	// connects (before it confines itself). Default
	// /run/ytkeep-downloader/launcher.sock, made by ytkeep-downloader.socket.
	Socket string `toml:"socket"`
	RunAs  RunAs  `toml:"run_as"`
}

// Courier configures the daemon that reads the worker's results and
// posts them to Slack (ytkeep-courier): each job's response_url, and the
// admins' channel for alerts. The response_url hosts it may post to are
// receiver.response_url_hosts.
type Courier struct {
	// AlertWebhookFile holds the incoming-webhook URL of the admins'
	// Slack channel, for the courier's alerts and those it relays from
	// the worker. If empty, the systemd credential "alert_webhook" is
	// used; if that is absent or empty, alerts go to the log only.
	AlertWebhookFile string `toml:"alert_webhook_file"`
	// BotTokenFile holds the Slack app's bot token (xoxb-…, scopes
	// chat:write, im:write and, for uploads, files:write): with it, each
	// job gets a status message in the requester's DM with the app,
	// updated until its end, however long it takes. If empty, the systemd credential "bot_token" is used;
	// if that is absent or empty, results go to the command's
	// response_url only (for 30 minutes).
	BotTokenFile string `toml:"bot_token_file"`
	// StatusMessages says that the courier has a bot token (set it when
	// you give it one): the receiver's acknowledgement then tells the user
	// the job's status comes in their DM with the app, not in the channel
	// for 30 minutes. ytkeep doctor checks that the token is there.
	StatusMessages bool `toml:"status_messages"`
	// FinalTTLHours is how long a job's final status message is retried
	// while Slack does not take it (an outage, 429s); then an alert.
	// Default 24.
	FinalTTLHours int `toml:"final_ttl_hours"`
	// MaxUploadMB caps the file the courier uploads into a requester's
	// DM ("/ytkeep <link> send", "/ytkeep send <job>", the status
	// message's button), in MB of 1,000,000 bytes: 0 turns uploads off,
	// at most MaxUploadMBLimit (Slack's per-file limit). Default 1000.
	// Uploads need the bot token (status_messages) and read the stored
	// files in worker.downloads_dir.
	MaxUploadMB int `toml:"max_upload_mb"`
	// UploadQuotaMBPerDay caps what the courier uploads for one user per
	// UTC day, in MB of 1,000,000 bytes, counted before each upload.
	// Default 2000.
	UploadQuotaMBPerDay int   `toml:"upload_quota_mb_per_day"`
	RunAs               RunAs `toml:"run_as"`
}

// MaxUploadMBLimit is the most courier.max_upload_mb may be: Slack's
// per-file limit of 1 GB (docs/courier.md#uploads), in MB of 1,000,000
// bytes, so that it holds whether Slack's GB is 10^9 or 2^30 bytes.
const MaxUploadMBLimit = 1000

// maxUploadQuotaMB bounds courier.upload_quota_mb_per_day (1 TB a day).
const maxUploadQuotaMB = 1_000_000

// MB is the unit of the courier's upload settings.
const MB = 1_000_000

// MaxUploadBytes is courier.max_upload_mb in bytes (0: uploads off).
func (c *Config) MaxUploadBytes() int64 { return int64(c.Courier.MaxUploadMB) * MB }

// UploadQuotaBytes is courier.upload_quota_mb_per_day in bytes.
func (c *Config) UploadQuotaBytes() int64 { return int64(c.Courier.UploadQuotaMBPerDay) * MB }

// Log configures the JSON log on standard error.
type Log struct {
	// Level is debug, info, warn or error. Default info.
	Level string `toml:"level"`
}

// Testing holds options that exist only for tests and the demo. Each is
// refused for anything but loopback addresses and announced at start.
type Testing struct {
	// MediaBaseURL replaces YouTube: the worker downloads
	// MediaBaseURL + ID + ".mp4" with yt-dlp's generic extractor.
	MediaBaseURL string `toml:"media_base_url"`
	// LoopbackResponsePort lets response_url be http://127.0.0.1:PORT/…
	// (a simulated Slack on that port).
	LoopbackResponsePort int `toml:"loopback_response_port"`
	// SlackAPIURL replaces Slack's Web API (https://slack.com/api/) for
	// Socket Mode: a simulated Slack on loopback, e.g.
	// http://127.0.0.1:PORT/api/.
	SlackAPIURL string `toml:"slack_api_url"`
	// BotAPIURL replaces Slack's Web API for the courier's bot token: a
	// simulated Slack on loopback, e.g. http://127.0.0.1:PORT/api/.
	BotAPIURL string `toml:"bot_api_url"`
	// StatusUpdateWaitSeconds, when above 0, is how long the courier
	// waits for Slack to take an intermediate status update (default 3 s,
	// courier.Options.UpdateWait): tests on a loaded machine want every
	// update, not the production bound. 1 to 600.
	StatusUpdateWaitSeconds int `toml:"status_update_wait_seconds"`
}

const maxConfigSize = 1 << 20

// Load reads, strictly decodes and completes the configuration file.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("couldn't read config: %w", err)
	}
	defer f.Close()
	data, err := read(f, path)
	if err != nil {
		return nil, err
	}
	return Parse(string(data))
}

// LoadFor loads path (made absolute, as the daemons' Landlock rules need)
// and runs a daemon's check on it. It returns the absolute path too.
func LoadFor(path string, check func(*Config) error) (*Config, string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, "", err
	}
	c, err := Load(abs)
	if err != nil {
		return nil, "", err
	}
	if err := check(c); err != nil {
		return nil, "", fmt.Errorf("invalid configuration %s:\n%w", abs, err)
	}
	return c, abs, nil
}

// ReadFor reads a configuration from r to its end, at most 1 MiB, and
// decodes and checks it as LoadFor does a file; name says where it came
// from (e.g. "standard input"), in errors. An input with nothing but
// white space is refused, unlike an empty file: a daemon given its
// configuration on a descriptor that holds none (systemd's default
// StandardInput=null) was not given one.
func ReadFor(r io.Reader, name string, check func(*Config) error) (*Config, error) {
	data, err := read(r, "from "+name)
	if err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("config from %s is empty", name)
	}
	c, err := Parse(string(data))
	if err != nil {
		return nil, err
	}
	if err := check(c); err != nil {
		return nil, fmt.Errorf("invalid configuration from %s:\n%w", name, err)
	}
	return c, nil
}

// read reads r to its end, refusing more than maxConfigSize bytes; what
// names the input in errors ("config WHAT is larger than 1 MiB").
func read(r io.Reader, what string) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("couldn't read config %s: %w", what, err)
	}
	if len(data) > maxConfigSize {
		return nil, fmt.Errorf("config %s is larger than 1 MiB", what)
	}
	return data, nil
}

// Parse decodes a configuration from TOML text and fills in defaults.
func Parse(text string) (*Config, error) {
	var c Config
	md, err := toml.Decode(text, &c)
	if err != nil {
		return nil, fmt.Errorf("couldn't parse config: %w", err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return nil, fmt.Errorf("config has unknown keys: %s", strings.Join(keys, ", "))
	}
	c.defaults()
	// 0 turns uploads off: only a key left out takes the default.
	if !md.IsDefined("courier", "max_upload_mb") {
		c.Courier.MaxUploadMB = MaxUploadMBLimit
	}
	if !md.IsDefined("courier", "upload_quota_mb_per_day") {
		c.Courier.UploadQuotaMBPerDay = 2000
	}
	if err := c.checkCommon(); err != nil {
		return nil, err
	}
	return &c, nil
}

func (c *Config) defaults() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	defInt := func(i *int, v int) {
		if *i == 0 {
			*i = v
		}
	}
	def(&c.Spool.Dir, "/var/spool/ytkeep")
	// "http" when unset: a configuration written before Socket Mode
	// keeps its endpoint. The example configuration (new installs) and
	// the app manifest choose "socket".
	def(&c.Receiver.Mode, "http")
	def(&c.Receiver.Listen, "127.0.0.1:3000")
	def(&c.Receiver.Path, "/slack/commands")
	def(&c.Receiver.Command, "/ytkeep")
	if c.Receiver.ResponseURLHosts == nil {
		c.Receiver.ResponseURLHosts = slices.Clone(DefaultResponseURLHosts)
	}
	def(&c.Worker.YtDlp, "/usr/bin/yt-dlp")
	def(&c.Worker.FFmpeg, "/usr/bin/ffmpeg")
	def(&c.Worker.DownloadsDir, "/var/lib/ytkeep/downloads")
	defInt(&c.Worker.Concurrency, 2)
	defInt(&c.Worker.JobTimeoutSeconds, 1800)
	defInt(&c.Worker.MaxFileMB, 2048)
	defInt(&c.Worker.MaxAttempts, 3)
	defInt(&c.Worker.SocketTimeoutSeconds, 30)
	defInt(&c.Worker.ChildMaxProcesses, 512)
	defInt(&c.Worker.ChildMaxOpenFiles, 256)
	defInt(&c.Worker.ChildMaxMemoryMB, 2048)
	if c.Worker.EgressHosts == nil {
		c.Worker.EgressHosts = egress.DefaultHosts
	}
	def(&c.Downloader.Socket, "/run/ytkeep-downloader/launcher.sock")
	defInt(&c.Courier.FinalTTLHours, 24)
	def(&c.Log.Level, "info")
	defInt(&c.Metrics.IntervalSeconds, 5)
}

func (c *Config) checkCommon() error {
	var errs []error
	if !filepath.IsAbs(c.Spool.Dir) {
		errs = append(errs, errors.New("spool.dir must be an absolute path"))
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log.level %q is not debug, info, warn or error", c.Log.Level))
	}
	if d := c.Metrics.Dir; d != "" && (!filepath.IsAbs(d) || filepath.Clean(d) != d) {
		errs = append(errs, fmt.Errorf("metrics.dir %q must be a clean absolute path", d))
	}
	if n := c.Metrics.IntervalSeconds; n < 1 || n > 3600 {
		errs = append(errs, fmt.Errorf("metrics.interval_seconds %d is not 1 to 3600", n))
	}
	if p := c.Testing.LoopbackResponsePort; p < 0 || p > 65535 {
		errs = append(errs, fmt.Errorf("testing.loopback_response_port %d is not a port", p))
	}
	if n := c.Testing.StatusUpdateWaitSeconds; n < 0 || n > 600 {
		errs = append(errs, fmt.Errorf("testing.status_update_wait_seconds %d is not 1 to 600", n))
	}
	for _, t := range []struct{ key, url string }{{"slack_api_url", c.Testing.SlackAPIURL}, {"bot_api_url", c.Testing.BotAPIURL}} {
		if t.url == "" {
			continue
		}
		if err := checkLoopbackURL(t.url); err != nil {
			errs = append(errs, fmt.Errorf("testing.%s: %w", t.key, err))
		} else if !strings.HasSuffix(t.url, "/") {
			errs = append(errs, fmt.Errorf("testing.%s must end with /", t.key))
		} else if pu, _ := url.Parse(t.url); pu.Port() == "" {
			errs = append(errs, fmt.Errorf("testing.%s must name its port (the daemon's Landlock rules allow that one)", t.key))
		}
	}
	if u := c.Testing.MediaBaseURL; u != "" {
		if err := checkLoopbackURL(u); err != nil {
			errs = append(errs, fmt.Errorf("testing.media_base_url: %w", err))
		} else if !strings.HasSuffix(u, "/") {
			errs = append(errs, errors.New("testing.media_base_url must end with /"))
		}
	}
	return errors.Join(errs...)
}

// CheckReceiver reports every problem with the receiver's settings.
func (c *Config) CheckReceiver() error {
	r := &c.Receiver
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch r.Mode {
	case "socket":
		if r.TLSCertFile != "" || r.TLSKeyFile != "" {
			add("receiver.tls_cert_file and tls_key_file are for mode \"http\"; Socket Mode listens on no port")
		}
	case "http":
		host, port, err := net.SplitHostPort(r.Listen)
		if err != nil || port == "" {
			add("receiver.listen %q is not host:port", r.Listen)
		}
		tls := r.TLSCertFile != "" || r.TLSKeyFile != ""
		if tls && (r.TLSCertFile == "" || r.TLSKeyFile == "") {
			add("receiver.tls_cert_file and receiver.tls_key_file must be set together")
		}
		if err == nil && !tls && !isLoopbackHost(host) {
			add("receiver.listen %q is not a loopback address: plain HTTP is only allowed on loopback (set tls_cert_file and tls_key_file, or put a TLS reverse proxy in front)", r.Listen)
		}
		if !strings.HasPrefix(r.Path, "/") {
			add("receiver.path must start with /")
		}
	default:
		add("receiver.mode %q is neither \"socket\" nor \"http\"", r.Mode)
	}
	if !strings.HasPrefix(r.Command, "/") || len(r.Command) < 2 {
		add("receiver.command must start with / (e.g. /ytkeep)")
	}
	if len(r.AllowedTeams) == 0 {
		add("receiver.allowed_teams is empty: list the Slack team IDs (T…) that may use ytkeep")
	}
	for _, t := range r.AllowedTeams {
		if t == "*" {
			add("receiver.allowed_teams may not contain \"*\": list team IDs")
		} else if !slackreq.ValidSlackID(t) {
			add("receiver.allowed_teams: %q is not a Slack ID", t)
		}
	}
	for _, l := range []struct {
		name string
		list []string
	}{{"allowed_channels", r.AllowedChannels}, {"allowed_users", r.AllowedUsers}} {
		name, list := l.name, l.list
		if len(list) == 0 {
			add("receiver.%s is empty: list Slack IDs, or [\"*\"] for any", name)
		}
		for _, v := range list {
			if v != "*" && !slackreq.ValidSlackID(v) {
				add("receiver.%s: %q is not a Slack ID", name, v)
			}
		}
	}
	for _, v := range r.Admins {
		if !slackreq.ValidSlackID(v) {
			add("receiver.admins: %q is not a Slack ID", v)
		}
	}
	if r.SigningSecretFile != "" && !filepath.IsAbs(r.SigningSecretFile) {
		add("receiver.signing_secret_file must be an absolute path")
	}
	if r.AppID != "" && (!slackreq.ValidSlackID(r.AppID) || r.AppID[0] != 'A') {
		add("receiver.app_id %q is not a Slack app ID (A…)", r.AppID)
	}
	for _, e := range r.AllowedEnterprises {
		if !slackreq.ValidSlackID(e) || e[0] != 'E' {
			add("receiver.allowed_enterprises: %q is not an Enterprise Grid organization ID (E…)", e)
		}
	}
	if len(r.ResponseURLHosts) == 0 {
		add("receiver.response_url_hosts is empty: list Slack's hook host (hooks.slack.com, or hooks.slack-gov.com on GovSlack)")
	}
	for _, h := range r.ResponseURLHosts {
		if !validHostName(h) {
			add("receiver.response_url_hosts: %q is not a host name (lower case, no scheme, port or path)", h)
		}
	}
	return errors.Join(errs...)
}

// DefaultResponseURLHosts is receiver.response_url_hosts by default.
var DefaultResponseURLHosts = []string{"hooks.slack.com"}

// slackHookHosts are Slack's hook hosts, in its commercial cloud and in
// GovSlack (which runs on slack-gov.com, https://api.slack-gov.com/gov-slack/about).
// Other response_url_hosts are announced.
var slackHookHosts = map[string]bool{"hooks.slack.com": true, "hooks.slack-gov.com": true}

// validHostName accepts a lower-case DNS name of at least two labels,
// each of letters, digits and inner hyphens, whose last label is not
// numeric (so that no IP address passes).
func validHostName(h string) bool {
	if len(h) > 253 {
		return false
	}
	labels := strings.Split(h, ".")
	if len(labels) < 2 {
		return false
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
				return false
			}
		}
	}
	_, err := strconv.Atoi(labels[len(labels)-1])
	return err != nil
}

// CheckWorker reports every problem with the worker's settings.
func (c *Config) CheckWorker() error {
	w := &c.Worker
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	for _, p := range []struct{ name, path string }{{"ytdlp", w.YtDlp}, {"ffmpeg", w.FFmpeg}, {"downloads_dir", w.DownloadsDir}} {
		if !filepath.IsAbs(p.path) {
			add("worker.%s must be an absolute path", p.name)
		}
	}
	if w.Concurrency < 1 || w.Concurrency > 16 {
		add("worker.concurrency %d is not between 1 and 16", w.Concurrency)
	}
	if w.JobTimeoutSeconds < 10 || w.JobTimeoutSeconds > 6*3600 {
		add("worker.job_timeout_seconds %d is not between 10 and 21600", w.JobTimeoutSeconds)
	}
	if w.DownloadQuotaMBPerDay < 0 || w.DownloadQuotaMBPerDay > 1<<30 {
		add("worker.download_quota_mb_per_day %d is not between 0 (no cap) and %d", w.DownloadQuotaMBPerDay, 1<<30)
	}
	if w.MaxFileMB < 1 || w.MaxFileMB > 100*1024 {
		add("worker.max_file_mb %d is not between 1 and 102400", w.MaxFileMB)
	}
	if w.MaxAttempts < 1 || w.MaxAttempts > 10 {
		add("worker.max_attempts %d is not between 1 and 10", w.MaxAttempts)
	}
	if w.SocketTimeoutSeconds < 1 || w.SocketTimeoutSeconds > 600 {
		add("worker.socket_timeout_seconds %d is not between 1 and 600", w.SocketTimeoutSeconds)
	}
	if w.ChildMaxProcesses < 16 || w.ChildMaxProcesses > 65536 {
		add("worker.child_max_processes %d is not between 16 and 65536", w.ChildMaxProcesses)
	}
	if w.ChildMaxOpenFiles < 32 || w.ChildMaxOpenFiles > 65536 {
		add("worker.child_max_open_files %d is not between 32 and 65536", w.ChildMaxOpenFiles)
	}
	if w.ChildMaxMemoryMB < 256 || w.ChildMaxMemoryMB > 65536 {
		add("worker.child_max_memory_mb %d is not between 256 and 65536", w.ChildMaxMemoryMB)
	}
	if err := (&egress.Policy{Hosts: w.EgressHosts, Ports: []uint16{443}}).Check(); err != nil || len(w.EgressHosts) == 0 {
		add("worker.egress_hosts: list host names or *.name patterns (%v)", err)
	}
	for _, p := range w.ExtraExecPaths {
		if !filepath.IsAbs(p) || filepath.Clean(p) == "/" {
			add("worker.extra_exec_paths: %q must be an absolute path other than /", p)
		}
	}
	if rel, err := filepath.Rel(c.Spool.Dir, w.DownloadsDir); err == nil && !strings.HasPrefix(rel, "..") {
		add("worker.downloads_dir must not be inside spool.dir")
	}
	if !filepath.IsAbs(c.Downloader.Socket) || len(c.Downloader.Socket) > 100 {
		add("downloader.socket must be an absolute path of at most 100 bytes (a Unix socket address)")
	}
	return errors.Join(errs...)
}

// CheckCourier reports every problem with the courier's settings.
func (c *Config) CheckCourier() error {
	var errs []error
	for _, f := range []struct{ key, path string }{{"alert_webhook_file", c.Courier.AlertWebhookFile}, {"bot_token_file", c.Courier.BotTokenFile}} {
		if f.path != "" && !filepath.IsAbs(f.path) {
			errs = append(errs, fmt.Errorf("courier.%s must be an absolute path", f.key))
		}
	}
	if h := c.Courier.FinalTTLHours; h < 1 || h > 24*7 {
		errs = append(errs, fmt.Errorf("courier.final_ttl_hours %d is not between 1 and 168", h))
	}
	if m := c.Courier.MaxUploadMB; m < 0 || m > MaxUploadMBLimit {
		errs = append(errs, fmt.Errorf("courier.max_upload_mb %d is not between 0 (no uploads) and %d (Slack's per-file limit, 1 GB)", m, MaxUploadMBLimit))
	}
	if q := c.Courier.UploadQuotaMBPerDay; q < 1 || q > maxUploadQuotaMB {
		errs = append(errs, fmt.Errorf("courier.upload_quota_mb_per_day %d is not between 1 and %d", q, maxUploadQuotaMB))
	}
	if c.Courier.MaxUploadMB > 0 && !filepath.IsAbs(c.Worker.DownloadsDir) {
		errs = append(errs, errors.New("worker.downloads_dir must be an absolute path: the courier reads the stored files there for uploads"))
	}
	return errors.Join(errs...)
}

// BotToken reads the bot token for the courier: from
// courier.bot_token_file, else the systemd credential "bot_token" (an
// empty one means none); never from the environment. "" without error:
// none configured. A file others may read is refused, and so is a token
// that is not a bot token's shape (xoxb-…).
func (c *Config) BotToken() (token, source string, err error) {
	path := c.Courier.BotTokenFile
	if path == "" {
		dir := os.Getenv("CREDENTIALS_DIRECTORY")
		if dir == "" {
			return "", "", nil
		}
		path = filepath.Join(dir, "bot_token")
		if st, err := os.Stat(path); err != nil || st.Size() == 0 {
			return "", "", nil
		}
	}
	if c.Courier.BotTokenFile != "" {
		// A file it names, like app_token_file: root's or the courier's
		// own, no group or other bits (the credential's copy is
		// systemd's, in a directory only the unit may enter).
		st, err := os.Stat(path)
		if err != nil {
			return "", "", fmt.Errorf("courier.bot_token_file: %w", err)
		}
		if st.Mode().Perm()&0o077 != 0 {
			return "", "", fmt.Errorf("bot token %s may be read by its group or others (mode %v): chmod 0400", path, st.Mode().Perm())
		}
		if uid := st.Sys().(*syscall.Stat_t).Uid; uid != 0 && int(uid) != os.Geteuid() {
			return "", "", fmt.Errorf("bot token %s belongs to uid %d, neither root nor this process's user", path, uid)
		}
	}
	t, err := readSecretFile(path)
	if err != nil {
		return "", "", fmt.Errorf("courier.bot_token_file: %w", err)
	}
	if err := CheckBotToken(t); err != nil {
		return "", "", fmt.Errorf("%s: %w", path, err)
	}
	return t, path, nil
}

// CheckBotToken checks a bot token's shape: "xoxb-", then groups of
// letters and digits joined by single dashes, at most 255 bytes in all
// (the rule internal/slackapi applies; TestTokenRulesAgree holds them
// together).
func CheckBotToken(t string) error {
	rest, ok := strings.CutPrefix(t, "xoxb-")
	if !ok {
		if strings.HasPrefix(t, "xapp-") || strings.HasPrefix(t, "xoxp-") {
			return errors.New("this is an app-level or user token, not the bot token (xoxb-…, OAuth & Permissions -> Bot User OAuth Token)")
		}
		return errors.New("not a bot token (xoxb-…, OAuth & Permissions -> Bot User OAuth Token)")
	}
	if rest == "" || len(t) > 255 {
		return errors.New("the bot token's length is wrong")
	}
	for g := range strings.SplitSeq(rest, "-") {
		if g == "" {
			return errors.New("the bot token has an empty part between dashes")
		}
		for _, r := range g {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
				return errors.New("the bot token holds a character it cannot")
			}
		}
	}
	return nil
}

// CheckDownloader reports every problem with the downloader's settings:
// the [worker] ones it shares, and its socket.
func (c *Config) CheckDownloader() error { return c.CheckWorker() }

// Warnings lists every weakening of a security default in force.
func (c *Config) Warnings() []string {
	var w []string
	if c.Testing.MediaBaseURL != "" {
		w = append(w, "TEST MODE: testing.media_base_url is set; videos are fetched from "+c.Testing.MediaBaseURL+" instead of YouTube")
	}
	if c.Testing.LoopbackResponsePort != 0 {
		w = append(w, fmt.Sprintf("TEST MODE: testing.loopback_response_port is set; replies may go to http://127.0.0.1:%d", c.Testing.LoopbackResponsePort))
	}
	if c.Testing.SlackAPIURL != "" {
		w = append(w, "TEST MODE: testing.slack_api_url is set; Socket Mode connects to "+c.Testing.SlackAPIURL+" instead of Slack")
	}
	if c.Testing.BotAPIURL != "" {
		w = append(w, "TEST MODE: testing.bot_api_url is set; the courier posts with the bot token to "+c.Testing.BotAPIURL+" instead of Slack")
	}
	if n := c.Testing.StatusUpdateWaitSeconds; n != 0 {
		w = append(w, fmt.Sprintf("TEST MODE: testing.status_update_wait_seconds is set; the courier waits up to %d s for each intermediate status update", n))
	}
	if c.Security.InsecureNoLandlock {
		w = append(w, "INSECURE: security.insecure_no_landlock is set; if the kernel lacks Landlock, the daemons run without file system and network confinement")
	}
	for _, v := range c.Receiver.AllowedChannels {
		if v == "*" {
			w = append(w, "receiver.allowed_channels is \"*\": every channel of the allowed teams may use ytkeep")
		}
	}
	for _, v := range c.Receiver.AllowedUsers {
		if v == "*" {
			w = append(w, "receiver.allowed_users is \"*\": every user of the allowed teams may use ytkeep")
		}
	}
	if c.Receiver.AppID == "" {
		if c.Receiver.Mode == "socket" {
			w = append(w, "receiver.app_id is not set: commands are not checked against the app's ID")
		} else {
			w = append(w, "receiver.app_id is not set: requests of any Slack app signed with this signing secret are accepted")
		}
	}
	for _, h := range c.Receiver.ResponseURLHosts {
		if !slackHookHosts[h] {
			w = append(w, fmt.Sprintf("receiver.response_url_hosts includes %q, which is not one of Slack's hook hosts: replies and alerts may be posted there", h))
		}
	}
	return w
}

// AlertWebhook reads the admin channel's webhook URL for the receiver,
// or returns "" when none is configured. The URL must be one the
// receiver may post to.
func (c *Config) AlertWebhook() (string, error) {
	return c.alertWebhook(c.Receiver.AlertWebhookFile, "receiver.alert_webhook_file")
}

// CourierAlertWebhook is AlertWebhook for the courier
// (courier.alert_webhook_file).
func (c *Config) CourierAlertWebhook() (string, error) {
	return c.alertWebhook(c.Courier.AlertWebhookFile, "courier.alert_webhook_file")
}

func (c *Config) alertWebhook(path, key string) (string, error) {
	if path == "" {
		// The systemd credential "alert_webhook", if the unit loads one
		// (an empty one means: not configured).
		dir := os.Getenv("CREDENTIALS_DIRECTORY")
		if dir == "" {
			return "", nil
		}
		path = filepath.Join(dir, "alert_webhook")
		if st, err := os.Stat(path); err != nil || st.Size() == 0 {
			return "", nil
		}
	}
	u, err := readSecretFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", key, err)
	}
	if !c.ResponseURLAllowed(u) {
		var urls []string
		for _, h := range c.responseURLHosts() {
			urls = append(urls, "https://"+h+"/")
		}
		return "", fmt.Errorf("%s: not an %s URL", key, strings.Join(urls, " or "))
	}
	return u, nil
}

// SigningSecretPath is the file the signing secret is read from, or ""
// when it comes from the environment.
func (c *Config) SigningSecretPath() string {
	if c.Receiver.SigningSecretFile != "" {
		return c.Receiver.SigningSecretFile
	}
	if dir := os.Getenv("CREDENTIALS_DIRECTORY"); dir != "" {
		return filepath.Join(dir, "signing_secret")
	}
	return ""
}

// SigningSecret reads the signing secret: from signing_secret_file, else the
// systemd credential, else YTKEEP_SIGNING_SECRET. It also returns where it
// came from, for the start-up log.
func (c *Config) SigningSecret() (secret, source string, err error) {
	if path := c.SigningSecretPath(); path != "" {
		b, err := readSecretFile(path)
		if err != nil {
			return "", "", err
		}
		return b, path, nil
	}
	if s := os.Getenv("YTKEEP_SIGNING_SECRET"); s != "" {
		return strings.TrimSpace(s), "environment YTKEEP_SIGNING_SECRET", nil
	}
	return "", "", errors.New("no signing secret: set receiver.signing_secret_file, a systemd credential named signing_secret, or YTKEEP_SIGNING_SECRET")
}

// AppTokenPath is where the app-level token is read from:
// receiver.app_token_file, else the systemd credential "app_token", else
// "" (none).
func (c *Config) AppTokenPath() string {
	if c.Receiver.AppTokenFile != "" {
		return c.Receiver.AppTokenFile
	}
	if dir := os.Getenv("CREDENTIALS_DIRECTORY"); dir != "" {
		return filepath.Join(dir, "app_token")
	}
	return ""
}

// AppToken reads the app-level token for Socket Mode: from
// app_token_file, else the systemd credential "app_token"; never from the
// environment. A file others may read is refused (readSecretFile), and so
// is a token that is not an app-level token's shape (xapp-…): a bot or
// user token pasted there by mistake. It returns where it came from.
func (c *Config) AppToken() (token, source string, err error) {
	path := c.AppTokenPath()
	if path == "" {
		return "", "", errors.New("no app-level token: set receiver.app_token_file, or a systemd credential named app_token (the unit loads /etc/ytkeep/app_token)")
	}
	// A file named by app_token_file: stricter than the other secrets,
	// since its group may be the spool's, which the worker is in: root's
	// or the receiver's own, and no one else's bits. (systemd's
	// credential copy sits in a directory only the unit may enter, and
	// may show group bits from the ACL that lets the unit's user read it.)
	st, err := os.Stat(path)
	if err != nil {
		return "", "", fmt.Errorf("couldn't read the app-level token: %w", err)
	}
	if c.Receiver.AppTokenFile == "" {
		// the credential: readSecretFile's checks below
	} else if st.Mode().Perm()&0o077 != 0 {
		return "", "", fmt.Errorf("app-level token %s may be read by its group or others (mode %v): chmod 0400", path, st.Mode().Perm())
	} else if uid := st.Sys().(*syscall.Stat_t).Uid; uid != 0 && int(uid) != os.Geteuid() {
		return "", "", fmt.Errorf("app-level token %s belongs to uid %d, neither root nor this process's user", path, uid)
	}
	t, err := readSecretFile(path)
	if err != nil {
		return "", "", err
	}
	if err := CheckAppToken(t); err != nil {
		return "", "", fmt.Errorf("%s: %w", path, err)
	}
	return t, path, nil
}

// CheckAppToken checks an app-level token's shape: "xapp-", then
// letters, digits and dashes only, 20 to 512 characters in all.
func CheckAppToken(t string) error {
	if !strings.HasPrefix(t, "xapp-") {
		if strings.HasPrefix(t, "xox") {
			return errors.New("this is a bot or user token (xox…), not the app-level token (xapp-…, Basic Information -> App-Level Tokens, scope connections:write)")
		}
		return errors.New("not an app-level token (xapp-…)")
	}
	if len(t) < 20 || len(t) > 512 {
		return errors.New("the app-level token's length is wrong")
	}
	for _, r := range t {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
			return errors.New("the app-level token holds a character it cannot")
		}
	}
	return nil
}

// readSecretFile reads a small secret (the signing secret, the alert
// webhook URL) from a regular file that others cannot read.
func readSecretFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("couldn't read secret: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("couldn't read secret: %w", err)
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("secret %s is not a regular file", path)
	}
	if st.Mode().Perm()&0o007 != 0 {
		return "", fmt.Errorf("secret %s is readable or writable by others (mode %v): chmod o-rwx", path, st.Mode().Perm())
	}
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return "", fmt.Errorf("couldn't read secret: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("secret file %s is empty", path)
	}
	return s, nil
}

// ResponseURLAllowed reports whether the receiver may post to raw, a
// response_url from a verified request or the alert webhook: https on one
// of receiver.response_url_hosts exactly (no port, no user info), or a
// loopback http URL when the test option allows it.
func (c *Config) ResponseURLAllowed(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil || u.User != nil || u.Opaque != "" {
		return false
	}
	if u.Scheme == "https" && slices.Contains(c.responseURLHosts(), u.Host) && strings.HasPrefix(u.Path, "/") {
		return true
	}
	return c.Testing.LoopbackResponsePort != 0 && u.Scheme == "http" && checkLoopbackURL(raw) == nil &&
		u.Port() == strconv.Itoa(c.Testing.LoopbackResponsePort)
}

// responseURLHosts is receiver.response_url_hosts, or the default for a
// Config that Parse did not complete.
func (c *Config) responseURLHosts() []string {
	if c.Receiver.ResponseURLHosts == nil {
		return DefaultResponseURLHosts
	}
	return c.Receiver.ResponseURLHosts
}

// MediaPort returns the port of testing.media_base_url, or 0.
func (c *Config) MediaPort() uint16 {
	u, err := url.Parse(c.Testing.MediaBaseURL)
	if err != nil || c.Testing.MediaBaseURL == "" {
		return 0
	}
	p, err := strconv.Atoi(u.Port())
	if err != nil {
		if u.Scheme == "https" {
			return 443
		}
		return 80
	}
	return uint16(p)
}

func checkLoopbackURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%q is not an http(s) URL", raw)
	}
	if u.User != nil {
		return fmt.Errorf("%q has user info", raw)
	}
	if !isLoopbackHost(u.Hostname()) {
		return fmt.Errorf("%q is not a loopback address (test options accept only 127.0.0.0/8 and ::1)", raw)
	}
	return nil
}

// isLoopbackHost accepts only literal loopback IPs: a name could resolve
// anywhere.
func isLoopbackHost(h string) bool {
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
