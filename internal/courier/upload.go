package courier

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ytkeep/ytkeep/internal/audit"
	"github.com/ytkeep/ytkeep/internal/job"
	"github.com/ytkeep/ytkeep/internal/slackapi"
	"github.com/ytkeep/ytkeep/internal/spool"
)

// Uploads: a stored file goes into its requester's DM with the app
// (conversations.open, as status messages do, then Slack's three upload
// steps through slackapi.Client.Upload), never anywhere else, when the
// user asked for it: "/ytkeep <link> send" (the job's sealed token says
// Send), "/ytkeep send <job>" or the status message's button (a send
// request, for a job in the user's own history).
//
// Before a byte is read: the file must be within Options.MaxUploadBytes
// and the user's quota of the UTC day (Options.UploadQuotaBytes), which
// is counted, durably, before the upload is queued: a crash can lose an
// upload, never give one that was not counted. A failure before Slack
// was sent anything gives it back. The file is opened relative to the
// downloads directory's descriptor with O_NOFOLLOW, and the descriptor
// checked: a regular file with one link, the worker's, of exactly the
// size the result (or the history) gives, under the name the worker
// gives that video and format. The upload reads that descriptor.
//
// The checks and the count are made where the request or the final
// result is handled; the upload itself waits in a queue of uploadQueue
// for the one goroutine that uploads (runUploads), one file at a time:
// no upload holds up a status message or another user's final. A full
// queue refuses the upload (and gives the quota back). Each upload task
// has a deadline (uploadDeadline): a long rate-limit wait fails it rather
// than parking the uploader. What is said about an upload in the DM (a
// refusal, Slack not taking the file) goes through the lane of requests
// and notices (runMessages), never behind an upload.
//
// The same job's file is not sent twice to one user while an upload of
// it is queued or running, nor within resendAfter of one that went (a
// double click, "<link> send" then the button): that is refused. A bad
// stored file raises one alert (per file and fault, in memory), then
// events.

// uploadQueue is how many uploads may wait.
const uploadQueue = 8

// resendAfter is how long after an upload the same job's file is not
// sent again to the same user.
const resendAfter = 10 * time.Minute

// uploadDeadline bounds one upload task of size bytes (the DM, Slack's
// three steps and their rate-limit waits): the time Slack's client gives
// the bytes at its slowest rate, plus 10 minutes for the rest.
func uploadDeadline(size int64) time.Duration {
	return slackapi.UploadTimeout(size) + 10*time.Minute
}

// storedFile is a job's stored file, as its result or the requester's
// history describes it (the video and format from the sealed token).
type storedFile struct {
	job, video string
	format     job.Format
	name       string
	title      string
	size       int64
}

// uploadTask is one upload, for the uploading goroutine.
type uploadTask struct {
	user   string
	file   *os.File
	stored storedFile
	day    string // the quota's day the upload was counted in
}

// sendKey is one job's file for one user.
type sendKey struct{ user, job string }

// sends are the uploads queued or running (a zero time) and those made
// in the last resendAfter (when), in memory.
type sends struct {
	mu sync.Mutex
	m  map[sendKey]time.Time
}

// begin marks k as being sent, unless it is already (busy) or was sent
// within resendAfter of now (sent: when).
func (s *sends) begin(k sendKey, now time.Time) (busy bool, sent time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for key, at := range s.m {
		if !at.IsZero() && now.Sub(at) >= resendAfter {
			delete(s.m, key)
		}
	}
	if at, ok := s.m[k]; ok {
		return at.IsZero(), at
	}
	if s.m == nil {
		s.m = map[sendKey]time.Time{}
	}
	s.m[k] = time.Time{}
	return false, time.Time{}
}

// end ends k's upload: made at now, or (now zero) not made, and then
// forgotten.
func (s *sends) end(k sendKey, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.IsZero() {
		delete(s.m, k)
		return
	}
	if s.m == nil {
		s.m = map[sendKey]time.Time{}
	}
	s.m[k] = now
}

// alertedFiles are the stored files (and their faults) an alert was
// raised about, in memory, at most maxAlertedFiles, then forgotten all
// at once.
type alertedFiles struct {
	mu sync.Mutex
	m  map[string]bool
}

const maxAlertedFiles = 1024

// first reports whether name's fault why is new, and remembers it.
func (a *alertedFiles) first(name, why string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	k := name + "\x00" + why
	if a.m[k] {
		return false
	}
	if a.m == nil || len(a.m) >= maxAlertedFiles {
		a.m = map[string]bool{}
	}
	a.m[k] = true
	return true
}

// uploadsOn reports whether the courier uploads files: a bot token, a
// cap above 0 and the downloads directory.
func (s *Service) uploadsOn() bool {
	return s.opt.Slack != nil && s.opt.MaxUploadBytes > 0 && s.downloads != nil
}

// prepareUpload decides on an upload of f for user and, when it may go,
// counts it in the user's quota and queues it. It returns what to tell
// the user, and whether the upload was queued. via says what asked for
// it, for the audit events.
func (s *Service) prepareUpload(user string, f storedFile, via string) (string, bool) {
	attrs := []any{"job", f.job, "user", user, "file", f.name, "size", f.size, "via", via}
	refuse := func(reason, text string) (string, bool) {
		audit.Event(s.log, audit.UploadRefused, append(attrs, "reason", reason)...)
		return text, false
	}
	kept := fmt.Sprintf("It stays on the server as `%s`.", f.name)
	switch {
	case !s.uploadsOn():
		return refuse("uploads_off", fmt.Sprintf("This server does not send files into Slack. `%s` (%s) is on the server.", f.name, formatMB(f.size)))
	case f.size > s.opt.MaxUploadBytes:
		return refuse("over_cap", fmt.Sprintf("`%s` is %s, over this server's upload limit of %s: I won't send it. %s",
			f.name, formatMB(f.size), formatMB(s.opt.MaxUploadBytes), kept))
	}
	// Once: not while it is queued or going, nor again soon after.
	key := sendKey{user: user, job: f.job}
	if busy, sent := s.sends.begin(key, s.opt.Now()); busy {
		return refuse("repeat", fmt.Sprintf("`%s` is already being sent into our direct messages.", f.name))
	} else if !sent.IsZero() {
		return refuse("repeat", fmt.Sprintf("`%s` was already sent into our direct messages, at %s.", f.name, sent.UTC().Format("15:04 UTC")))
	}
	queued := false
	defer func() {
		if !queued {
			s.sends.end(key, time.Time{})
		}
	}()
	file, why, err := s.openStored(f)
	if err != nil {
		if why == "missing" {
			return refuse("missing", fmt.Sprintf("`%s` is no longer on the server.", f.name))
		}
		// An alert the first time: a file in this state (a hard link an
		// admin made, say) is asked for again and again.
		if s.badFiles.first(f.name, why) {
			audit.Alert(s.log, audit.UploadRefused, append(attrs, "reason", "bad_file", "why", why)...)
		} else {
			audit.Event(s.log, audit.UploadRefused, append(attrs, "reason", "bad_file", "why", why)...)
		}
		return fmt.Sprintf("The stored file `%s` failed a check and was not sent (the admins are told).", f.name), false
	}
	left, day, ok, err := s.reserveQuota(user, f.size)
	switch {
	case err != nil:
		file.Close()
		s.log.Error("couldn't count an upload in its user's quota", "user", user, "err", err)
		return refuse("quota_unreadable", fmt.Sprintf("I couldn't check your upload quota, so I didn't send `%s` (the admins can see why in the log). %s", f.name, kept))
	case !ok:
		file.Close()
		return refuse("over_quota", fmt.Sprintf("`%s` is %s, more than the %s left of your upload quota today (%s a day, UTC): I won't send it. %s",
			f.name, formatMB(f.size), formatMB(left), formatMB(s.opt.UploadQuotaBytes), kept))
	}
	select {
	case s.uploads <- uploadTask{user: user, file: file, stored: f, day: day}:
	default:
		file.Close()
		s.refundQuota(user, day, f.size)
		return refuse("busy", fmt.Sprintf("Too many uploads are waiting: try again in a few minutes. %s", kept))
	}
	queued = true
	return fmt.Sprintf("Sending `%s` (%s) into our direct messages.", f.name, formatMB(f.size)), true
}

// openStored opens f's file in the downloads directory and checks it:
// its name is the one the worker gives f's video and format; the open
// does not follow a symlink; the descriptor is a regular file with one
// link, the worker's, without setuid or setgid bits, of exactly f.size
// bytes. It returns why it refused ("missing" for a file that is gone).
func (s *Service) openStored(f storedFile) (*os.File, string, error) {
	if !storedFileOf(f.name, f.video, f.format) {
		return nil, "not the job's stored file name", errors.New("refused")
	}
	// lstat first: never open a FIFO or a device, whose open can have
	// effects; then check the open descriptor, the file actually read.
	var st unix.Stat_t
	if err := unix.Fstatat(s.downloads.FD(), f.name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, "missing", err
		}
		return nil, err.Error(), err
	}
	if why := s.checkStored(&st, f.size); why != "" {
		return nil, why, errors.New(why)
	}
	fd, err := unix.Openat(s.downloads.FD(), f.name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, "symlink", err
		}
		return nil, err.Error(), err
	}
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, err.Error(), err
	}
	if why := s.checkStored(&st, f.size); why != "" {
		unix.Close(fd)
		return nil, why, errors.New(why)
	}
	return os.NewFile(uintptr(fd), f.name), "", nil
}

// checkStored says what is wrong with a stored file's stat, "" if
// nothing.
func (s *Service) checkStored(st *unix.Stat_t, size int64) string {
	switch {
	case st.Mode&unix.S_IFMT == unix.S_IFLNK:
		return "symlink"
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return "not a regular file"
	case st.Nlink != 1:
		return fmt.Sprintf("%d links", st.Nlink)
	case int(st.Uid) != s.inbox.UID:
		return fmt.Sprintf("owned by uid %d, not the worker's", st.Uid)
	case st.Mode&(unix.S_ISUID|unix.S_ISGID) != 0:
		return "setuid or setgid bit"
	case st.Size != size:
		return fmt.Sprintf("%d bytes, not the %d its job gives", st.Size, size)
	case size < 1:
		return "empty"
	}
	return ""
}

// runUploads uploads the queued files, one at a time, until ctx ends;
// the files still queued then are closed (their quota stays counted).
func (s *Service) runUploads(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			for {
				select {
				case t := <-s.uploads:
					t.file.Close()
				default:
					return
				}
			}
		case t := <-s.uploads:
			s.upload(ctx, t)
		}
	}
}

// upload makes one queued upload into t.user's DM, within its deadline.
func (s *Service) upload(ctx context.Context, t uploadTask) {
	defer t.file.Close()
	f := t.stored
	key := sendKey{user: t.user, job: f.job}
	attrs := []any{"job", f.job, "user", t.user, "file", f.name, "size", f.size}
	// A deadline: a 429 with a long Retry-After would otherwise park the
	// uploader (the client waits for its turn until ctx ends).
	uctx, cancel := context.WithTimeout(ctx, s.uploadDeadline(f.size))
	defer cancel()
	ch, err := s.opt.Slack.OpenDM(uctx, t.user)
	if err == nil {
		title := f.title
		if title == "" {
			title = f.name
		}
		err = s.opt.Slack.Upload(uctx, ch, f.name, title, io.NewSectionReader(t.file, 0, f.size), f.size)
	}
	if err == nil {
		s.sends.end(key, s.opt.Now())
		audit.Event(s.log, audit.Uploaded, attrs...)
		return
	}
	s.sends.end(key, time.Time{})
	var ae *slackapi.Error
	if !errors.As(err, &ae) || ae.Method == "conversations.open" || ae.Method == "files.getUploadURLExternal" {
		// Slack got none of the file: it does not count.
		s.refundQuota(t.user, t.day, f.size)
	}
	audit.Event(s.log, audit.UploadFailed, append(attrs, "code", errorCode(err))...)
	s.notify(t.user, f.job, fmt.Sprintf(":x: Slack did not take `%s` (%s), so it is not here. It stays on the server; ask again later.", f.name, errorCode(err)))
}

// postDM posts text as a new message in user's DM.
func (s *Service) postDM(ctx context.Context, user, text string) error {
	ch, err := s.opt.Slack.OpenDM(ctx, user)
	if err != nil {
		return err
	}
	_, err = s.opt.Slack.Post(ctx, ch, slackapi.Message{Text: text})
	return err
}

// errorCode is a Slack call's error in a word, for events and users.
func errorCode(err error) string {
	var ae *slackapi.Error
	if errors.As(err, &ae) {
		return ae.Code
	}
	return "error"
}

// quotaRecord is what a user has had uploaded on Day (UTC,
// YYYY-MM-DD): courier/quota/<user ID>.json.
type quotaRecord struct {
	Day   string `json:"day"`
	Bytes int64  `json:"bytes"`
}

// loadQuota reads user's quota record; an absent one is nothing used.
// One it cannot read or trust is an error: the upload is then refused
// (fail closed). The caller holds the user's lock.
func (s *Service) loadQuota(user string) (*quotaRecord, error) {
	name := historyName(user)
	if name == "" {
		return nil, fmt.Errorf("%q is not a Slack user ID", user)
	}
	data, err := spool.ReadFile(s.quota, name, -1, 256)
	if errors.Is(err, unix.ENOENT) {
		return &quotaRecord{}, nil
	}
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var q quotaRecord
	if err := dec.Decode(&q); err != nil || dec.More() {
		return nil, fmt.Errorf("quota %s: not a quota record", name)
	}
	if _, err := time.Parse(time.DateOnly, q.Day); err != nil || q.Bytes < 0 {
		return nil, fmt.Errorf("quota %s: bad day or count", name)
	}
	return &q, nil
}

func (s *Service) saveQuota(user string, q *quotaRecord) error {
	data, err := json.Marshal(q)
	if err != nil {
		return err
	}
	return spool.WriteFile(s.tmp, s.quota, historyName(user), data, 0o600, -1, true)
}

// reserveQuota counts size bytes in user's quota of today (UTC), durably,
// if they fit. It returns what is left (before the count when they do
// not fit), the day counted in, and whether they fit.
func (s *Service) reserveQuota(user string, size int64) (left int64, day string, ok bool, err error) {
	lock := s.userLocks.of(user)
	lock.Lock()
	defer lock.Unlock()
	q, err := s.loadQuota(user)
	if err != nil {
		return 0, "", false, err
	}
	day = s.opt.Now().UTC().Format(time.DateOnly)
	if q.Day != day {
		q = &quotaRecord{Day: day}
	}
	left = max(s.opt.UploadQuotaBytes-q.Bytes, 0)
	if size > left {
		return left, day, false, nil
	}
	q.Bytes += size
	if err := s.saveQuota(user, q); err != nil {
		return 0, "", false, err
	}
	return left - size, day, true, nil
}

// refundQuota takes size bytes back out of user's count of day, for an
// upload Slack got none of.
func (s *Service) refundQuota(user, day string, size int64) {
	lock := s.userLocks.of(user)
	lock.Lock()
	defer lock.Unlock()
	q, err := s.loadQuota(user)
	if err != nil || q.Day != day {
		return
	}
	q.Bytes = max(q.Bytes-size, 0)
	if err := s.saveQuota(user, q); err != nil {
		s.log.Error("couldn't give an upload back to its user's quota", "user", user, "err", err)
	}
}

// sweepQuota deletes the quota records of past days (two days old: a
// record is of its last upload's day), each under its user's lock, so
// that a record counted meanwhile is never the one deleted.
func (s *Service) sweepQuota() {
	names, err := s.quota.Names()
	if err != nil {
		return
	}
	for _, n := range names {
		user := strings.TrimSuffix(n, ".json")
		if historyName(user) != n {
			s.sweepQuotaFile(n) // not a user's: nothing counts in it
			continue
		}
		if s.quotaSweepHook != nil {
			s.quotaSweepHook(user)
		}
		lock := s.userLocks.of(user)
		lock.Lock()
		s.sweepQuotaFile(n)
		lock.Unlock()
	}
}

// sweepQuotaFile deletes quota record n if it is two days old.
func (s *Service) sweepQuotaFile(n string) {
	var st unix.Stat_t
	if unix.Fstatat(s.quota.FD(), n, &st, unix.AT_SYMLINK_NOFOLLOW) == nil &&
		s.opt.Now().Sub(time.Unix(st.Mtim.Sec, 0)) > 48*time.Hour {
		s.quota.Remove(n)
	}
}

// formatMB is a size in MB of 1,000,000 bytes, the unit of the upload
// settings.
func formatMB(n int64) string {
	switch {
	case n < 10_000:
		return fmt.Sprintf("%d bytes", n)
	case n < 10*1e6:
		return fmt.Sprintf("%.2f MB", float64(n)/1e6)
	}
	return fmt.Sprintf("%.1f MB", float64(n)/1e6)
}
