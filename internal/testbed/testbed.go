// Package testbed is a loopback stand-in for the world around ytkeep: a
// media server in place of YouTube (serving a clip made with ffmpeg), a
// simulated Slack that signs slash commands and receives response_url
// posts, and the two daemons started as separate processes. The demo, the
// end-to-end tests and the load tool use it. Everything listens on
// 127.0.0.1 only.
package testbed

import (
	"bytes"
	"context"
	"crypto/rand"
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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ytkeep/ytkeep/internal/slackreq"
)

// MakeClip writes a short MP4 (H.264 test pattern and a sine tone).
func MakeClip(ffmpeg, path string, seconds int) error {
	cmd := exec.Command(ffmpeg, "-nostdin", "-loglevel", "error", "-y",
		"-f", "lavfi", "-i", fmt.Sprintf("testsrc=duration=%d:size=320x240:rate=15", seconds),
		"-f", "lavfi", "-i", fmt.Sprintf("sine=frequency=440:duration=%d", seconds),
		"-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest",
		"-movflags", "+faststart", "-metadata", "title=ytkeep test clip", path)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ffmpeg failed: %v: %s", err, out)
	}
	return nil
}

// Server is an HTTP server on a loopback port.
type Server struct {
	URL string // http://127.0.0.1:port
	srv *http.Server
}

func serve(h http.Handler) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Server{URL: "http://" + ln.Addr().String(), srv: &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}}
	go s.srv.Serve(ln)
	return s, nil
}

// Port returns the server's port.
func (s *Server) Port() string { return s.URL[strings.LastIndexByte(s.URL, ':')+1:] }

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// Media serves one clip as /media/<any video ID>.mp4.
type Media struct {
	*Server
	Requests atomic.Int64
	mux      *http.ServeMux
}

// ServeMedia serves clip.
func ServeMedia(clip string) (*Media, error) {
	m := &Media{mux: http.NewServeMux()}
	m.mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		m.Requests.Add(1)
		if !strings.HasPrefix(r.URL.Path, "/media/") || !strings.HasSuffix(r.URL.Path, ".mp4") {
			http.NotFound(w, r)
			return
		}
		http.ServeFile(w, r, clip)
	})
	s, err := serve(m.mux)
	if err != nil {
		return nil, err
	}
	m.Server = s
	return m, nil
}

// Handle adds an endpoint to the media server: a test's own way in or
// out of the loopback world (the assume-breach runner reports through
// one; release builds add none).
func (m *Media) Handle(pattern string, h http.Handler) { m.mux.Handle(pattern, h) }

// BaseURL is the value for testing.media_base_url.
func (m *Media) BaseURL() string { return m.URL + "/media/" }

// Slack simulates Slack: it signs slash commands and collects the messages
// posted to the response URLs it hands out.
type Slack struct {
	*Server
	Secret string
	Team   string
	AppID  string // api_app_id of the commands it sends (AppID by default)

	mu       sync.Mutex
	messages map[string][]string // response URL id -> texts
	notify   chan struct{}
	seq      atomic.Int64
}

// NewSlack starts a simulated Slack with a random signing secret.
func NewSlack(team string) (*Slack, error) {
	s := &Slack{Secret: randomSecret(), Team: team, AppID: AppID, messages: map[string][]string{}, notify: make(chan struct{}, 1)}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := strings.CutPrefix(r.URL.Path, "/response/")
		if !ok || r.Method != http.MethodPost {
			http.NotFound(w, r)
			return
		}
		var msg struct {
			Text string `json:"text"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&msg); err != nil {
			http.Error(w, "bad json", http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.messages[id] = append(s.messages[id], msg.Text)
		s.mu.Unlock()
		select {
		case s.notify <- struct{}{}:
		default:
		}
		w.Write([]byte("ok"))
	})
	srv, err := serve(h)
	if err != nil {
		return nil, err
	}
	s.Server = srv
	return s, nil
}

// Invocation is one slash command. Text is the text field as Slack
// sends it: the user's &, < and > escaped as &amp;, &lt; and &gt;, and,
// with the command's "Escape channels, users, and links" option on,
// links and mentions in Slack's markup (<https://…|label>, <@U…|name>).
type Invocation struct {
	User, Channel, Command, Text string
	// AppID, when set, replaces the Slack's AppID (a command sent to
	// another app).
	AppID string
	// Enterprise, when set, is the Enterprise Grid organization the
	// workspace belongs to, and the app is installed for all of it.
	Enterprise string
}

// Body returns the signed form body Slack would send, and the id of its
// response URL. Its fields are those of a slash command's payload
// (https://api.slack.com/interactivity/slash-commands).
func (s *Slack) Body(inv Invocation) (body []byte, responseID string) {
	responseID = strconv.FormatInt(s.seq.Add(1), 10)
	app := s.AppID
	if inv.AppID != "" {
		app = inv.AppID
	}
	v := url.Values{}
	v.Set("token", "deprecated-verification-token")
	v.Set("team_id", s.Team)
	v.Set("team_domain", "demo")
	if inv.Enterprise != "" {
		v.Set("enterprise_id", inv.Enterprise)
		v.Set("enterprise_name", "Demo Org")
		v.Set("is_enterprise_install", "true")
	} else {
		v.Set("is_enterprise_install", "false")
	}
	v.Set("channel_id", inv.Channel)
	v.Set("channel_name", "general")
	v.Set("user_id", inv.User)
	v.Set("user_name", "demo-user")
	v.Set("command", inv.Command)
	v.Set("text", inv.Text)
	v.Set("api_app_id", app)
	v.Set("response_url", s.URL+"/response/"+responseID)
	v.Set("trigger_id", responseID+"."+strconv.FormatInt(time.Now().UnixNano(), 10))
	return []byte(v.Encode()), responseID
}

// Send posts a signed slash command to endpoint and returns the
// ephemeral reply's text and the response URL id.
func (s *Slack) Send(ctx context.Context, client *http.Client, endpoint string, inv Invocation) (reply, responseID string, status int, err error) {
	body, responseID := s.Body(inv)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return "", "", 0, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	slackreq.SignRequest(req.Header, s.Secret, time.Now(), body)
	resp, err := client.Do(req)
	if err != nil {
		return "", "", 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return strings.TrimSpace(string(b)), responseID, resp.StatusCode, nil
	}
	var r struct {
		ResponseType string `json:"response_type"`
		Text         string `json:"text"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return "", responseID, resp.StatusCode, fmt.Errorf("reply is not JSON: %q", b)
	}
	if r.ResponseType != "ephemeral" {
		return "", responseID, resp.StatusCode, fmt.Errorf("reply is %q, not ephemeral", r.ResponseType)
	}
	return r.Text, responseID, resp.StatusCode, nil
}

// Messages returns the texts posted to a response URL so far.
func (s *Slack) Messages(responseID string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.messages[responseID]...)
}

// WaitFor waits until a message posted to responseID satisfies ok, and
// returns all messages posted to it.
func (s *Slack) WaitFor(ctx context.Context, responseID string, ok func(string) bool) ([]string, error) {
	for {
		msgs := s.Messages(responseID)
		for _, m := range msgs {
			if ok(m) {
				return msgs, nil
			}
		}
		select {
		case <-s.notify:
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return msgs, fmt.Errorf("no matching reply: %w (got %q)", ctx.Err(), msgs)
		}
	}
}

// Final reports whether a message is a final result.
func Final(m string) bool {
	return strings.HasPrefix(m, ":white_check_mark:") || strings.HasPrefix(m, ":x:")
}

func randomSecret() string {
	b := make([]byte, 16)
	rand.Read(b)
	return fmt.Sprintf("%x", b)
}

// FreePort returns a loopback address with a port that was free a moment ago.
func FreePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// Daemon is a running ytkeep daemon process.
type Daemon struct {
	Name    string
	Cmd     *exec.Cmd
	LogPath string
	done    chan struct{} // closed when the process has ended
	err     error         // how it ended, set before done is closed
}

// Start runs bin -config config with its log in logPath.
func Start(name, bin, configPath, logPath string, env []string) (*Daemon, error) {
	return start(name, bin, configPath, false, logPath, env)
}

// StartConfigStdin runs bin -config - with the file configPath opened
// here, by the caller, as its standard input: what the downloader's unit
// does (StandardInput=file:), for a daemon whose user may not open the
// file itself.
func StartConfigStdin(name, bin, configPath, logPath string, env []string) (*Daemon, error) {
	return start(name, bin, configPath, true, logPath, env)
}

func start(name, bin, configPath string, stdin bool, logPath string, env []string) (*Daemon, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-config", configPath)
	if stdin {
		f, err := os.Open(configPath)
		if err != nil {
			logf.Close()
			return nil, err
		}
		defer f.Close() // the daemon has its own copy once started
		cmd = exec.Command(bin, "-config", "-")
		cmd.Stdin = f
	}
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Env = env
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	d := &Daemon{Name: name, Cmd: cmd, LogPath: logPath, done: make(chan struct{})}
	go func() { d.err = cmd.Wait(); logf.Close(); close(d.done) }()
	return d, nil
}

// Exited reports whether the process has ended, and how.
func (d *Daemon) Exited() (bool, error) {
	select {
	case <-d.done:
		return true, d.err
	default:
		return false, nil
	}
}

// stopWait bounds a daemon's graceful stop in Stop: a hang guard, far
// more than a stop takes even on a loaded machine.
const stopWait = time.Minute

// Stop sends SIGINT and waits (SIGKILL after stopWait, an error).
// Stopping a daemon that has ended returns how it ended.
func (d *Daemon) Stop() error {
	if exited, err := d.Exited(); exited {
		return err
	}
	d.Cmd.Process.Signal(os.Interrupt)
	select {
	case <-d.done:
		return d.err
	case <-time.After(stopWait):
		d.Cmd.Process.Kill()
		<-d.done
		return fmt.Errorf("%s did not stop within %v of SIGINT", d.Name, stopWait)
	}
}

// RSS returns the daemon's resident memory (VmRSS) in bytes.
func (d *Daemon) RSS() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.Cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS line")
}

// Log returns the daemon's log so far.
func (d *Daemon) Log() string {
	b, _ := os.ReadFile(d.LogPath)
	return string(b)
}

// WaitHealthy polls base+"/healthz" until it answers or ctx ends.
func WaitHealthy(ctx context.Context, base string, d *Daemon) error {
	for {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if exited, _ := d.Exited(); exited {
			return fmt.Errorf("%s exited:\n%s", d.Name, d.Log())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not healthy: %w", d.Name, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// FindBinary returns dir/name if executable.
func FindBinary(dir, name string) (string, error) {
	p := filepath.Join(dir, name)
	if st, err := os.Stat(p); err != nil || st.Mode()&0o111 == 0 {
		return "", fmt.Errorf("%s not found or not executable (run make build)", p)
	}
	return p, nil
}
