package testbed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ytkeep/ytkeep/internal/job"
)

// TestChaos drives the four real daemons through the simulated Slack
// while a driver SIGKILLs a random daemon at random moments and restarts
// it, fills the spool's file system for a while, and makes the simulated
// Web API answer 429, 500 or not at all. Afterwards: every acknowledged
// job has exactly one final message in its requester's DM; no other job
// appeared (a forged or refused command made none); downloads/ holds
// only stored files with their sidecars, nothing partial or temporary;
// every spool queue has drained; nothing was quarantined.
//
// The outcome does not depend on timing: the kills land at random
// moments (seeded, but the daemons' progress is not), and whatever they
// hit, the assertions must hold. YTKEEP_CHAOS_JOBS sets the number of
// jobs (default 100, make chaos: 1000), YTKEEP_CHAOS_SEED the driver's
// seed, YTKEEP_CHAOS_REPORT a file to write the figures to.
func TestChaos(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED LOUDLY: the chaos test fills a tmpfs it mounts and runs the daemons as their own users, which needs root; CI runs it as root")
	}
	jobs := envInt(t, "YTKEEP_CHAOS_JOBS", 100)
	seed := envInt(t, "YTKEEP_CHAOS_SEED", 1)
	data := t.TempDir()
	if err := unix.Mount("tmpfs", data, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size=96m,mode=0755"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(data, unix.MNT_DETACH) })
	w := newWorld(t, WorldOptions{Bot: true, AnyUser: true, DataDir: data, ExtraWorker: "concurrency = 3\n"})
	c := &chaos{t: t, w: w, data: data, rng: rand.New(rand.NewPCG(uint64(seed), 7)), kills: map[string]int{}, faults: map[string]int{},
		logs: map[string]int{}, exits: map[string]int{}, acked: map[string]string{}}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(jobs)*2*time.Second+10*time.Minute) // a hang guard
	defer cancel()

	stopSupervisor, stopDriver := make(chan struct{}), make(chan struct{})
	var driver, supervisor sync.WaitGroup
	supervisor.Add(1)
	go func() { defer supervisor.Done(); c.supervise(stopSupervisor) }()
	driver.Add(1)
	go func() { defer driver.Done(); c.drive(ctx, stopDriver) }()
	c.send(ctx, jobs)
	sent := time.Since(start)

	// Every acknowledged job gets its final message: the chaos goes on
	// until nine in ten have it, then the last ones finish in calm.
	finals := func() (missing []string) {
		for id, user := range c.snapshotAcked() {
			if n := c.finalMessages(user, id); n == 0 {
				missing = append(missing, id)
			}
		}
		return missing
	}
	driving := true
	for {
		missing := finals()
		if driving && len(missing) <= len(c.snapshotAcked())/10 {
			close(stopDriver)
			driver.Wait()
			driving = false
			w.WebAPI.Outage(false)
			for _, m := range []string{"chat.postMessage", "chat.update", "conversations.open"} {
				w.WebAPI.RateLimit(m, 0, 0)
				w.WebAPI.Fail(m, 0, 0)
				w.WebAPI.Hang(m, 0)
			}
		}
		if len(missing) == 0 && !driving {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("%d acknowledged jobs have no final message (e.g. %s)", len(missing), missing[0])
		}
		time.Sleep(200 * time.Millisecond)
	}
	close(stopSupervisor)
	supervisor.Wait()
	if err := c.ensureRunning(); err != nil {
		t.Fatal(err)
	}
	// Then the queues drain (the last records are being forgotten).
	dirs := []string{"incoming", "results", "worker/claimed", "worker/final", "courier/claimed"}
	for {
		left := 0
		for _, d := range dirs {
			left += len(spoolNames(t, w, d))
		}
		if left == 0 {
			break
		}
		if ctx.Err() != nil {
			for _, d := range dirs {
				if n := spoolNames(t, w, d); len(n) > 0 {
					t.Errorf("%s still holds %v", d, n)
				}
			}
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	total := time.Since(start)

	// Exactly one final message per acknowledged job.
	r := chaosReport{Jobs: jobs, Seed: seed, Sent: sent, Total: total, Kills: c.kills, Exits: c.exits, Faults: c.faults, DiskFills: c.diskFills,
		Acked: len(c.acked), Refused: c.refused, Unreachable: c.unreachable, Ambiguous: c.ambiguous, Forged: c.forged, Classes: map[string]int{}}
	seen := map[string]bool{}
	for id, user := range c.acked {
		n := c.finalMessages(user, id)
		switch {
		case n == 0:
			r.Lost++
		case n > 1:
			r.Duplicated++
			t.Errorf("job %s has %d final messages", id, n)
		}
		seen[id] = true
	}
	// No job but the acknowledged ones (and at most one per command whose
	// answer the receiver's death cut off).
	jobRE := regexp.MustCompile("Job `([a-z2-7]{26})`")
	for _, user := range c.users() {
		for _, m := range w.WebAPI.Messages(w.WebAPI.DMOf(user)) {
			for _, mm := range jobRE.FindAllStringSubmatch(string(m.Blocks), -1) {
				id := mm[1]
				if !seen[id] {
					seen[id] = true
					r.Unknown++
				}
			}
			if final(m.Text) {
				r.Classes[finalKind(m.Text)]++
			}
			if strings.HasPrefix(m.Text, ":mag: Looking up") {
				r.Strays++
			}
		}
	}
	if r.Unknown > r.Ambiguous {
		t.Errorf("%d jobs appeared that were never acknowledged, more than the %d commands whose answer was cut off", r.Unknown, r.Ambiguous)
	}
	for i := 0; i < c.forged; i++ {
		if m := w.WebAPI.Messages(w.WebAPI.DMOf(forgedUser(i))); len(m) != 0 {
			t.Errorf("a forged command made a job: %q", m[0].Text)
		}
	}
	if r.Lost > 0 {
		t.Errorf("%d acknowledged jobs lost", r.Lost)
	}
	// downloads/: stored files and their sidecars only.
	r.Stored, r.Partial = checkDownloads(t, w.DownloadsDir)
	if ents, _ := os.ReadDir(filepath.Join(w.SpoolDir, "work")); len(ents) != 0 {
		t.Errorf("work/ holds %d entries", len(ents))
		r.Partial += len(ents)
	}
	for _, q := range []string{"receiver/quarantine", "worker/quarantine", "courier/quarantine"} {
		if ents, err := os.ReadDir(filepath.Join(w.SpoolDir, q)); err == nil && len(ents) != 0 {
			t.Errorf("%s holds %d files: nothing hostile was sent", q, len(ents))
		}
	}
	r.Recovered = c.countLogs(`"msg":"worker ready"`, `"recovered":`)
	r.Retries = c.countLogs(`"reason":"will_retry"`)
	r.Repeats = c.countLogs(`"reason":"repeat"`)
	r.Violations = len(w.WebAPI.Violations())
	t.Log(r.String())
	if keep := os.Getenv("YTKEEP_CHAOS_LOGS"); keep != "" {
		logs, _ := filepath.Glob(filepath.Join(w.Dir, "*.log"))
		os.MkdirAll(keep, 0o755)
		for _, p := range logs {
			if b, err := os.ReadFile(p); err == nil {
				os.WriteFile(filepath.Join(keep, filepath.Base(p)), b, 0o644)
			}
		}
	}
	if p := os.Getenv("YTKEEP_CHAOS_REPORT"); p != "" && !t.Failed() {
		if err := os.WriteFile(p, []byte(r.Markdown()), 0o644); err != nil {
			t.Error(err)
		}
	}
}

func envInt(t *testing.T, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive number", name, s)
	}
	return n
}

type chaos struct {
	t    *testing.T
	w    *World
	data string
	rng  *rand.Rand

	mu                                      sync.Mutex // guards the daemons (killed, restarted) and what follows
	acked                                   map[string]string
	refused, unreachable, ambiguous, forged int
	kills, faults, logs, exits              map[string]int
	diskFills                               int
	userList                                []string
}

func (c *chaos) snapshotAcked() map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := make(map[string]string, len(c.acked))
	for k, v := range c.acked {
		m[k] = v
	}
	return m
}

func (c *chaos) users() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.userList...)
}

func forgedUser(i int) string { return fmt.Sprintf("UFORGED%04d", i) }

var queuedRE = regexp.MustCompile("^Queued `[^`]+` \\([a-z0-9]+\\) as job `([a-z2-7]{26})`")

// send sends n commands, 5 a second, from 40 users over a pool of
// n/4 videos in two formats (so that some are answered from the store,
// some parked behind a running download); one in 20 more is forged.
func (c *chaos) send(ctx context.Context, n int) {
	videos := max(n/4, 4)
	users := 40
	for u := 0; u < users; u++ {
		c.userList = append(c.userList, fmt.Sprintf("UCHAOS%04d", u))
	}
	work := make(chan int)
	var wg sync.WaitGroup
	for g := 0; g < 6; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				c.sendOne(ctx, i, videos, users)
			}
		}()
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for i := 0; i < n && ctx.Err() == nil; i++ {
		<-tick.C
		if i%20 == 19 {
			c.sendForged(ctx)
		}
		work <- i
	}
	close(work)
	wg.Wait()
}

func (c *chaos) sendOne(ctx context.Context, i, videos, users int) {
	video := fmt.Sprintf("chaos%06d", (i*7919)%videos)
	format := []string{"best", "720p"}[i%2]
	user := c.userList[i%users]
	inv := Invocation{User: user, Channel: Channel, Command: "/ytkeep", Text: fmt.Sprintf("<https://youtu.be/%s> %s", video, format)}
	client := &http.Client{Timeout: 20 * time.Second}
	for attempt := 0; ; attempt++ {
		reply, _, status, err := c.w.Slack.Send(ctx, client, c.w.Endpoint, inv)
		if err != nil && errors.Is(err, syscall.ECONNREFUSED) && attempt < 200 && ctx.Err() == nil {
			// The receiver is being restarted: the user tries again.
			c.mu.Lock()
			c.unreachable++
			c.mu.Unlock()
			time.Sleep(50 * time.Millisecond)
			continue
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if err != nil {
			// Sent, perhaps queued, but the answer was cut off.
			c.ambiguous++
			return
		}
		if m := queuedRE.FindStringSubmatch(reply); status == http.StatusOK && m != nil {
			c.acked[m[1]] = user
			return
		}
		c.refused++
		if !strings.Contains(reply, "disk is full") {
			c.t.Errorf("command %d refused: %d %q", i, status, reply)
		}
		return
	}
}

// sendForged sends a command signed with the wrong secret, from a user
// of its own: it must be refused and make no job.
func (c *chaos) sendForged(ctx context.Context) {
	c.mu.Lock()
	user := forgedUser(c.forged)
	c.forged++
	c.mu.Unlock()
	body, _ := c.w.Slack.Body(Invocation{User: user, Channel: Channel, Command: "/ytkeep", Text: "<https://youtu.be/forgedAAAAA>"})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.w.Endpoint, bytes.NewReader(body))
	if err != nil {
		c.t.Error(err)
		return
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Slack-Request-Timestamp", strconv.FormatInt(time.Now().Unix(), 10))
	req.Header.Set("X-Slack-Signature", "v0="+strings.Repeat("ab", 32))
	resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
	if err != nil {
		return // the receiver is being restarted: refused all the same
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		c.t.Errorf("a forged command was answered 200")
	}
}

// drive does one thing at random every 0.3–2 s until stop: kill a daemon
// and start it again, fill the disk for a while, or make the simulated
// Web API fail a few calls.
func (c *chaos) drive(ctx context.Context, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(300+c.rng.IntN(1700)) * time.Millisecond):
		}
		switch k := c.rng.IntN(10); {
		case k < 6:
			name := []string{"receiver", "worker", "downloader", "courier"}[c.rng.IntN(4)]
			if err := c.kill(name); err != nil {
				c.t.Errorf("kill %s: %v", name, err)
				return
			}
		case k < 7:
			c.fillDisk(time.Duration(300+c.rng.IntN(1200)) * time.Millisecond)
		default:
			method := []string{"chat.postMessage", "chat.update", "conversations.open"}[c.rng.IntN(3)]
			switch f := c.rng.IntN(3); f {
			case 0:
				c.w.WebAPI.RateLimit(method, 1+c.rng.IntN(3), time.Second)
				c.faults["429 "+method]++
			case 1:
				c.w.WebAPI.Fail(method, 1+c.rng.IntN(3), 500)
				c.faults["500 "+method]++
			default:
				c.w.WebAPI.Hang(method, 1)
				c.faults["timeout "+method]++
			}
		}
	}
}

// kill SIGKILLs a daemon, waits for it to end, and starts it again.
func (c *chaos) kill(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.kills[name]++
	d := c.daemon(name)
	d.Cmd.Process.Kill()
	d.Stop()
	return c.restartLocked(name)
}

func (c *chaos) daemon(name string) *Daemon {
	return map[string]*Daemon{"receiver": c.w.Receiver, "worker": c.w.Worker, "downloader": c.w.Downloader, "courier": c.w.Courier}[name]
}

// restartLocked starts daemon name again, with a log of its own. c.mu
// is held.
func (c *chaos) restartLocked(name string) error {
	c.logs[name]++
	w := c.w
	logPath := filepath.Join(w.Dir, fmt.Sprintf("%s-chaos-%d.log", name, c.logs[name]))
	start := Start
	if w.dlConfigStdin {
		start = StartConfigStdin
	}
	var err error
	switch name {
	case "receiver":
		w.Receiver, err = Start("ytkeep-receiver", w.recvBin, w.ConfigPath, logPath, w.env)
	case "worker":
		w.Worker, err = Start("ytkeep-worker", w.workBin, w.ConfigPath, logPath, w.env)
	case "downloader":
		w.Downloader, err = start("ytkeep-downloader", w.dlBin, w.ConfigPath, logPath, w.env)
	case "courier":
		w.Courier, err = start("ytkeep-courier", w.courierBin, w.ConfigPath, logPath, w.env)
	}
	return err
}

// supervise starts again, as systemd's Restart= does, a daemon that
// ended on its own (the worker ends when its downloader goes away)
// until stop.
func (c *chaos) supervise(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-time.After(100 * time.Millisecond):
		}
		c.mu.Lock()
		for _, name := range []string{"receiver", "worker", "downloader", "courier"} {
			if exited, _ := c.daemon(name).Exited(); exited {
				c.exits[name]++
				if err := c.restartLocked(name); err != nil {
					c.t.Errorf("restart %s: %v", name, err)
				}
			}
		}
		c.mu.Unlock()
	}
}

// ensureRunning fails if a daemon has ended on its own (not killed).
func (c *chaos) ensureRunning() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, d := range []*Daemon{c.w.Receiver, c.w.Worker, c.w.Downloader, c.w.Courier} {
		if exited, err := d.Exited(); exited {
			return fmt.Errorf("%s ended on its own (%v):\n%s", d.Name, err, d.Log())
		}
	}
	return nil
}

// fillDisk fills the spool's file system, holds it full for d, and frees
// it.
func (c *chaos) fillDisk(d time.Duration) {
	c.diskFills++
	p := filepath.Join(c.data, "fill")
	f, err := os.Create(p)
	if err != nil {
		c.t.Errorf("fill: %v", err)
		return
	}
	chunk := make([]byte, 1<<20)
	for {
		if _, err := f.Write(chunk); err != nil {
			break
		}
	}
	for i := 0; i < 4096; i++ {
		if _, err := f.Write(chunk[:4096]); err != nil {
			break
		}
	}
	f.Close()
	time.Sleep(d)
	os.Remove(p)
}

// finalMessages counts the messages in user's DM that show job id's
// final state.
func (c *chaos) finalMessages(user, id string) int {
	n := 0
	tag := "Job `" + id + "`"
	for _, m := range c.w.WebAPI.Messages(c.w.WebAPI.DMOf(user)) {
		if final(m.Text) && bytes.Contains(m.Blocks, []byte(tag)) {
			n++
		}
	}
	return n
}

func final(text string) bool { return finalKind(text) != "" }

func finalKind(text string) string {
	switch {
	case strings.HasPrefix(text, ":white_check_mark:"):
		return "saved"
	case strings.HasPrefix(text, ":x:"):
		return "failed: " + failureOf(text)
	case strings.HasPrefix(text, ":no_entry_sign:"):
		return "cancelled"
	}
	return ""
}

// failureOf names the failure class a failed job's message describes.
func failureOf(text string) string {
	for _, cl := range []job.Class{job.ClassUnavailable, job.ClassTooLarge, job.ClassTimeout, job.ClassBadOutput, job.ClassSandbox,
		job.ClassGaveUp, job.ClassInternal, job.ClassQuota, job.ClassDiskFull} {
		if strings.Contains(text, cl.Describe()) {
			return string(cl)
		}
	}
	return "other"
}

func (c *chaos) countLogs(parts ...string) int {
	n := 0
	logs, _ := filepath.Glob(filepath.Join(c.w.Dir, "*.log"))
	for _, p := range logs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			ok := true
			for _, part := range parts {
				ok = ok && strings.Contains(line, part)
			}
			if ok {
				n++
			}
		}
	}
	return n
}

// checkDownloads checks that dir holds stored files and their sidecars,
// each with the other, and an empty .tmp; it returns how many files are
// stored and how many entries are not as they should be.
func checkDownloads(t *testing.T, dir string) (stored, bad int) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files, sidecars := map[string]bool{}, map[string]bool{}
	for _, e := range ents {
		name := e.Name()
		if name == ".tmp" {
			if tmp, _ := os.ReadDir(filepath.Join(dir, ".tmp")); len(tmp) != 0 {
				t.Errorf("downloads/.tmp holds %d files", len(tmp))
				bad += len(tmp)
			}
			continue
		}
		n, err := job.ParseName(name)
		switch {
		case err == nil && n.Kind == job.KindStored:
			files[n.Video+"-"+string(n.Format)] = true
		case err == nil && n.Kind == job.KindSidecar:
			sidecars[n.Video+"-"+string(n.Format)] = true
		default:
			t.Errorf("downloads/ holds %q", name)
			bad++
		}
	}
	for k := range files {
		if !sidecars[k] {
			t.Errorf("stored file %s has no sidecar", k)
			bad++
		}
	}
	for k := range sidecars {
		if !files[k] {
			t.Errorf("sidecar %s has no file", k)
			bad++
		}
	}
	return len(files), bad
}

type chaosReport struct {
	Jobs, Seed                                         int
	Sent, Total                                        time.Duration
	Kills, Exits, Faults, Classes                      map[string]int
	DiskFills                                          int
	Acked, Refused, Unreachable, Ambiguous, Forged     int
	Lost, Duplicated, Unknown, Strays, Stored, Partial int
	Recovered, Retries, Repeats, Violations            int
}

func sortedCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func (r *chaosReport) String() string {
	return fmt.Sprintf("chaos: %d commands (seed %d) sent in %s, all done in %s\n"+
		"  acknowledged %d, refused %d (disk full), retried after connection refused %d, answer cut off %d, forged %d (all refused)\n"+
		"  kills: %s; restarts after an exit of its own: %s; disk filled %d times; Slack faults: %s\n"+
		"  lost %d, duplicated %d, unknown jobs %d, stray placeholders %d, stored files %d, partial or orphaned files %d\n"+
		"  final messages: %s\n"+
		"  worker starts %d, courier retries %d, repeated finals shown once %d, Slack rate-limit violations %d",
		r.Jobs, r.Seed, r.Sent.Round(time.Second), r.Total.Round(time.Second),
		r.Acked, r.Refused, r.Unreachable, r.Ambiguous, r.Forged,
		sortedCounts(r.Kills), sortedCounts(r.Exits), r.DiskFills, sortedCounts(r.Faults),
		r.Lost, r.Duplicated, r.Unknown, r.Strays, r.Stored, r.Partial,
		sortedCounts(r.Classes), r.Recovered, r.Retries, r.Repeats, r.Violations)
}

func (r *chaosReport) Markdown() string {
	return fmt.Sprintf(`# Reliability: the chaos run

Generated by `+"`make chaos`"+` on %s (internal/testbed/chaos_test.go): the four
daemons, as their own users, on the simulated Slack and media server,
with the real yt-dlp. A driver SIGKILLs a random daemon every 0.3–2 s
(and starts it again, as systemd would, and so any daemon that ends on
its own: the worker, when its downloader goes), fills the spool's file
system (a tmpfs) for 0.3–1.5 s, or makes the simulated Web API answer
429, 500 or not at all. Commands come 5 a second from 40 users, over
n/4 videos in two formats; one in 20 more is forged. The chaos goes on
until nine in ten acknowledged jobs have their final message.

`+"```"+`
%s
`+"```"+`

- **Lost: %d. Duplicated: %d. Partial or orphaned files: %d.** Every
  acknowledged job has exactly one final message in its requester's DM.
- Refused commands (the disk was full: "the server's disk is full") made
  no job; neither did the %d forged ones.
- Some commands were cut off by a kill of the receiver: Slack would show
  the user an error. Such a command may have been queued (the job is
  durable before the answer); it then gets its final message like any
  other (%d jobs appeared that way, at most one per cut-off command).
- A stray placeholder (":mag: Looking up…") is what a courier killed
  between posting a status message and recording it leaves: the final
  result goes to the recorded one (docs/courier.md).
- Failed jobs are what the chaos caused, each with its message:
  `+"`"+`disk_full`+"`"+` (a download running while the disk filled), `+"`"+`gave_up`+"`"+` (a
  job interrupted three times: every kill of the worker or the
  downloader interrupts the downloads under way).
- The Slack rate-limit violations are the simulated Web API's count of
  calls over a method's tier (Tier 3: 50 a minute for `+"`"+`chat.update`+"`"+` and
  `+"`"+`conversations.open`+"`"+`) at 5 commands a second, far above what a team
  sends; real Slack would answer 429, which the courier waits out.

How each window is covered, and what a crash there does:

| Window | What a kill there does | Covered by |
|---|---|---|
| receiver: job written, answer not sent | the job runs; the user saw an error | this run (cut-off commands) |
| worker: claimed, not started | run again at the next start (attempt counted) | this run; worker TestRecovery |
| worker: mid-download | the job directory is cleared, the download runs again; three interruptions end it as gave_up | this run |
| worker: sidecar written, file not renamed | the sidecar is ignored and removed at the next start; the next download replaces it | worker TestInterruptedStore |
| worker: final result kept, not written or not forgotten | written again at the next start, never worked out again; the courier shows it once | worker TestKeptFinalResult, courier repeat tests |
| worker: disk full | the download fails as disk_full, the final result waits for space | worker TestDiskFull, this run |
| courier: claimed, not posted | posted at the next start | this run; courier tests |
| courier: posted, not recorded | a stray placeholder; the final goes to the recorded message | this run |
`, time.Now().UTC().Format("2006-01-02"), r.String(), r.Lost, r.Duplicated, r.Partial, r.Forged, r.Unknown)
}
