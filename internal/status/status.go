// Package status reports what the spool holds, for "ytkeep status": the
// jobs queued and running, with their age and requester; the recent
// failures, with their reason; the files the daemons quarantined; and the
// alerts waiting to be posted. It is a trust boundary: every file it
// reads was written by a daemon an attacker may control.
//
// It reads and never writes: no file or directory is created, renamed,
// chmodded or removed, and every open is read-only, relative to a
// directory descriptor and without following a symbolic link (read.go).
// A record is read only when it is a regular file with one link, owned by
// the user whose daemon writes it, and no larger than its format allows,
// and then only through the strict parsers of package job; the number of
// names listed and records read per directory is bounded (maxNames,
// maxRead). Every string from the spool is shown escaped (Name, Text).
//
// Which job is queued and which is running is derived from what is on
// disk, not from the worker's memory (its queue): a job file still in
// incoming/ is queued (the worker claims a file only when a download slot
// takes it); a job in worker/claimed/ has a slot; of those, the one whose
// job directory exists in work/ is downloading, one whose video and
// format another claimed job is downloading is parked behind it, and
// any other is claimed: about to start or to be stored, or left by a
// worker that stopped (it runs again at the worker's next start).
//
// Reading the daemons' private directories takes root: Allowed says so.
//
// BUG(status): Queued jobs are listed in the order their files entered
// incoming/; the worker's queue is close to it, not bound to it (at its
// start it takes incoming/ in directory order, then files as inotify
// reports them), and a place in the queue is not shown.
//
// BUG(status): A daemon writes no reason next to a quarantined file (it
// logs one): Quarantined.Why is this package's own check, which cannot
// see what needs the daemon's state or the reply key.
//
// BUG(status): Alerts are on disk only until they are posted; posted
// ones are in the daemons' logs, which this package does not read.
package status

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ytkeep/ytkeep/internal/courier"
	"github.com/ytkeep/ytkeep/internal/job"
	"github.com/ytkeep/ytkeep/internal/slackreq"
)

// Bounds on what one report reads.
const (
	// maxNames caps the names listed per directory; past it, the report
	// says how many it listed and that there were more.
	maxNames = 100000
	// maxRead caps the records read per directory (oldest jobs first,
	// newest histories, alerts and quarantined files first).
	maxRead = 2000
	// DefaultLimit is how many entries each section shows by default.
	DefaultLimit = 50
)

// Options say what to read.
type Options struct {
	// SpoolDir is the spool's root (config spool.dir).
	SpoolDir string
	// Now is the time the ages are counted to.
	Now time.Time
	// Limit caps the entries shown per section (DefaultLimit when 0).
	Limit int
}

// Report is what the spool holds. Times are Unix seconds; every string
// read from the spool is escaped (Name, Text).
type Report struct {
	Spool      string            `json:"spool"`
	Time       int64             `json:"time"`
	Jobs       JobSection        `json:"jobs"`
	Failures   FailureSection    `json:"failures"`
	Quarantine QuarantineSection `json:"quarantine"`
	Alerts     AlertSection      `json:"alerts"`
}

// Section is what every section has besides its entries.
type Section struct {
	// Omitted counts the entries not shown: past Options.Limit, or not
	// read at all (past maxRead or maxNames).
	Omitted int `json:"omitted"`
	// Problems are files found where they do not belong, or refused.
	Problems []Problem `json:"problems,omitempty"`
	// Errors are the directories that could not be read (permission,
	// missing, a symbolic link): the section is incomplete.
	Errors []string `json:"errors,omitempty"`
}

// Problem is a file that is not what its directory should hold.
type Problem struct {
	File string `json:"file"` // its path below the spool, escaped
	Why  string `json:"why"`  // escaped
}

// The states of a job.
const (
	StateDownloading = "downloading" // claimed, its job directory in work/
	StateParked      = "parked"      // claimed, behind another job's download of the same video and format
	StateClaimed     = "claimed"     // claimed, not downloading (see the package comment)
	StateQueued      = "queued"      // in incoming/, waiting for a download slot
)

// JobSection lists the jobs queued and running.
type JobSection struct {
	Section
	Queued  int   `json:"queued"`  // jobs in incoming/ (read)
	Running int   `json:"running"` // jobs in worker/claimed/ (read)
	Jobs    []Job `json:"jobs"`
}

// Job is a job queued or running.
type Job struct {
	State   string `json:"state"`
	ID      string `json:"id"`
	User    string `json:"user"`
	Team    string `json:"team"`
	Video   string `json:"video"`
	Format  string `json:"format"`
	Created int64  `json:"created"`           // the command's time, from the record
	Since   int64  `json:"since"`             // when its file entered incoming/ or was claimed
	Attempt int    `json:"attempt,omitempty"` // claimed: the run, 1 for the first
	File    string `json:"file"`
}

// FailureSection lists the recent failures, newest first.
type FailureSection struct {
	Section
	Failures []Failure `json:"failures"`
}

// Failure is a job that ended without a file.
type Failure struct {
	Time   int64  `json:"time"` // when it was recorded
	ID     string `json:"id"`
	User   string `json:"user,omitempty"` // unknown for a result the courier has not taken
	Video  string `json:"video,omitempty"`
	Format string `json:"format,omitempty"`
	Class  string `json:"class"`
	Reason string `json:"reason"`
	// Source is courier/history/<user>.json, or results/<file> for a
	// result the courier has not taken yet.
	Source string `json:"source"`
}

// QuarantineSection lists the quarantined files, newest first.
type QuarantineSection struct {
	Section
	Files []Quarantined `json:"files"`
}

// Quarantined is a file a daemon refused and moved aside. The daemon
// logs why (the audit event "quarantined", with the file's quarantine
// name) but writes no reason to disk: Why is the report's own check of
// the file against what its original name says it is.
type Quarantined struct {
	Daemon   string `json:"daemon"` // whose quarantine: worker or courier
	Name     string `json:"name"`   // in <daemon>/quarantine/
	Original string `json:"original"`
	Type     string `json:"type"` // file, symlink, directory, fifo, socket, device
	Size     int64  `json:"size"`
	Time     int64  `json:"time"` // when it was moved there (its inode's change time)
	Why      string `json:"why"`
}

// AlertSection lists the alerts waiting to be posted, newest first.
type AlertSection struct {
	Section
	Alerts []Alert `json:"alerts"`
}

// Alert is an alert file not yet posted: one of the worker's, in
// results/ until the courier takes it, or one a daemon kept while it was
// down (receiver/alerts/, courier/alerts/). Alerts once posted are in
// the daemons' logs only.
type Alert struct {
	Time   int64             `json:"time"`
	Daemon string            `json:"daemon"` // whose directory it is in, never the file's word
	Event  string            `json:"event"`
	Attrs  map[string]string `json:"attrs,omitempty"` // escaped
	File   string            `json:"file"`
}

// Allowed reports whether a process with effective uid euid may run the
// report: the daemons' directories are theirs alone (mode 0700) and the
// shared ones cannot be listed by their groups (1730), so only root can
// read them, and nobody else is given that right.
func Allowed(euid int) error {
	if euid != 0 {
		return errors.New("must run as root: the spool's directories belong to the daemons' users, and only root may read them all")
	}
	return nil
}

// Collect reads the spool into a report. It fails only when the spool's
// root cannot be opened; a directory that cannot be read is reported in
// its section's Errors.
func Collect(opt Options) (*Report, error) {
	if opt.Limit <= 0 {
		opt.Limit = DefaultLimit
	}
	root, err := openRoot(opt.SpoolDir)
	if err != nil {
		return nil, err
	}
	c := &collector{root: root, opt: opt,
		recvUID: root.ownerOf("receiver"), workerUID: root.ownerOf("worker"), courierUID: root.ownerOf("courier")}
	defer c.close()
	r := &Report{Spool: Text(opt.SpoolDir), Time: opt.Now.Unix()}
	results := c.list("results")
	r.Jobs = c.jobs()
	r.Failures = c.failures(results)
	r.Quarantine = c.quarantine()
	r.Alerts = c.alerts(results)
	return r, nil
}

type collector struct {
	root                           *dir
	opt                            Options
	recvUID, workerUID, courierUID int // -1 when unknown: any owner
	opened                         []*dir
}

// close closes the root and every directory list opened.
func (c *collector) close() {
	for _, d := range c.opened {
		d.close()
	}
	c.root.close()
}

// entry is a name listed in a directory, with its lstat.
type entry struct {
	name string
	st   *unix.Stat_t
}

func (e entry) ctime() int64 { return e.st.Ctim.Sec }
func (e entry) mtime() int64 { return e.st.Mtim.Sec }

// listing is a directory's names, each lstat'ed.
type listing struct {
	d       *dir
	rel     string
	entries []entry
	more    bool  // past maxNames
	err     error // could not be opened or listed
}

// list opens and lists rel; the directory stays open for reads until
// the report is done (close).
func (c *collector) list(rel string) *listing {
	l := &listing{rel: rel}
	d, err := c.root.open(rel)
	if err != nil {
		l.err = err
		return l
	}
	c.opened = append(c.opened, d)
	l.d = d
	names, more, err := d.names(maxNames)
	if err != nil {
		l.err = err
		return l
	}
	l.more = more
	for _, n := range names {
		st, err := d.lstat(n)
		if err != nil {
			continue // gone since it was listed
		}
		l.entries = append(l.entries, entry{n, st})
	}
	return l
}

func (l *listing) file(name string) string { return l.rel + "/" + Name(name) }

// noteErr adds l's error to s; it reports whether l can be used.
func (s *Section) noteErr(l *listing) bool {
	if l.err != nil {
		s.Errors = append(s.Errors, Text(l.err.Error()))
		return false
	}
	if l.more {
		s.Errors = append(s.Errors, fmt.Sprintf("%s/ holds more than %d entries: only %d were listed", l.rel, maxNames, maxNames))
	}
	return true
}

// noteOwner says, when the owner of a daemon's directory (the uid its
// records must have) is unknown, that records are read whatever their
// owner.
func (s *Section) noteOwner(daemon string, uid int) {
	if uid < 0 {
		s.Errors = append(s.Errors, fmt.Sprintf("couldn't open %s/: the owner of its records is not checked", daemon))
	}
}

func (s *Section) problem(l *listing, name, why string) {
	s.Problems = append(s.Problems, Problem{File: l.file(name), Why: Text(why)})
}

// readErr says why a record could not be read or parsed.
func readErr(err error) string {
	var pe *job.ParseError
	if errors.As(err, &pe) {
		return pe.Error()
	}
	return err.Error()
}

// jobs lists incoming/ and worker/claimed/, and looks each claimed job
// up in work/.
func (c *collector) jobs() JobSection {
	var s JobSection
	var jobs []Job
	s.noteOwner("receiver", c.recvUID)
	read := func(l *listing, kind job.Kind, state string) {
		if !s.noteErr(l) {
			return
		}
		var recs []entry
		for _, e := range l.entries {
			n, err := job.ParseName(e.name)
			switch {
			case err == nil && n.Kind == kind:
				recs = append(recs, e)
			case err == nil && n.Kind == job.KindRequest:
				// A user's request (list, cancel, send) the worker has
				// not handled yet, or is handling: not a job.
			case err != nil:
				s.problem(l, e.name, err.Error())
			default:
				s.problem(l, e.name, "not a job file name")
			}
		}
		// Oldest first: the queue's order, as far as the disk knows it.
		slices.SortFunc(recs, func(a, b entry) int {
			return cmp.Or(cmp.Compare(a.ctime(), b.ctime()), strings.Compare(a.name, b.name))
		})
		if len(recs) > maxRead {
			s.Omitted += len(recs) - maxRead
			recs = recs[:maxRead]
		}
		for _, e := range recs {
			n, _ := job.ParseName(e.name)
			data, err := l.d.read(e.name, c.recvUID, job.MaxRecordSize)
			var j *job.Job
			if err == nil {
				j, err = job.ParseJob(data)
			}
			if err == nil && j.ID != n.ID {
				err = fmt.Errorf("file name names job %s, content job %s", n.ID, j.ID)
			}
			if err != nil {
				s.problem(l, e.name, readErr(err))
				continue
			}
			jobs = append(jobs, Job{State: state, ID: j.ID, User: j.User, Team: j.Team, Video: j.Video, Format: string(j.Format),
				Created: j.Created, Since: e.ctime(), Attempt: n.Attempt, File: l.file(e.name)})
			if state == StateQueued {
				s.Queued++
			} else {
				s.Running++
			}
		}
	}
	read(c.list("incoming"), job.KindJob, StateQueued)
	read(c.list("worker/claimed"), job.KindClaimed, StateClaimed)

	// Which claimed jobs download: their directory is in work/.
	work, err := c.root.open("work")
	if err != nil {
		if s.Running > 0 {
			s.Errors = append(s.Errors, Text(err.Error())+": downloading and claimed jobs are not told apart")
		}
	} else {
		defer work.close()
		downloading := map[string]bool{} // video-format
		for i := range jobs {
			if jobs[i].State != StateClaimed {
				continue
			}
			if st, err := work.lstat(jobs[i].ID); err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
				jobs[i].State = StateDownloading
				downloading[jobs[i].Video+"-"+jobs[i].Format] = true
			}
		}
		for i := range jobs {
			if jobs[i].State == StateClaimed && downloading[jobs[i].Video+"-"+jobs[i].Format] {
				jobs[i].State = StateParked
			}
		}
	}
	rank := map[string]int{StateDownloading: 0, StateParked: 1, StateClaimed: 2, StateQueued: 3}
	slices.SortStableFunc(jobs, func(a, b Job) int {
		return cmp.Or(cmp.Compare(rank[a.State], rank[b.State]), cmp.Compare(a.Since, b.Since), strings.Compare(a.ID, b.ID))
	})
	s.Jobs, s.Omitted = limit(jobs, c.opt.Limit, s.Omitted)
	return s
}

// limit keeps the first n of xs, adding the others to omitted.
func limit[T any](xs []T, n, omitted int) ([]T, int) {
	if xs == nil {
		xs = []T{} // [] in the JSON, not null
	}
	if len(xs) > n {
		return xs[:n], omitted + len(xs) - n
	}
	return xs, omitted
}

// failures reads the courier's histories (each user's last jobs) and
// the failed results the courier has not taken yet.
func (c *collector) failures(results *listing) FailureSection {
	var s FailureSection
	var fs []Failure
	s.noteOwner("courier", c.courierUID)
	s.noteOwner("worker", c.workerUID)
	seen := map[string]bool{}
	if l := c.list("courier/history"); s.noteErr(l) {
		var files []entry
		for _, e := range l.entries {
			user, ok := strings.CutSuffix(e.name, ".json")
			if !ok || !slackreq.ValidSlackID(user) {
				s.problem(l, e.name, "not a history file name")
				continue
			}
			files = append(files, e)
		}
		// The most recently changed first.
		slices.SortFunc(files, func(a, b entry) int {
			return cmp.Or(cmp.Compare(b.mtime(), a.mtime()), strings.Compare(a.name, b.name))
		})
		if len(files) > maxRead {
			s.Omitted += len(files) - maxRead
			files = files[:maxRead]
		}
		for _, e := range files {
			user := strings.TrimSuffix(e.name, ".json")
			data, err := l.d.read(e.name, c.courierUID, courier.MaxHistorySize)
			var jobs []courier.HistoryEntry
			if err == nil {
				jobs, err = courier.ParseHistory(data) // as the courier reads it
			}
			if err != nil {
				s.problem(l, e.name, readErr(err))
				continue
			}
			for _, j := range jobs {
				if j.State != courier.HistoryFailed {
					continue
				}
				seen[j.Job] = true
				fs = append(fs, Failure{Time: j.Updated, ID: j.Job, User: user, Video: j.Video, Format: string(j.Format),
					Class: string(j.Class), Reason: j.Class.Describe(), Source: l.file(e.name)})
			}
		}
	}
	if s.noteErr(results) {
		n := 0
		for _, e := range results.entries {
			name, err := job.ParseName(e.name)
			if err != nil || name.Kind != job.KindResult || name.Status != job.StatusFailed || seen[name.ID] {
				continue // what is not a failed result is another section's
			}
			if n++; n > maxRead {
				s.Omitted++
				continue
			}
			data, err := results.d.read(e.name, c.workerUID, job.MaxRecordSize)
			var r *job.Result
			if err == nil {
				r, err = job.ParseResult(data)
			}
			if err == nil && r.FileName() != e.name {
				err = errors.New("file name does not match its content")
			}
			if err != nil {
				s.problem(results, e.name, readErr(err))
				continue
			}
			fs = append(fs, Failure{Time: e.ctime(), ID: r.Job, Class: string(r.Class), Reason: r.Class.Describe(), Source: results.file(e.name)})
		}
	}
	slices.SortStableFunc(fs, func(a, b Failure) int { return cmp.Or(cmp.Compare(b.Time, a.Time), strings.Compare(a.ID, b.ID)) })
	s.Failures, s.Omitted = limit(fs, c.opt.Limit, s.Omitted)
	return s
}

// quarantine lists the worker's and the courier's quarantine.
func (c *collector) quarantine() QuarantineSection {
	var s QuarantineSection
	var qs []Quarantined
	for _, daemon := range []string{"worker", "courier"} {
		l := c.list(daemon + "/quarantine")
		if !s.noteErr(l) {
			continue
		}
		es := slices.Clone(l.entries)
		slices.SortFunc(es, func(a, b entry) int {
			return cmp.Or(cmp.Compare(b.ctime(), a.ctime()), strings.Compare(a.name, b.name))
		})
		for i, e := range es {
			q := Quarantined{Daemon: daemon, Name: Name(e.name), Original: Name(originalName(e.name)), Type: fileType(e.st),
				Size: e.st.Size, Time: e.ctime()}
			if i < maxRead {
				q.Why = Text(c.why(l, daemon, e))
			} else {
				q.Why = "not checked (too many files)"
			}
			qs = append(qs, q)
		}
	}
	slices.SortStableFunc(qs, func(a, b Quarantined) int { return cmp.Compare(b.Time, a.Time) })
	s.Files, s.Omitted = limit(qs, c.opt.Limit, s.Omitted)
	return s
}

// originalName is the name a quarantined file had: spool.Inbox names it
// <unix nanoseconds>.<sequence>.<name, cleaned>.
func originalName(q string) string {
	parts := strings.SplitN(q, ".", 3)
	if len(parts) != 3 || !digits(parts[0]) || !digits(parts[1]) {
		return ""
	}
	return parts[2]
}

func digits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

// why checks a quarantined file again as its daemon did, as far as it
// can be without the daemon's state or secrets.
func (c *collector) why(l *listing, daemon string, e entry) string {
	orig := originalName(e.name)
	if orig == "" {
		return "not a quarantine name"
	}
	n, err := job.ParseName(orig)
	if err != nil {
		return err.Error()
	}
	uid, max := c.workerUID, job.MaxRecordSize
	var parse func([]byte) error
	switch {
	case daemon == "worker" && (n.Kind == job.KindJob || n.Kind == job.KindClaimed):
		uid = c.recvUID
		parse = func(b []byte) error {
			j, err := job.ParseJob(b)
			if err == nil && j.ID != n.ID {
				err = fmt.Errorf("file name names job %s, content job %s", n.ID, j.ID)
			}
			return err
		}
	case daemon == "worker" && n.Kind == job.KindRequest:
		uid = c.recvUID
		parse = func(b []byte) error {
			r, err := job.ParseRequest(b)
			switch {
			case err != nil:
				return err
			case r.ID != n.ID:
				return errors.New("file name does not match its content")
			case r.Outcome != job.OutcomeNone:
				return errors.New("a request from the receiver has no outcome")
			}
			return nil
		}
	case daemon == "courier" && n.Kind == job.KindResult:
		parse = func(b []byte) error {
			r, err := job.ParseResult(b)
			if err == nil && r.FileName() != orig {
				err = errors.New("file name does not match its content")
			}
			return err
		}
	case daemon == "courier" && n.Kind == job.KindProgress:
		parse = func(b []byte) error {
			p, err := job.ParseProgress(b)
			if err == nil && p.FileName() != orig {
				err = errors.New("file name does not match its content")
			}
			return err
		}
	case daemon == "courier" && n.Kind == job.KindRequest:
		parse = func(b []byte) error {
			r, err := job.ParseRequest(b)
			if err == nil && r.FileName() != orig {
				err = errors.New("file name does not match its content")
			}
			return err
		}
	case daemon == "courier" && n.Kind == job.KindAlert:
		max = job.MaxAlertSize
		parse = func(b []byte) error { _, err := job.ParseAlert(b, "worker"); return err }
	default:
		return "not a file name the " + daemon + " reads"
	}
	data, err := l.d.read(e.name, uid, max)
	if err == nil {
		err = parse(data)
	}
	if err != nil {
		return readErr(err)
	}
	return "well formed: refused for what only the " + daemon + " can check (see its log, event quarantined)"
}

// alerts lists the alert files not yet posted.
func (c *collector) alerts(results *listing) AlertSection {
	var s AlertSection
	var as []Alert
	s.noteOwner("worker", c.workerUID)
	s.noteOwner("receiver", c.recvUID)
	s.noteOwner("courier", c.courierUID)
	for _, src := range []struct {
		l      *listing
		daemon string
		uid    int
	}{
		{results, "worker", c.workerUID},
		{c.list("receiver/alerts"), "receiver", c.recvUID},
		{c.list("courier/alerts"), "courier", c.courierUID},
	} {
		if !s.noteErr(src.l) {
			continue
		}
		var files []entry
		for _, e := range src.l.entries {
			n, err := job.ParseName(e.name)
			switch {
			case err == nil && n.Kind == job.KindAlert:
				files = append(files, e)
			case src.l == results && err == nil:
				// A result, progress record or request: not an alert.
			case src.l == results:
				s.problem(src.l, e.name, err.Error())
			default:
				s.problem(src.l, e.name, "not an alert file name")
			}
		}
		slices.SortFunc(files, func(a, b entry) int {
			return cmp.Or(cmp.Compare(b.ctime(), a.ctime()), strings.Compare(a.name, b.name))
		})
		if len(files) > maxRead {
			s.Omitted += len(files) - maxRead
			files = files[:maxRead]
		}
		for _, e := range files {
			data, err := src.l.d.read(e.name, src.uid, job.MaxAlertSize)
			if err != nil {
				s.problem(src.l, e.name, readErr(err))
				continue
			}
			a, err := job.ParseAlert(data, src.daemon)
			if err != nil {
				s.problem(src.l, e.name, readErr(err))
				continue
			}
			attrs := map[string]string{}
			for k, v := range a.Attrs {
				attrs[Name(k)] = Text(v)
			}
			if len(attrs) == 0 {
				attrs = nil
			}
			as = append(as, Alert{Time: a.Time.Unix(), Daemon: src.daemon, Event: Name(a.Event), Attrs: attrs, File: src.l.file(e.name)})
		}
	}
	slices.SortStableFunc(as, func(a, b Alert) int { return cmp.Or(cmp.Compare(b.Time, a.Time), strings.Compare(a.File, b.File)) })
	s.Alerts, s.Omitted = limit(as, c.opt.Limit, s.Omitted)
	return s
}
