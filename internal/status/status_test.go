package status

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ytkeep/ytkeep/internal/audit"
	"github.com/ytkeep/ytkeep/internal/job"
	"github.com/ytkeep/ytkeep/internal/spool"
)

// now is the time of every report in these tests.
var now = time.Unix(1_800_000_000, 0)

const replyToken = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

// tree is a spool made for a test, owned by the user running it.
type tree struct {
	t    *testing.T
	root string
}

func newTree(t *testing.T) *tree {
	t.Helper()
	dir := t.TempDir()
	l := spool.Layout{Root: filepath.Join(dir, "spool")}
	if err := l.CreateSingleUser(filepath.Join(dir, "downloads")); err != nil {
		t.Fatal(err)
	}
	return &tree{t, l.Root}
}

func (tr *tree) path(rel string) string { return filepath.Join(tr.root, rel) }

func (tr *tree) write(rel string, data []byte) {
	tr.t.Helper()
	if err := os.WriteFile(tr.path(rel), data, 0o600); err != nil {
		tr.t.Fatal(err)
	}
}

// job returns a job record for user, video and format, made at created.
func newJob(t *testing.T, id, user, video string, f job.Format, created int64) []byte {
	t.Helper()
	j := &job.Job{V: job.Version, ID: id, Video: video, Format: f, Team: "T0123ABCD", User: user, Channel: "C0123ABCD",
		Created: created, Reply: replyToken}
	data, err := j.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func id(c byte) string { return strings.Repeat(string(c), 26) }

func collect(t *testing.T, root string, limit int) *Report {
	t.Helper()
	r, err := Collect(Options{SpoolDir: root, Now: now, Limit: limit})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestEmptySpool(t *testing.T) {
	tr := newTree(t)
	r := collect(t, tr.root, 0)
	if len(r.Jobs.Jobs)+len(r.Failures.Failures)+len(r.Quarantine.Files)+len(r.Alerts.Alerts) != 0 {
		t.Errorf("entries in an empty spool: %+v", r)
	}
	for _, s := range []Section{r.Jobs.Section, r.Failures.Section, r.Quarantine.Section, r.Alerts.Section} {
		if len(s.Errors)+len(s.Problems)+s.Omitted != 0 {
			t.Errorf("section of an empty spool: %+v", s)
		}
	}
	var b bytes.Buffer
	if err := WriteJSON(&b, r); err != nil {
		t.Fatal(err)
	}
	// Empty lists are [], not null.
	for _, k := range []string{`"jobs": []`, `"failures": []`, `"files": []`, `"alerts": []`} {
		if !strings.Contains(b.String(), k) {
			t.Errorf("JSON lacks %s:\n%s", k, b.String())
		}
	}
}

func TestNoSpool(t *testing.T) {
	_, err := Collect(Options{SpoolDir: filepath.Join(t.TempDir(), "none"), Now: now})
	if err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("err = %v", err)
	}
	// A symbolic link as the root is not followed either.
	tr := newTree(t)
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(tr.root, link); err != nil {
		t.Fatal(err)
	}
	if _, err := Collect(Options{SpoolDir: link, Now: now}); err == nil {
		t.Error("a symbolic link as the spool root was followed")
	}
}

func TestJobStates(t *testing.T) {
	tr := newTree(t)
	created := now.Unix() - 600
	// Queued: a job file in incoming/.
	tr.write("incoming/"+id('q')+".job", newJob(t, id('q'), "U00000001", "dQw4w9WgXcQ", job.FormatBest, created))
	// Downloading: claimed, its directory in work/.
	tr.write("worker/claimed/"+id('d')+".job.2", newJob(t, id('d'), "U00000002", "aaaaaaaaaaa", job.Format720, created))
	if err := os.Mkdir(tr.path("work/"+id('d')), 0o770); err != nil {
		t.Fatal(err)
	}
	// Parked: claimed, the same video and format downloading.
	tr.write("worker/claimed/"+id('p')+".job.1", newJob(t, id('p'), "U00000003", "aaaaaaaaaaa", job.Format720, created))
	// Claimed: no directory, nothing of its video downloading.
	tr.write("worker/claimed/"+id('c')+".job.1", newJob(t, id('c'), "U00000004", "bbbbbbbbbbb", job.Format720, created))
	// A request waiting in incoming/, or claimed, is not a job, nor a
	// problem.
	tr.write("incoming/"+id('r')+".request", []byte("{}"))
	tr.write("worker/claimed/"+id('t')+".request", []byte("{}"))

	r := collect(t, tr.root, 0)
	got := map[string]Job{}
	for _, j := range r.Jobs.Jobs {
		got[j.ID] = j
	}
	for _, c := range []struct {
		id, state, user string
		attempt         int
	}{
		{id('q'), StateQueued, "U00000001", 0},
		{id('d'), StateDownloading, "U00000002", 2},
		{id('p'), StateParked, "U00000003", 1},
		{id('c'), StateClaimed, "U00000004", 1},
	} {
		t.Run(c.state, func(t *testing.T) {
			j, ok := got[c.id]
			if !ok {
				t.Fatalf("job %s not listed: %+v", c.id, r.Jobs)
			}
			if j.State != c.state || j.User != c.user || j.Attempt != c.attempt || j.Created != created || j.Team != "T0123ABCD" {
				t.Errorf("got %+v", j)
			}
		})
	}
	if len(r.Jobs.Jobs) != 4 || r.Jobs.Queued != 1 || r.Jobs.Running != 3 || len(r.Jobs.Problems) != 0 || len(r.Jobs.Errors) != 0 {
		t.Errorf("jobs: %+v", r.Jobs)
	}
	if r.Jobs.Jobs[0].State != StateDownloading || r.Jobs.Jobs[3].State != StateQueued {
		t.Errorf("order: downloading first, queued last: %+v", r.Jobs.Jobs)
	}
}

func TestLimit(t *testing.T) {
	tr := newTree(t)
	for _, c := range "abcde" {
		i := id(byte(c))
		tr.write("incoming/"+i+".job", newJob(t, i, "U00000001", "dQw4w9WgXcQ", job.FormatBest, now.Unix()))
	}
	r := collect(t, tr.root, 2)
	if len(r.Jobs.Jobs) != 2 || r.Jobs.Omitted != 3 || r.Jobs.Queued != 5 {
		t.Errorf("jobs: %+v", r.Jobs)
	}
}

func TestFailures(t *testing.T) {
	tr := newTree(t)
	h := `{"v":1,"jobs":[` +
		`{"job":"` + id('f') + `","video":"dQw4w9WgXcQ","format":"720p","state":"failed","class":"unavailable","created":1700000000,"updated":1700000100},` +
		`{"job":"` + id('s') + `","video":"dQw4w9WgXcQ","format":"best","state":"saved","title":"A song","file":"dQw4w9WgXcQ-best.mp4","size":5,"created":1799980000,"updated":1799980100}]}`
	tr.write("courier/history/U00000001.json", []byte(h))
	res := &job.Result{V: job.Version, Job: id('g'), Status: job.StatusFailed, Class: job.ClassTooLarge, Reply: replyToken}
	data, err := res.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	tr.write("results/"+res.FileName(), data)
	// A done result is not a failure.
	done := &job.Result{V: job.Version, Job: id('h'), Status: job.StatusDone, File: "dQw4w9WgXcQ-best.mp4", Size: 1, Reply: replyToken}
	data, _ = done.Marshal()
	tr.write("results/"+done.FileName(), data)

	r := collect(t, tr.root, 0)
	fs := r.Failures.Failures
	if len(fs) != 2 || len(r.Failures.Problems) != 0 || len(r.Failures.Errors) != 0 {
		t.Fatalf("failures: %+v", r.Failures)
	}
	// The result was written just now, the history's failure before.
	if fs[0].ID != id('g') || fs[0].Class != "too_large" || fs[0].User != "" || !strings.HasPrefix(fs[0].Source, "results/") {
		t.Errorf("from results: %+v", fs[0])
	}
	if fs[1].ID != id('f') || fs[1].User != "U00000001" || fs[1].Time != 1700000100 || fs[1].Reason != job.ClassUnavailable.Describe() ||
		fs[1].Source != "courier/history/U00000001.json" {
		t.Errorf("from history: %+v", fs[1])
	}
}

func TestQuarantine(t *testing.T) {
	tr := newTree(t)
	good := newJob(t, id('a'), "U00000001", "dQw4w9WgXcQ", job.FormatBest, now.Unix())
	tr.write("worker/quarantine/1799999000000000000.1."+id('a')+".job", good)
	tr.write("worker/quarantine/1799999000000000000.2."+id('b')+".job.1", []byte(`{"v":2}`))
	tr.write("worker/quarantine/1799999000000000000.3.notes.txt", []byte("x"))
	tr.write("worker/quarantine/1799999000000000000.6."+id('e')+".request", []byte(`{"v":1}`))
	if err := os.Symlink("/etc/passwd", tr.path("courier/quarantine/1799999000000000000.4."+id('c')+".done.result")); err != nil {
		t.Fatal(err)
	}
	tr.write("courier/quarantine/1799999000000000000.5."+id('d')+".alert", []byte(`{"time":"2027-01-01T00:00:00Z","daemon":"worker","event":"pwned"}`))
	tr.write("courier/quarantine/junk", nil)

	r := collect(t, tr.root, 0)
	why := map[string]Quarantined{}
	for _, q := range r.Quarantine.Files {
		why[q.Original] = q
	}
	for _, c := range []struct{ original, daemon, typ, why string }{
		{id('a') + ".job", "worker", "file", "well formed: refused for what only the worker can check"},
		{id('b') + ".job.1", "worker", "file", "malformed record: field v: version 2, want 1"},
		{"notes.txt", "worker", "file", "not a ytkeep file name"},
		{id('e') + ".request", "worker", "file", "malformed record: field id: "},
		{id('c') + ".done.result", "courier", "symlink", "a symlink, not a regular file"},
		{id('d') + ".alert", "courier", "file", `unknown alert event "pwned"`},
		{"", "courier", "file", "not a quarantine name"},
	} {
		t.Run(c.original, func(t *testing.T) {
			q, ok := why[c.original]
			if !ok {
				t.Fatalf("not listed: %+v", r.Quarantine)
			}
			if q.Daemon != c.daemon || q.Type != c.typ || !strings.Contains(q.Why, c.why) {
				t.Errorf("got %+v, want why %q", q, c.why)
			}
		})
	}
}

func TestAlerts(t *testing.T) {
	tr := newTree(t)
	mk := func(at time.Time, event string, attrs map[string]string) []byte {
		data, err := job.MarshalAlert(audit.AlertRecord{Time: at, Daemon: "anything", Event: event, Attrs: attrs})
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	tr.write("results/"+job.AlertName(id('a')), mk(now.Add(-time.Minute), audit.Violation, map[string]string{"job": id('x'), "reason": "disk_budget"}))
	tr.write("courier/alerts/"+job.AlertName(id('b')), mk(now.Add(-time.Hour), audit.Crashed, map[string]string{"signal": "SIGSYS"}))
	tr.write("receiver/alerts/"+job.AlertName(id('c')), mk(now.Add(-2*time.Hour), audit.Crashed, map[string]string{"evil": "\x1b[2J\nline"}))
	tr.write("receiver/alerts/"+job.AlertName(id('d')), []byte("not json"))

	r := collect(t, tr.root, 0)
	as := r.Alerts.Alerts
	if len(as) != 3 {
		t.Fatalf("alerts: %+v", r.Alerts)
	}
	// Newest first; the daemon is the directory's, not the file's word.
	if as[0].Daemon != "worker" || as[0].Event != audit.Violation || as[0].Attrs["reason"] != "disk_budget" ||
		as[1].Daemon != "courier" || as[2].Daemon != "receiver" {
		t.Errorf("alerts: %+v", as)
	}
	if as[2].Attrs["evil"] != `\x1b[2J\x0aline` {
		t.Errorf("attribute not escaped: %q", as[2].Attrs["evil"])
	}
	if len(r.Alerts.Problems) != 1 || !strings.HasPrefix(r.Alerts.Problems[0].File, "receiver/alerts/") {
		t.Errorf("problems: %+v", r.Alerts.Problems)
	}
	// A value with a space or = (yt-dlp's stderr is partly the video's)
	// is quoted: it cannot read as more key=value pairs.
	tr.write("results/"+job.AlertName(id('e')), mk(now.Add(-30*time.Second), audit.Violation, map[string]string{"stderr": "x reason=none signal=none (benign)"}))
	var b bytes.Buffer
	if err := WriteText(&b, collect(t, tr.root, 0)); err != nil {
		t.Fatal(err)
	}
	if want := `stderr="x reason=none signal=none (benign)"`; !strings.Contains(b.String(), want) {
		t.Errorf("the value is not quoted (want %s):\n%s", want, b.String())
	}
}

// TestHostile fills the spool with what a compromised daemon could
// write: the report lists each as a problem, reads none of them as a
// record, and shows no byte of their names raw.
func TestHostile(t *testing.T) {
	tr := newTree(t)
	secret := filepath.Join(t.TempDir(), "secret")
	// A file that parses as a job: a symbolic link to it must not be read.
	if err := os.WriteFile(secret, newJob(t, id('s'), "U0SECRET1", "dQw4w9WgXcQ", job.FormatBest, now.Unix()), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, file, why string
		make            func(path string) error
	}{
		{"symlink in claimed", "worker/claimed/" + id('s') + ".job.1", "a symlink, not a regular file",
			func(p string) error { return os.Symlink(secret, p) }},
		{"huge file", "incoming/" + id('h') + ".job", "1073741824 bytes, over the 4096-byte limit",
			func(p string) error {
				if err := os.WriteFile(p, nil, 0o600); err != nil {
					return err
				}
				return os.Truncate(p, 1<<30) // sparse
			}},
		{"bad record", "incoming/" + id('b') + ".job", "malformed record: not in canonical form",
			func(p string) error {
				return os.WriteFile(p, append(newJob(t, id('b'), "U00000001", "dQw4w9WgXcQ", job.FormatBest, now.Unix()), ' '), 0o600)
			}},
		{"other job's record", "incoming/" + id('o') + ".job", "file name names job " + id('o') + ", content job " + id('x'),
			func(p string) error {
				return os.WriteFile(p, newJob(t, id('x'), "U00000001", "dQw4w9WgXcQ", job.FormatBest, now.Unix()), 0o600)
			}},
		{"escape sequences", "incoming/\x1b]0;owned\x07\x1b[2J\n[OK] fake line", "not a ytkeep file name",
			func(p string) error { return os.WriteFile(p, nil, 0o600) }},
		{"FIFO", "incoming/" + id('f') + ".job", "a fifo, not a regular file",
			func(p string) error { return unix.Mkfifo(p, 0o600) }},
		{"hard link", "worker/claimed/" + id('l') + ".job.1", "hard link count 2",
			func(p string) error {
				if err := os.WriteFile(p, newJob(t, id('l'), "U00000001", "dQw4w9WgXcQ", job.FormatBest, now.Unix()), 0o600); err != nil {
					return err
				}
				return os.Link(p, p+".x")
			}},
		{"directory", "worker/claimed/" + id('e') + ".job.1", "a directory, not a regular file",
			func(p string) error { return os.Mkdir(p, 0o700) }},
	}
	for _, c := range cases {
		if c.make == nil {
			continue
		}
		if err := c.make(tr.path(c.file)); err != nil {
			t.Fatal(c.name, err)
		}
	}
	if os.Getuid() == 0 {
		p := tr.path("incoming/" + id('u') + ".job")
		tr.write("incoming/"+id('u')+".job", newJob(t, id('u'), "U00000001", "dQw4w9WgXcQ", job.FormatBest, now.Unix()))
		if err := os.Chown(p, 54321, 54321); err != nil {
			t.Fatal(err)
		}
		cases = append(cases, struct {
			name, file, why string
			make            func(path string) error
		}{"wrong owner", "incoming/" + id('u') + ".job", "owned by uid 54321, not its writer's uid 0", nil})
	}

	r := collect(t, tr.root, 0)
	if len(r.Jobs.Jobs) != 0 {
		t.Errorf("hostile files read as jobs: %+v", r.Jobs.Jobs)
	}
	problems := map[string]string{}
	for _, p := range r.Jobs.Problems {
		problems[p.File] = p.Why
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir, base := filepath.Split(c.file)
			file := dir + Name(base)
			why, ok := problems[file]
			if !ok {
				t.Fatalf("no problem for %s in %+v", file, r.Jobs.Problems)
			}
			if !strings.Contains(why, c.why) {
				t.Errorf("why = %q, want %q", why, c.why)
			}
		})
	}
	// The extra name of the hard link is listed too.
	if _, ok := problems["worker/claimed/"+id('l')+".job.1.x"]; !ok {
		t.Errorf("the hard link's second name is not listed: %+v", problems)
	}
	var text, js bytes.Buffer
	if err := WriteText(&text, r); err != nil {
		t.Fatal(err)
	}
	if err := WriteJSON(&js, r); err != nil {
		t.Fatal(err)
	}
	for what, out := range map[string][]byte{"text": text.Bytes(), "JSON": js.Bytes()} {
		for _, c := range out {
			if (c < ' ' && c != '\n') || c >= 0x7f {
				t.Errorf("%s output holds byte %#x:\n%s", what, c, out)
				break
			}
		}
		if bytes.Contains(out, []byte("U0SECRET1")) {
			t.Errorf("%s output shows the symbolic link's target", what)
		}
	}
	if !strings.Contains(text.String(), `problem: incoming/\x1b]0;owned\x07\x1b[2J\x0a[OK]\x20fake\x20line: not a ytkeep file name`) {
		t.Errorf("the escaped name is not shown as expected:\n%s", text.String())
	}
}

// TestUnreadableSection: a directory that cannot be opened makes its
// section incomplete, says so, and leaves the others whole.
func TestUnreadableSection(t *testing.T) {
	tr := newTree(t)
	tr.write("incoming/"+id('q')+".job", newJob(t, id('q'), "U00000001", "dQw4w9WgXcQ", job.FormatBest, now.Unix()))
	// The courier's history replaced by a symbolic link to a directory.
	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(other, "U00000001.json"), []byte(`{"v":1,"jobs":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(tr.path("courier/history")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(other, tr.path("courier/history")); err != nil {
		t.Fatal(err)
	}
	// The courier's alerts directory missing.
	if err := os.Remove(tr.path("courier/alerts")); err != nil {
		t.Fatal(err)
	}
	// The receiver's directory missing: its uid, which job files must
	// have, is unknown.
	if err := os.RemoveAll(tr.path("receiver")); err != nil {
		t.Fatal(err)
	}
	r := collect(t, tr.root, 0)
	if len(r.Jobs.Jobs) != 1 || len(r.Jobs.Errors) != 1 || r.Jobs.Errors[0] != "couldn't open receiver/: the owner of its records is not checked" {
		t.Errorf("jobs: %+v", r.Jobs)
	}
	if len(r.Failures.Errors) != 1 || !strings.Contains(r.Failures.Errors[0], "courier/history/: not a directory (a symbolic link?)") {
		t.Errorf("failures: %+v", r.Failures)
	}
	if len(r.Alerts.Errors) != 3 || !strings.Contains(r.Alerts.Errors[1], "receiver/alerts/: no such file or directory") ||
		!strings.Contains(r.Alerts.Errors[2], "courier/alerts/: no such file or directory") {
		t.Errorf("alerts: %+v", r.Alerts)
	}
	var b bytes.Buffer
	WriteText(&b, r)
	if !strings.Contains(b.String(), "  INCOMPLETE: couldn't open courier/history/: not a directory (a symbolic link?)\n") {
		t.Errorf("text:\n%s", b.String())
	}
}

// walk calls fn for root and every file below it, in name order,
// reading directories and files with O_NOATIME (the test owns them), so
// that walking changes no access time.
func walk(t *testing.T, p string, fn func(p string, st *unix.Stat_t, data []byte)) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	var data []byte
	var names []string
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG, unix.S_IFDIR:
		if st.Mode&unix.S_IFMT == unix.S_IFREG && st.Size >= 1<<20 {
			break
		}
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOATIME|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		f := os.NewFile(uintptr(fd), p)
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			names, err = f.Readdirnames(-1)
		} else {
			data, err = io.ReadAll(f)
		}
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	fn(p, &st, data)
	slices.Sort(names)
	for _, n := range names {
		walk(t, filepath.Join(p, n), fn)
	}
}

// snapshot describes every file below root: type, mode, owner, size,
// modification, change and access times, and content.
func snapshot(t *testing.T, root string) string {
	t.Helper()
	var b strings.Builder
	walk(t, root, func(p string, st *unix.Stat_t, data []byte) {
		fmt.Fprintf(&b, "%q %o %d:%d %d m%d.%d c%d.%d a%d.%d %x\n", p, st.Mode, st.Uid, st.Gid, st.Size,
			st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec, st.Atim.Sec, st.Atim.Nsec, sha256.Sum256(data))
	})
	return b.String()
}

// TestReadOnly: a report changes nothing in the spool, not even an
// access time.
func TestReadOnly(t *testing.T) {
	tr := newTree(t)
	tr.write("incoming/"+id('q')+".job", newJob(t, id('q'), "U00000001", "dQw4w9WgXcQ", job.FormatBest, now.Unix()))
	tr.write("worker/claimed/"+id('c')+".job.1", newJob(t, id('c'), "U00000001", "dQw4w9WgXcQ", job.FormatBest, now.Unix()))
	tr.write("courier/history/U00000001.json", []byte(`{"v":1,"jobs":[]}`))
	tr.write("worker/quarantine/1.1."+id('x')+".job", []byte("junk"))
	tr.write("results/"+job.AlertName(id('a')), []byte("junk"))
	if err := unix.Mkfifo(tr.path("incoming/fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Times in the past, so that a read would move the access time
	// (relatime updates it when it is not after the modification).
	past := time.Unix(1_700_000_000, 0)
	walk(t, tr.root, func(p string, st *unix.Stat_t, _ []byte) {
		ts := []unix.Timespec{unix.NsecToTimespec(past.UnixNano()), unix.NsecToTimespec(past.UnixNano())}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			t.Fatal(err)
		}
	})
	before := snapshot(t, tr.root)
	r := collect(t, tr.root, 0)
	if len(r.Jobs.Jobs) != 2 {
		t.Fatalf("jobs: %+v", r.Jobs)
	}
	if after := snapshot(t, tr.root); after != before {
		t.Errorf("the spool changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

func TestAllowed(t *testing.T) {
	if err := Allowed(0); err != nil {
		t.Errorf("root refused: %v", err)
	}
	for _, uid := range []int{1, 1000, 61002, 65534} {
		if err := Allowed(uid); err == nil || !strings.Contains(err.Error(), "must run as root") {
			t.Errorf("uid %d: err = %v", uid, err)
		}
	}
}

func TestReport(t *testing.T) {
	tr := newTree(t)
	tr.write("incoming/"+id('q')+".job", newJob(t, id('q'), "U00000001", "dQw4w9WgXcQ", job.FormatBest, now.Unix()-90))
	r := collect(t, tr.root, 0)
	var b bytes.Buffer
	if err := WriteJSON(&b, r); err != nil {
		t.Fatal(err)
	}
	var back Report
	dec := json.NewDecoder(&b)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&back); err != nil {
		t.Fatal(err)
	}
	if back.Time != now.Unix() || len(back.Jobs.Jobs) != 1 || back.Jobs.Jobs[0].Created != now.Unix()-90 {
		t.Errorf("JSON round trip: %+v", back)
	}
	b.Reset()
	WriteText(&b, r)
	if !strings.Contains(b.String(), "queued  "+id('q')+"  U00000001  T0123ABCD  dQw4w9WgXcQ  best    1m   ") {
		t.Errorf("text:\n%s", b.String())
	}
}

func TestAge(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "future"}, {0, "0s"}, {59 * time.Second, "59s"}, {time.Minute, "1m"}, {59*time.Minute + 59*time.Second, "59m"},
		{time.Hour + 5*time.Minute, "1h05m"}, {49 * time.Hour, "2d01h"},
	} {
		if got := age(c.d); got != c.want {
			t.Errorf("age(%v) = %q, want %q", c.d, got, c.want)
		}
	}
}

func TestEscape(t *testing.T) {
	for _, c := range []struct{ in, name, text string }{
		{"plain.job", "plain.job", "plain.job"},
		{"a b", `a\x20b`, "a b"},
		{"\x1b[31mred", `\x1b[31mred`, `\x1b[31mred`},
		{"back\\slash", `back\x5cslash`, `back\x5cslash`},
		{"tab\tnew\nline\r", `tab\x09new\x0aline\x0d`, `tab\x09new\x0aline\x0d`},
		{"\u202eevil", `\xe2\x80\xaeevil`, `\xe2\x80\xaeevil`},
		{"\xc2\x9b2J", `\xc2\x9b2J`, `\xc2\x9b2J`},
		{"del\x7f", `del\x7f`, `del\x7f`},
		{strings.Repeat("a", 300), strings.Repeat("a", 200) + "...", strings.Repeat("a", 200) + "..."},
	} {
		if got := Name(c.in); got != c.name {
			t.Errorf("Name(%q) = %q, want %q", c.in, got, c.name)
		}
		if got := Text(c.in); got != c.text {
			t.Errorf("Text(%q) = %q, want %q", c.in, got, c.text)
		}
	}
}

func FuzzEscape(f *testing.F) {
	f.Add("\x1b]0;x\x07\n")
	f.Add("\u202e")
	f.Fuzz(func(t *testing.T, s string) {
		for _, out := range []string{Name(s), Text(s)} {
			for i := 0; i < len(out); i++ {
				if out[i] < ' ' || out[i] >= 0x7f {
					t.Fatalf("escaped %q holds %#x", s, out[i])
				}
			}
		}
		if strings.ContainsRune(Name(s), ' ') {
			t.Fatalf("Name(%q) holds a blank", s)
		}
	})
}
