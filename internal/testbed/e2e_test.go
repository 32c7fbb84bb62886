package testbed

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
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

	"github.com/ytkeep/ytkeep/internal/confine"
	"github.com/ytkeep/ytkeep/internal/job"
	"github.com/ytkeep/ytkeep/internal/sandbox"
	"github.com/ytkeep/ytkeep/internal/slackreq"
)

var binDir string

// TestMain builds the daemons once, statically, as make build does.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ytkeep-e2e-bin-")
	if err != nil {
		panic(err)
	}
	build := exec.Command("go", "build", "-trimpath", "-o", dir+"/", "../../cmd/ytkeep-receiver", "../../cmd/ytkeep-worker", "../../cmd/ytkeep-downloader", "../../cmd/ytkeep-courier", "../../cmd/ytkeep")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		panic("building daemons: " + err.Error() + "\n" + string(out))
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// needTools fails on CI (which must install them) and skips loudly elsewhere.
func needTools(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"/usr/bin/yt-dlp", "/usr/bin/ffmpeg"} {
		if _, err := os.Stat(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s missing on CI", tool)
			}
			t.Skipf("SKIPPED: %s is not installed (apt-get install yt-dlp ffmpeg)", tool)
		}
	}
}

func newWorld(t *testing.T, opt WorldOptions) *World {
	t.Helper()
	needTools(t)
	if testing.Short() {
		t.Skip("end-to-end test skipped in -short mode")
	}
	// A hang guard, not a bound: making the clip with ffmpeg and starting
	// the daemons take tens of seconds on a loaded machine.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	opt.Dir = t.TempDir()
	if opt.BinDir == "" {
		opt.BinDir = binDir
	}
	w, err := NewWorld(ctx, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Errorf("stopping daemons: %v", err)
		}
		if t.Failed() {
			t.Logf("receiver log:\n%s", w.Receiver.Log())
			if w.Worker != nil {
				t.Logf("worker log:\n%s", w.Worker.Log())
			}
			if w.Downloader != nil {
				t.Logf("downloader log:\n%s", w.Downloader.Log())
			}
			if w.Courier != nil {
				t.Logf("courier log:\n%s", w.Courier.Log())
			}
		}
	})
	return w
}

func send(t *testing.T, w *World, text string) (string, string) {
	t.Helper()
	reply, id, status, err := w.Slack.Send(context.Background(), http.DefaultClient, w.Endpoint, w.Invocation(text))
	if err != nil || status != http.StatusOK {
		t.Fatalf("send %q: status %d, %v, %q", text, status, err, reply)
	}
	return reply, id
}

func waitFinal(t *testing.T, w *World, id string) []string {
	t.Helper()
	// A hang guard past the worker's job_timeout_seconds (120): a job
	// that takes too long ends in a final message anyway.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	msgs, err := w.Slack.WaitFor(ctx, id, Final)
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

func TestEndToEnd(t *testing.T) {
	w := newWorld(t, WorldOptions{})
	// The control of TestSocketModeEndToEnd's check: in HTTP mode the
	// receiver's one listening socket is found.
	if ports := listening(t, w.Receiver.Cmd.Process.Pid); len(ports) != 1 {
		t.Errorf("the HTTP receiver listens on %v, want one port", ports)
	}

	reply, id := send(t, w, "<https://www.youtube.com/watch?v=dQw4w9WgXcQ|a video> 720p")
	if !strings.HasPrefix(reply, "Queued `dQw4w9WgXcQ` (720p) as job `") {
		t.Fatalf("ack %q", reply)
	}
	msgs := waitFinal(t, w, id)
	if len(msgs) != 2 || !strings.HasPrefix(msgs[0], ":hourglass_flowing_sand: Downloading `dQw4w9WgXcQ`") ||
		!strings.HasPrefix(msgs[1], ":white_check_mark: Saved *dQw4w9WgXcQ* (") || !strings.Contains(msgs[1], "as `dQw4w9WgXcQ-720p.mp4`") {
		t.Fatalf("messages %q", msgs)
	}
	stored := filepath.Join(w.DownloadsDir, "dQw4w9WgXcQ-720p.mp4")
	st, err := os.Stat(stored)
	if err != nil {
		t.Fatal(err)
	}
	clip, _ := os.Stat(w.Clip)
	if st.Size() != clip.Size() || st.Mode().Perm() != 0o640 {
		t.Fatalf("stored %d bytes mode %v; clip %d bytes", st.Size(), st.Mode().Perm(), clip.Size())
	}
	var side map[string]any
	b, err := os.ReadFile(filepath.Join(w.DownloadsDir, "dQw4w9WgXcQ-720p.json"))
	if err != nil || json.Unmarshal(b, &side) != nil || side["file"] != "dQw4w9WgXcQ-720p.mp4" {
		t.Fatalf("sidecar %s: %v", b, err)
	}

	// The same video again is answered from what is stored, without fetching.
	before := w.Media.Requests.Load()
	_, id2 := send(t, w, "https://youtu.be/dQw4w9WgXcQ 720p")
	msgs = waitFinal(t, w, id2)
	if len(msgs) != 1 || !strings.Contains(msgs[0], "It was already on the server.") {
		t.Fatalf("second request: %q", msgs)
	}
	if w.Media.Requests.Load() != before {
		t.Fatal("a stored video was fetched again")
	}

	// Audio only.
	_, id3 := send(t, w, "https://youtu.be/dQw4w9WgXcQ audio")
	msgs = waitFinal(t, w, id3)
	if !strings.Contains(msgs[len(msgs)-1], "as `dQw4w9WgXcQ-audio.m4a`") {
		t.Fatalf("audio: %q", msgs)
	}

	// Nothing is left in flight once the courier has cleaned up.
	waitEmpty(t, w, "incoming", "results", "courier/claimed", "worker/claimed", "work", "courier/quarantine", "worker/quarantine")
	for _, ev := range []string{`"event":"accepted"`, `"event":"claimed"`, `"event":"finished"`, `"event":"replied"`} {
		if !strings.Contains(w.Receiver.Log()+w.Worker.Log()+w.Courier.Log(), ev) {
			t.Errorf("no audit event %s", ev)
		}
	}
	// The downloads went through the egress proxy, to the media server
	// alone, and it reported each connection with its bytes.
	egressLine := regexp.MustCompile(`"event":"egress","job":"[a-z2-7]{26}","video":"dQw4w9WgXcQ","host":"127\.0\.0\.1","port":` + w.Media.Port() + `,"addr":"127\.0\.0\.1:` + w.Media.Port() + `","up":[1-9][0-9]*,"down":[1-9][0-9]*`)
	if n := len(egressLine.FindAllString(w.Worker.Log(), -1)); n < 2 {
		t.Errorf("%d egress events for the media server, want one per download at least", n)
	}
	if strings.Contains(w.Worker.Log(), `"event":"egress_denied"`) {
		t.Errorf("the proxy refused something an honest download asked for:\n%s", w.Worker.Log())
	}
	if strings.Contains(w.Receiver.Log()+w.Worker.Log()+w.Courier.Log(), w.Slack.Secret) {
		t.Error("the signing secret appears in a log")
	}
	if strings.Contains(w.Worker.Log(), "/response/") {
		t.Error("a response_url reached the worker's log")
	}
}

// waitEmpty waits for the spool directories to hold no record, up to a
// minute (a hang guard).
func waitEmpty(t *testing.T, w *World, dirs ...string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for _, d := range dirs {
		for {
			names := spoolNames(t, w, d)
			if len(names) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%s still holds %v", d, names)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func spoolNames(t *testing.T, w *World, dir string) []string {
	ents, err := os.ReadDir(filepath.Join(w.SpoolDir, dir))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	return names
}

// countAlerts counts the admin-channel alert lines that contain all parts.
func countAlerts(w *World, parts ...string) int {
	n := 0
	for _, m := range w.AdminAlerts() {
		for _, line := range strings.Split(m, "\n") {
			ok := true
			for _, p := range parts {
				ok = ok && strings.Contains(line, p)
			}
			if ok {
				n++
			}
		}
	}
	return n
}

// waitCount waits until n admin-channel alert lines contain all parts,
// up to a minute (a hang guard).
func waitCount(w *World, n int, parts ...string) bool {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if countAlerts(w, parts...) >= n {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}

// badSignatures counts the bad signatures the admin channel was told
// of: a line for the first of a spell, and the requests= of each
// summary (reason=unauthenticated).
func badSignatures(w *World) int {
	n := countAlerts(w, "reason=bad_signature")
	for _, m := range w.AdminAlerts() {
		for _, line := range strings.Split(m, "\n") {
			if !strings.Contains(line, "reason=unauthenticated") || !strings.Contains(line, "reasons=bad_signature:") {
				continue
			}
			if f := regexp.MustCompile(` requests=(\d+) `).FindStringSubmatch(line); f != nil {
				k, _ := strconv.Atoi(f[1])
				n += k
			}
		}
	}
	return n
}

func TestRefusals(t *testing.T) {
	w := newWorld(t, WorldOptions{NoWorker: true})
	tests := []struct{ name, text, want string }{
		{"help", "help", "ytkeep keeps a YouTube video"},
		{"empty", "", "Usage:"},
		{"other site", "https://vimeo.com/1", "only YouTube links are accepted"},
		{"lookalike", "https://www.youtube.com.evil.example/watch?v=dQw4w9WgXcQ", "is not a YouTube host"},
		{"bad format", "https://youtu.be/dQw4w9WgXcQ 4k", "Unknown format"},
		{"too many words", "https://youtu.be/dQw4w9WgXcQ 720p --exec", "Usage:"},
		{"option injection", "--exec=id", "starting with https://"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reply, _ := send(t, w, tt.text)
			if !strings.Contains(reply, tt.want) {
				t.Fatalf("reply %q, want it to contain %q", reply, tt.want)
			}
		})
	}
	t.Run("unauthorized user", func(t *testing.T) {
		inv := w.Invocation("https://youtu.be/dQw4w9WgXcQ")
		inv.User = "U0INTRUDER"
		reply, _, _, err := w.Slack.Send(context.Background(), http.DefaultClient, w.Endpoint, inv)
		if err != nil || !strings.Contains(reply, "not allowed") {
			t.Fatalf("%q %v", reply, err)
		}
	})
	secret := w.Slack.Secret
	t.Run("bad signature", func(t *testing.T) {
		w.Slack.Secret = "ffffffffffffffffffffffffffffffff"
		defer func() { w.Slack.Secret = secret }()
		_, _, status, err := w.Slack.Send(context.Background(), http.DefaultClient, w.Endpoint, w.Invocation("https://youtu.be/dQw4w9WgXcQ"))
		if err != nil || status != http.StatusUnauthorized {
			t.Fatalf("status %d, %v", status, err)
		}
	})
	ents, _ := os.ReadDir(filepath.Join(w.SpoolDir, "incoming"))
	if len(ents) != 0 {
		t.Fatalf("refused commands queued %d jobs", len(ents))
	}
	log := w.Receiver.Log()
	for _, r := range []string{"unauthorized_user", "bad_signature", "bad_url_lookalike", "bad_format"} {
		if !strings.Contains(log, `"reason":"`+r+`"`) {
			t.Errorf("no audit event with reason %s", r)
		}
	}

	// The alerts reach the admins' channel; a burst of bad signatures
	// arrives counted: an alert for the first and a summary with the
	// count of the rest, after the receiver's first 10-second window
	// (docs/audit.md). A plain refusal (a wrong format) is no alert.
	w.Slack.Secret = "ffffffffffffffffffffffffffffffff"
	for range 40 {
		w.Slack.Send(context.Background(), http.DefaultClient, w.Endpoint, w.Invocation("https://youtu.be/dQw4w9WgXcQ"))
	}
	w.Slack.Secret = secret
	for _, r := range []string{"reason=unauthorized_user", "reason=bad_url_lookalike"} {
		if !waitCount(w, 1, r) {
			t.Errorf("no alert with %s in the admin channel: %q", r, w.AdminAlerts())
		}
	}
	deadline := time.Now().Add(time.Minute) // a hang guard: the summary comes after 10 s
	for badSignatures(w) < 41 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if n := badSignatures(w); n != 41 {
		t.Errorf("the admin channel counts %d bad signatures, want 41: %q", n, w.AdminAlerts())
	}
	if n := countAlerts(w, "reason=bad_signature"); n > 2 {
		t.Errorf("%d single bad-signature alerts: not counted", n)
	}
	if n := strings.Count(w.Receiver.Log(), `"reason":"bad_signature"`); n != 41 {
		t.Errorf("the receiver logged %d bad signatures, want each of the 41", n)
	}
	if posts := len(w.AdminAlerts()); posts > 10 {
		t.Errorf("%d posts for about 45 alerts: not batched", posts)
	}
	if countAlerts(w, "reason=bad_format") != 0 {
		t.Error("a plain refusal reached the admin channel")
	}
}

// TestSlackForms: the texts Slack really sends, through the simulated
// Slack's signed bodies, with the command's "Escape channels, users, and
// links" option on (links in <…> markup) and off (as typed), & always as
// &amp;: each queued as a job for the right video. Then what must be
// refused (a double escape, mentions, another app, another or no
// Enterprise Grid organization) and Slack's certificate check.
func TestSlackForms(t *testing.T) {
	const org = "E0DEMO0001"
	w := newWorld(t, WorldOptions{NoWorker: true, AllowedEnterprises: []string{org}})
	inv := func(text string) Invocation {
		i := w.Invocation(text)
		i.Enterprise = org
		return i
	}
	forms := []struct{ name, text, video string }{
		{"on: t", "<https://www.youtube.com/watch?v=eeeeeeeee01&amp;t=30s>", "eeeeeeeee01"},
		{"on: list and index", "<https://www.youtube.com/watch?v=eeeeeeeee02&amp;list=PLrAXtmErZgOeiKm4sgNOknGvNjby9efdf&amp;index=2> 720p", "eeeeeeeee02"},
		{"on: typed without scheme", "<http://youtu.be/eeeeeeeee03?si=Ab12Cd34&amp;t=5|youtu.be/eeeeeeeee03?si=Ab12Cd34&amp;t=5> audio", "eeeeeeeee03"},
		{"on: label with spaces", "<https://m.youtube.com/watch?v=eeeeeeeee04&amp;pp=ygUJcmljayByb2xs|a good video> 480p", "eeeeeeeee04"},
		{"on: shorts", "<https://www.youtube.com/shorts/eeeeeeeee05?feature=share&amp;si=x>", "eeeeeeeee05"},
		{"off: t", "https://www.youtube.com/watch?v=eeeeeeeee06&amp;t=30s", "eeeeeeeee06"},
		{"off: feature", "https://music.youtube.com/watch?v=eeeeeeeee07&amp;feature=share 360p", "eeeeeeeee07"},
		{"off: si", "https://youtu.be/eeeeeeeee08?si=Ab12Cd34&amp;t=5 audio", "eeeeeeeee08"},
	}
	var want []string
	for _, f := range forms {
		reply, _, status, err := w.Slack.Send(context.Background(), http.DefaultClient, w.Endpoint, inv(f.text))
		if err != nil || status != http.StatusOK || !strings.HasPrefix(reply, "Queued `"+f.video+"`") {
			t.Errorf("%s: %q: status %d, %v, %q", f.name, f.text, status, err, reply)
		}
		want = append(want, f.video)
	}
	refusals := []struct {
		name string
		inv  Invocation
		want string
	}{
		{"double escape", inv("https://www.youtube.com/watch?v=dQw4w9WgXcQ&amp;amp;t=30s"), "query string is malformed"},
		{"on: user mention", inv("<@U0DEMO0002|bob> <https://youtu.be/dQw4w9WgXcQ>"), "mentions a person"},
		{"on: channel mention", inv("<https://youtu.be/dQw4w9WgXcQ> <#C0DEMO0002|general>"), "mentions a person"},
		{"off: user mention", inv("@bob https://youtu.be/dQw4w9WgXcQ"), "mentions a person"},
		{"another app", func() Invocation { i := inv("https://youtu.be/dQw4w9WgXcQ"); i.AppID = "A0OTHERAPP1"; return i }(), "sent to another Slack app"},
		{"another organization", func() Invocation { i := inv("https://youtu.be/dQw4w9WgXcQ"); i.Enterprise = "E0OTHER0001"; return i }(), "organization is not allowed"},
		{"no organization", w.Invocation("https://youtu.be/dQw4w9WgXcQ"), "organization is not allowed"},
	}
	for _, r := range refusals {
		reply, _, status, err := w.Slack.Send(context.Background(), http.DefaultClient, w.Endpoint, r.inv)
		if err != nil || status != http.StatusOK || !strings.Contains(reply, r.want) {
			t.Errorf("%s: status %d, %v, %q; want %q", r.name, status, err, reply, r.want)
		}
	}

	// Slack's certificate check: an empty 200, signed or not; with
	// command fields it is verified like any request.
	post := func(body []byte, signed bool) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, w.Endpoint, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if signed {
			slackreq.SignRequest(req.Header, w.Slack.Secret, time.Now(), body)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return resp.StatusCode, string(b)
	}
	check := []byte("ssl_check=1&token=deprecated-verification-token")
	for _, signed := range []bool{false, true} {
		if status, body := post(check, signed); status != http.StatusOK || body != "" {
			t.Errorf("certificate check (signed %v): %d %q", signed, status, body)
		}
	}
	command, _ := w.Slack.Body(inv("https://youtu.be/dQw4w9WgXcQ"))
	command = append(command, "&ssl_check=1"...)
	if status, _ := post(command, false); status != http.StatusUnauthorized {
		t.Errorf("unsigned command with ssl_check=1: %d, want 401", status)
	}
	if status, _ := post(command, true); status != http.StatusBadRequest {
		t.Errorf("signed command with ssl_check=1: %d, want 400", status)
	}

	// Exactly the forms were queued, each as its video.
	var got []string
	for _, name := range spoolNames(t, w, "incoming") {
		b, err := os.ReadFile(filepath.Join(w.SpoolDir, "incoming", name))
		if err != nil {
			t.Fatal(err)
		}
		j, err := job.ParseJob(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got = append(got, j.Video)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("queued %q, want %q", got, want)
	}
	log := w.Receiver.Log()
	if n := strings.Count(log, `"event":"ssl_check"`); n != 2 {
		t.Errorf("%d ssl_check events, want 2", n)
	}
	for _, r := range []string{"bad_url_syntax", "mention", "other_app", "unauthorized_enterprise", "missing_signature", "bad_form"} {
		if !strings.Contains(log, `"reason":"`+r+`"`) {
			t.Errorf("no audit event with reason %s", r)
		}
	}
	for _, r := range []string{"reason=other_app", "reason=unauthorized_enterprise"} {
		if !waitCount(w, 1, r) {
			t.Errorf("no alert with %s in the admin channel: %q", r, w.AdminAlerts())
		}
	}
	for _, m := range w.AdminAlerts() {
		if strings.Contains(m, "ssl_check") || strings.Contains(m, "reason=mention") {
			t.Errorf("the admins were alerted of a certificate check or a mention: %q", m)
		}
	}
}

// TestAnyAppAnnounced: without receiver.app_id the receiver starts,
// announces at start that any app's commands are accepted (a warning
// line, and an alert in the admins' channel), and queues a command sent
// to another app.
func TestAnyAppAnnounced(t *testing.T) {
	w := newWorld(t, WorldOptions{NoWorker: true, AnyApp: true})
	const warning = "receiver.app_id is not set: requests of any Slack app signed with this signing secret are accepted"
	announced := false
	for _, l := range strings.Split(w.Receiver.Log(), "\n") {
		announced = announced || strings.Contains(l, `"level":"WARN"`) && strings.Contains(l, `"event":"weakened"`) &&
			strings.Contains(l, `"alert":true`) && strings.Contains(l, `"warning":"`+warning+`"`)
	}
	if !announced {
		t.Errorf("the receiver did not announce the missing app_id:\n%s", w.Receiver.Log())
	}
	if !waitCount(w, 1, "weakened", "receiver.app_id is not set") {
		t.Errorf("no alert for the missing app_id: %q", w.AdminAlerts())
	}
	i := w.Invocation("https://youtu.be/dQw4w9WgXcQ")
	i.AppID = "A0OTHERAPP1"
	reply, _, status, err := w.Slack.Send(context.Background(), http.DefaultClient, w.Endpoint, i)
	if err != nil || status != http.StatusOK || !strings.HasPrefix(reply, "Queued `dQw4w9WgXcQ`") {
		t.Fatalf("status %d, %v, %q", status, err, reply)
	}
}

// TestDownloaderConfigOnStdin: as root the world installs the
// configuration as scripts/install.sh does (root's, for the spool group,
// 0640) and passes it to the downloader on standard input, as its unit
// does. The receiver's and the worker's users can read the file; the
// downloader's user (that of every download) cannot, and the downloader
// keeps no descriptor on it.
func TestDownloaderConfigOnStdin(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: one user; the configuration is 0644 and read by path")
	}
	w := newWorld(t, WorldOptions{})
	var st unix.Stat_t
	if err := unix.Stat(w.ConfigPath, &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&0o7777 != 0o640 || st.Uid != 0 || st.Gid != SpoolGID {
		t.Errorf("configuration: mode %04o, uid %d, gid %d; want 0640 root's, group %d", st.Mode&0o7777, st.Uid, st.Gid, SpoolGID)
	}
	for _, u := range []struct {
		name     string
		uid, gid uint32
		groups   []uint32
		canRead  bool
	}{
		{"receiver", ReceiverUID, SpoolGID, nil, true},
		{"worker", WorkerUID, SpoolGID, []uint32{DownloaderGID}, true},
		{"downloader", DownloaderUID, DownloaderGID, nil, false},
		{"courier", CourierUID, CourierGID, []uint32{MediaGID}, false},
	} {
		cat := exec.Command("cat", w.ConfigPath)
		cat.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: u.uid, Gid: u.gid, Groups: u.groups}}
		out, err := cat.CombinedOutput()
		if read := err == nil && strings.Contains(string(out), "[downloader]"); read != u.canRead {
			t.Errorf("the %s's user reads the configuration: %v, want %v (%v: %s)", u.name, read, u.canRead, err, out)
		}
	}

	if args := w.Courier.Cmd.Args; !slices.Equal(args[1:], []string{"-config", "-"}) {
		t.Errorf("the courier was started with %q, want -config -", args[1:])
	}
	pid := strconv.Itoa(w.Downloader.Cmd.Process.Pid)
	if args := w.Downloader.Cmd.Args; !slices.Equal(args[1:], []string{"-config", "-"}) {
		t.Errorf("the downloader was started with %q, want -config -", args[1:])
	}
	// Once it serves (the worker, started after it, has connected).
	if err := waitFor(2*time.Minute, func() bool { return strings.Contains(w.Worker.Log(), `"msg":"worker ready"`) }); err != nil {
		t.Fatalf("the worker never got ready:\n%s", w.Worker.Log())
	}
	fds, err := os.ReadDir("/proc/" + pid + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		target, _ := os.Readlink("/proc/" + pid + "/fd/" + fd.Name())
		if target == w.ConfigPath {
			t.Errorf("the downloader holds the configuration open on descriptor %s", fd.Name())
		}
		if fd.Name() == "0" && target != os.DevNull {
			t.Errorf("the downloader's standard input is %s, want %s", target, os.DevNull)
		}
	}
}

// waitFor polls ok every 50 ms until it holds or timeout has passed.
func waitFor(timeout time.Duration, ok func() bool) error {
	for deadline := time.Now().Add(timeout); !ok(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
	}
	return nil
}

func TestOpenUpKeepsOtherBits(t *testing.T) {
	d := t.TempDir()
	if err := os.Chmod(d, 0o700|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	if err := OpenUp(d); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(d)
	if st.Mode().Perm() != 0o755 || st.Mode()&os.ModeSticky == 0 {
		t.Fatalf("mode %v, want drwxr-xr-t", st.Mode())
	}
	os.Chmod(d, 0o777|os.ModeSticky)
	OpenUp(d)
	if st, _ := os.Stat(d); st.Mode().Perm() != 0o777 || st.Mode()&os.ModeSticky == 0 {
		t.Fatalf("a 1777 directory became %v", st.Mode())
	}
}

// TestReleaseBinariesHaveNoBreachCode: the attack runner and catalog exist
// only in builds with the "breach" tag.
func TestReleaseBinariesHaveNoBreachCode(t *testing.T) {
	for _, name := range []string{"ytkeep-receiver", "ytkeep-worker", "ytkeep-downloader", "ytkeep-courier", "ytkeep"} {
		b, err := os.ReadFile(filepath.Join(binDir, name))
		if err != nil {
			t.Fatal(err)
		}
		for _, marker := range []string{"internal/breach", "ytkeep-breach", "int80Getpid", "fork bomb", "read the Slack signing secret", "YTKEEP_BREACH"} {
			if strings.Contains(string(b), marker) {
				t.Errorf("%s contains %q", name, marker)
			}
		}
	}
}

// The release worker's launcher server cannot run a caller's command
// line: that path exists only in the sandbox's test build, and a setup
// that names raw programs is refused.
func TestReleaseLauncherRefusesRawPrograms(t *testing.T) {
	rules := confine.DownloaderRules(confine.DownloaderParams{JobRoot: t.TempDir()})
	l, err := sandbox.StartLauncher(filepath.Join(binDir, "ytkeep-downloader"), &sandbox.Setup{
		Rules: *rules, RawPrograms: []string{"/bin/sh"}, Landlock: confine.LandlockABI() >= confine.MinLandlockABI, Seccomp: true,
	})
	if err == nil {
		l.Close()
		t.Fatal("the release launcher server accepted raw programs")
	}
	if !strings.Contains(err.Error(), "raw programs are for the sandbox's tests only") {
		t.Fatalf("unexpected error: %v", err)
	}
}
