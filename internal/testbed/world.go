package testbed

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ytkeep/ytkeep/internal/spool"
)

// Numeric ids of the daemons' users when the testbed runs as root (no
// passwd entries needed; nothing is left behind).
const (
	ReceiverUID   = 61001
	WorkerUID     = 61002
	DownloaderUID = 61003
	SpoolGID      = 61010
	MediaGID      = 61011
	DownloaderGID = 61012 // the downloader's own group; the worker is a member
	CourierUID    = 61004
	CourierGID    = 61013 // the courier's own group: the receiver's directory's
)

// Identities used by the simulated workspace. AppID is the example
// configuration's app_id: make systemd-test installs ytkeep.example.toml
// and edits only the allowlists, so the simulated Slack's app must be
// the one the example names.
const (
	Team    = "T0DEMO0001"
	Channel = "C0DEMO0001"
	User    = "U0DEMO0001"
	AppID   = "A0123456789"
)

// AdminChannel is the response id under which the simulated Slack
// collects what is posted to the admins' alert webhook.
const AdminChannel = "admin-alerts"

// WorldOptions say what to start.
type WorldOptions struct {
	Dir         string // empty directory to hold everything
	BinDir      string // holds ytkeep-receiver, ytkeep-worker, ytkeep-downloader and ytkeep-courier
	FFmpeg      string // default /usr/bin/ffmpeg
	YtDlp       string // default /usr/bin/yt-dlp
	NoWorker    bool   // start only the receiver (load tests); StartWorker starts the rest
	ClipSeconds int    // default 3
	// ExtraWorker is appended to the generated [worker] table.
	ExtraWorker string
	// AnyUser allows every user of the team (the load tool sends as many
	// users, since each is rate-limited).
	AnyUser bool
	// AllowedEnterprises is receiver.allowed_enterprises (default none:
	// no check).
	AllowedEnterprises []string
	// AnyApp leaves receiver.app_id unset: commands for any app signed
	// with the secret are answered (announced at start).
	AnyApp bool
	// SingleUser keeps one owner for the whole tree even as root, and no
	// run_as: for the assume-breach run with Unix users switched off.
	SingleUser bool
	// ExtraEnv is added to the daemons' environment.
	ExtraEnv []string
	// SocketMode runs the receiver in Socket Mode against the simulated
	// Slack's Socket Mode server (World.Socket); commands are sent with
	// World.Send. Otherwise it serves HTTP at Endpoint.
	SocketMode bool
	// Bot gives the courier a bot token for the simulated Web API
	// (World.WebAPI): status messages in the requester's DM.
	Bot bool
	// DataDir, when set, holds the spool and the downloads instead of
	// Dir (the chaos test fills a small file system there, not the logs).
	DataDir string
	// MetricsDir is metrics.dir, written every second; the caller makes
	// its tree (a directory per daemon, each its user's).
	MetricsDir string
	// AckWait is how long the simulated Slack waits for a Socket Mode
	// acknowledgement (SocketMode.AckWait), and UpdateWait how long the
	// courier waits for Slack to take an intermediate status update
	// (testing.status_update_wait_seconds, whole seconds). Zero: a
	// minute each, hang guards for tests on a loaded machine. The demo
	// sets Slack's and production's 3 s.
	AckWait, UpdateWait time.Duration
}

// World is a complete loopback installation.
type World struct {
	recvBin, workBin, dlBin, courierBin                     string
	env                                                     []string
	dlConfigStdin                                           bool // start the downloader with -config -
	Dir, SpoolDir, DownloadsDir, ConfigPath, Endpoint, Clip string
	// SocketDir holds the downloader's socket (a short path of its own:
	// a socket's address holds at most 107 bytes).
	SocketDir                             string
	Media                                 *Media
	Slack                                 *Slack
	Socket                                *SocketMode // in Socket Mode only
	WebAPI                                *WebAPI     // with WorldOptions.Bot only
	Receiver, Worker, Downloader, Courier *Daemon
}

// NewWorld makes the clip, starts the media server and simulated Slack,
// writes a configuration and starts the daemons.
func NewWorld(ctx context.Context, opt WorldOptions) (_ *World, err error) {
	if opt.FFmpeg == "" {
		opt.FFmpeg = "/usr/bin/ffmpeg"
	}
	if opt.YtDlp == "" {
		opt.YtDlp = "/usr/bin/yt-dlp"
	}
	if opt.ClipSeconds == 0 {
		opt.ClipSeconds = 3
	}
	recvBin, err := FindBinary(opt.BinDir, "ytkeep-receiver")
	if err != nil {
		return nil, err
	}
	workBin, err := FindBinary(opt.BinDir, "ytkeep-worker")
	if err != nil {
		return nil, err
	}
	dlBin, err := FindBinary(opt.BinDir, "ytkeep-downloader")
	if err != nil {
		return nil, err
	}
	courierBin, err := FindBinary(opt.BinDir, "ytkeep-courier")
	if err != nil {
		return nil, err
	}
	data := opt.Dir
	if opt.DataDir != "" {
		data = opt.DataDir
	}
	w := &World{Dir: opt.Dir, SpoolDir: filepath.Join(data, "spool"), DownloadsDir: filepath.Join(data, "downloads"),
		ConfigPath: filepath.Join(opt.Dir, "ytkeep.toml"), Clip: filepath.Join(opt.Dir, "clip.mp4")}
	defer func() {
		if err != nil {
			w.Close()
		}
	}()
	if w.SocketDir, err = os.MkdirTemp("", "ytkeep-sock-"); err != nil {
		return nil, err
	}
	if err := MakeClip(opt.FFmpeg, w.Clip, opt.ClipSeconds); err != nil {
		return nil, err
	}
	if w.Media, err = ServeMedia(w.Clip); err != nil {
		return nil, err
	}
	if w.Slack, err = NewSlack(Team); err != nil {
		return nil, err
	}
	asRoot := os.Geteuid() == 0 && !opt.SingleUser
	var owners *spool.Owners
	runAs := ""
	if os.Geteuid() == 0 {
		// The daemons must be able to reach the tree: open up the
		// directories above it.
		for _, d := range []string{opt.Dir, filepath.Dir(opt.Dir), opt.BinDir, data} {
			if err := OpenUp(d); err != nil {
				return nil, err
			}
		}
	}
	if asRoot {
		// Separate users, as in production.
		owners = &spool.Owners{ReceiverUID: ReceiverUID, WorkerUID: WorkerUID, SpoolGID: SpoolGID, MediaGID: MediaGID,
			DownloaderGID: DownloaderGID, CourierUID: CourierUID, CourierGID: CourierGID}
		// As deploy/sysusers.d: the spool group as primary group; the
		// worker also in the downloader's; the downloader in no other; the
		// courier in a group of its own and the media group.
		runAs = fmt.Sprintf(`[courier.run_as]
user = "%d"
group = "%d"
groups = ["%d"]

[receiver.run_as]
user = "%d"
group = "%d"
groups = []

[worker.run_as]
user = "%d"
group = "%d"
groups = ["%d"]

[downloader.run_as]
user = "%d"
group = "%d"
groups = []
`, CourierUID, CourierGID, MediaGID, ReceiverUID, SpoolGID, WorkerUID, SpoolGID, DownloaderGID, DownloaderUID, DownloaderGID)
		// The socket's directory, as systemd's RuntimeDirectory= makes it.
		if err := os.Chown(w.SocketDir, DownloaderUID, DownloaderGID); err != nil {
			return nil, err
		}
		if err := os.Chmod(w.SocketDir, 0o750); err != nil {
			return nil, err
		}
	}
	if err := (spool.Layout{Root: w.SpoolDir}).Create(w.DownloadsDir, owners); err != nil {
		return nil, err
	}
	secretPath := filepath.Join(opt.Dir, "signing_secret")
	if err := os.WriteFile(secretPath, []byte(w.Slack.Secret+"\n"), 0o400); err != nil {
		return nil, err
	}
	if asRoot {
		if err := os.Chown(secretPath, ReceiverUID, ReceiverUID); err != nil {
			return nil, err
		}
	}
	// The admins' alert channel: an incoming webhook of the simulated Slack.
	hookPath := filepath.Join(opt.Dir, "alert_webhook")
	if err := os.WriteFile(hookPath, []byte(w.Slack.URL+"/response/"+AdminChannel+"\n"), 0o400); err != nil {
		return nil, err
	}
	if asRoot {
		if err := os.Chown(hookPath, ReceiverUID, ReceiverUID); err != nil {
			return nil, err
		}
	}
	// The courier's copy, its own.
	courierHookPath := filepath.Join(opt.Dir, "courier_alert_webhook")
	if err := os.WriteFile(courierHookPath, []byte(w.Slack.URL+"/response/"+AdminChannel+"\n"), 0o400); err != nil {
		return nil, err
	}
	if asRoot {
		if err := os.Chown(courierHookPath, CourierUID, CourierGID); err != nil {
			return nil, err
		}
	}
	courierKeys, botKeys := "", ""
	if opt.Bot {
		if w.WebAPI, err = NewWebAPI(w.Slack); err != nil {
			return nil, err
		}
		tokenPath := filepath.Join(opt.Dir, "bot_token")
		if err := os.WriteFile(tokenPath, []byte(w.WebAPI.BotToken+"\n"), 0o400); err != nil {
			return nil, err
		}
		if asRoot {
			if err := os.Chown(tokenPath, CourierUID, CourierGID); err != nil {
				return nil, err
			}
		}
		courierKeys = fmt.Sprintf("bot_token_file = %q\nstatus_messages = true\n", tokenPath)
		botKeys = fmt.Sprintf("bot_api_url = %q\n", w.WebAPI.APIURL())
	}
	addr, err := FreePort()
	if err != nil {
		return nil, err
	}
	w.Endpoint = "http://" + addr + "/slack/commands"
	recvMode, socketKeys := "http", ""
	if opt.SocketMode {
		if w.Socket, err = NewSocketMode(w.Slack); err != nil {
			return nil, err
		}
		if opt.AckWait != 0 {
			w.Socket.AckWait = opt.AckWait
		}
		w.Endpoint = ""
		tokenPath := filepath.Join(opt.Dir, "app_token")
		if err := os.WriteFile(tokenPath, []byte(w.Socket.AppToken+"\n"), 0o400); err != nil {
			return nil, err
		}
		if asRoot {
			if err := os.Chown(tokenPath, ReceiverUID, ReceiverUID); err != nil {
				return nil, err
			}
		}
		recvMode = "socket"
		socketKeys = fmt.Sprintf("app_token_file = %q\n", tokenPath)
	}
	users := User
	if opt.AnyUser {
		users = "*"
	}
	var quoted []string
	for _, e := range opt.AllowedEnterprises {
		quoted = append(quoted, strconv.Quote(e))
	}
	enterprises := strings.Join(quoted, ", ")
	appID := AppID
	if opt.AnyApp {
		appID = ""
	}
	updateWait := 60
	if opt.UpdateWait != 0 {
		updateWait = max(1, int(opt.UpdateWait/time.Second))
	}
	cfg := fmt.Sprintf(`# Generated by the ytkeep testbed: loopback only.
[spool]
dir = %q

[receiver]
mode = %q
%slisten = %q
signing_secret_file = %q
app_id = %q
allowed_teams = [%q]
allowed_channels = [%q]
allowed_users = [%q]
allowed_enterprises = [%s]
alert_webhook_file = %q

[courier]
alert_webhook_file = %q
%s
[worker]
ytdlp = %q
ffmpeg = %q
downloads_dir = %q
job_timeout_seconds = 120
max_file_mb = 64
%s
[downloader]
socket = %q

[testing]
media_base_url = %q
loopback_response_port = %s
status_update_wait_seconds = %d
%s%s
%s`, w.SpoolDir, recvMode, socketKeys, addr, secretPath, appID, Team, Channel, users, enterprises, hookPath, courierHookPath, courierKeys, opt.YtDlp, opt.FFmpeg, w.DownloadsDir, opt.ExtraWorker,
		filepath.Join(w.SocketDir, "launcher.sock"), w.Media.BaseURL(), w.Slack.Port(), updateWait, slackAPI(w.Socket), botKeys, runAs)
	if opt.MetricsDir != "" {
		cfg += fmt.Sprintf("\n[metrics]\ndir = %q\ninterval_seconds = 1\n", opt.MetricsDir)
	}
	// As root, as scripts/install.sh leaves it: root's, for the spool
	// group (the receiver's and the worker's primary group), 0640. The
	// downloader, in neither group, gets it on standard input, as from
	// its unit (StandardInput=file:), and its downloads cannot read it.
	// As one user, 0644 and by path.
	mode := os.FileMode(0o644)
	if asRoot {
		mode = 0o640
	}
	if err := os.WriteFile(w.ConfigPath, []byte(cfg), mode); err != nil {
		return nil, err
	}
	if asRoot {
		if err := os.Chown(w.ConfigPath, 0, SpoolGID); err != nil {
			return nil, err
		}
		if err := os.Chmod(w.ConfigPath, mode); err != nil { // whatever the umask
			return nil, err
		}
		w.dlConfigStdin = true
	}
	env := append([]string{"PATH=/usr/local/bin:/usr/bin:/bin"}, opt.ExtraEnv...)
	if w.Receiver, err = Start("ytkeep-receiver", recvBin, w.ConfigPath, filepath.Join(opt.Dir, "receiver.log"), env); err != nil {
		return nil, err
	}
	if w.Socket != nil {
		if err := w.Socket.WaitConnected(ctx, 1); err != nil {
			return nil, fmt.Errorf("%w\nreceiver log:\n%s", err, w.Receiver.Log())
		}
	} else if err := WaitHealthy(ctx, "http://"+addr, w.Receiver); err != nil {
		return nil, err
	}
	w.recvBin, w.workBin, w.dlBin, w.courierBin, w.env = recvBin, workBin, dlBin, courierBin, env
	if err := w.StartCourier(); err != nil {
		return nil, err
	}
	if !opt.NoWorker {
		if err := w.StartWorker(); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// KillReceiver kills the receiver with SIGKILL, as a crash would, and
// starts it again (in Socket Mode, waits until it has connected).
func (w *World) KillReceiver(ctx context.Context) (err error) {
	w.Receiver.Cmd.Process.Kill()
	w.Receiver.Stop()
	if w.Socket != nil {
		if err := waitNone(ctx, w.Socket); err != nil {
			return err
		}
	}
	w.Receiver, err = Start("ytkeep-receiver", w.recvBin, w.ConfigPath, filepath.Join(w.Dir, "receiver-2.log"), w.env)
	if err != nil {
		return err
	}
	if w.Socket != nil {
		return w.Socket.WaitConnected(ctx, 1)
	}
	return nil
}

// waitNone waits until sm has no connection.
func waitNone(ctx context.Context, sm *SocketMode) error {
	for sm.Connections() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("the old connection stays open: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// StartWorker starts the downloader, unless it runs, and the worker
// (NewWorld does, unless NoWorker is set).
func (w *World) StartWorker() (err error) {
	if w.Downloader == nil {
		start := Start
		if w.dlConfigStdin {
			start = StartConfigStdin
		}
		w.Downloader, err = start("ytkeep-downloader", w.dlBin, w.ConfigPath, filepath.Join(w.Dir, "downloader.log"), w.env)
		if err != nil {
			return err
		}
	}
	w.Worker, err = Start("ytkeep-worker", w.workBin, w.ConfigPath, filepath.Join(w.Dir, "worker.log"), w.env)
	return err
}

// StartCourier starts the courier (NewWorld does). As root it gets its
// configuration on standard input, as from its unit: it is not in the
// spool group the file is readable by.
func (w *World) StartCourier() (err error) {
	start := Start
	if w.dlConfigStdin {
		start = StartConfigStdin
	}
	n := 1
	if w.Courier != nil {
		n = 2 // a restart writes a second courier.log
	}
	w.Courier, err = start("ytkeep-courier", w.courierBin, w.ConfigPath, filepath.Join(w.Dir, fmt.Sprintf("courier-%d.log", n)), w.env)
	if err != nil {
		return err
	}
	// Ready, as the receiver and the worker are before NewWorld returns:
	// a stop that comes earlier would find no signal handler yet.
	for deadline := time.Now().Add(2 * time.Minute); !strings.Contains(w.Courier.Log(), `"msg":"courier ready"`); time.Sleep(20 * time.Millisecond) {
		if exited, _ := w.Courier.Exited(); exited || time.Now().After(deadline) {
			return fmt.Errorf("the courier did not get ready:\n%s", w.Courier.Log())
		}
	}
	return nil
}

// KillCourier kills the courier with SIGKILL, as a crash would, and
// starts it again.
func (w *World) KillCourier() error {
	w.Courier.Cmd.Process.Kill()
	w.Courier.Stop()
	return w.StartCourier()
}

// AdminAlerts returns what the admin channel has received so far.
func (w *World) AdminAlerts() []string { return w.Slack.Messages(AdminChannel) }

// OpenUp lets other users traverse and list dir: it adds r-x for group and
// others and changes no other bit (so /tmp keeps 1777, for one).
func OpenUp(dir string) error {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return err
	}
	mode := st.Mode & 0o7777
	if mode&0o055 == 0o055 {
		return nil
	}
	return unix.Chmod(dir, mode|0o055)
}

// slackAPI is the [testing] line that points Socket Mode at sm.
func slackAPI(sm *SocketMode) string {
	if sm == nil {
		return ""
	}
	return fmt.Sprintf("slack_api_url = %q\n", sm.APIURL())
}

// Send sends a slash command the way the world's receiver takes them (a
// Socket Mode envelope, or a signed HTTP request) and returns the
// ephemeral reply and the response URL id.
func (w *World) Send(ctx context.Context, inv Invocation) (reply, responseID string, err error) {
	if w.Socket != nil {
		return w.Socket.Send(ctx, inv)
	}
	reply, responseID, status, err := w.Slack.Send(ctx, http.DefaultClient, w.Endpoint, inv)
	if err == nil && status != http.StatusOK {
		err = fmt.Errorf("status %d: %s", status, reply)
	}
	return reply, responseID, err
}

// Invocation returns a slash command from the allowed user and channel.
func (w *World) Invocation(text string) Invocation {
	return Invocation{User: User, Channel: Channel, Command: "/ytkeep", Text: text}
}

// Close stops everything. It returns the first daemon error.
func (w *World) Close() error {
	var errs []string
	for _, d := range []*Daemon{w.Worker, w.Receiver, w.Downloader, w.Courier} {
		if d != nil {
			if err := d.Stop(); err != nil {
				errs = append(errs, fmt.Sprintf("%s: %v", d.Name, err))
			}
		}
	}
	if w.SocketDir != "" {
		os.RemoveAll(w.SocketDir)
	}
	if w.Media != nil {
		w.Media.Close()
	}
	if w.Socket != nil {
		w.Socket.Close()
	}
	if w.WebAPI != nil {
		w.WebAPI.Close()
	}
	if w.Slack != nil {
		w.Slack.Close()
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// ReconfigureCourier adds keys (TOML lines, e.g. "max_upload_mb = 1") to
// the configuration's [courier] table and restarts the courier, as an
// admin would: edit the file, restart the unit. The other daemons keep
// what they read at their start. Call it once per world: a key given
// twice is a TOML error.
func (w *World) ReconfigureCourier(keys string) error {
	b, err := os.ReadFile(w.ConfigPath)
	if err != nil {
		return err
	}
	cfg, n := strings.Replace(string(b), "\n[courier]\n", "\n[courier]\n"+strings.TrimSpace(keys)+"\n", 1), strings.Count(string(b), "\n[courier]\n")
	if n != 1 {
		return fmt.Errorf("the configuration has %d [courier] tables", n)
	}
	// The file exists: its owner and mode stay.
	if err := os.WriteFile(w.ConfigPath, []byte(cfg), 0); err != nil {
		return err
	}
	if err := w.Courier.Stop(); err != nil {
		return fmt.Errorf("stopping the courier: %w", err)
	}
	return w.StartCourier()
}
