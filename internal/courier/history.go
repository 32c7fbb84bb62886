package courier

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ytkeep/ytkeep/internal/job"
	"github.com/ytkeep/ytkeep/internal/reply"
	"github.com/ytkeep/ytkeep/internal/slackreq"
	"github.com/ytkeep/ytkeep/internal/spool"
	"github.com/ytkeep/ytkeep/internal/videourl"
)

// Each user's last jobs, for "/ytkeep list" and "/ytkeep send <job>":
// courier/history/<user ID>.json, one small JSON file per user, written
// whole (temp file, fsync, rename, fsync of the directory) at each change.
// The user is the one the receiver sealed in the job's token, never a
// record's word. What a result may change is bounded: a job's state only
// moves forward (queued, downloading, then one final state), so a record
// replayed or arriving late cannot make a saved job look queued again,
// nor change its file.

// historyLen is how many jobs a user's history keeps, listed newest first
// by the command's time (sealed in the token). A new job makes room by
// forgetting the ended one least recently updated, never a job under
// way (recordHistory).
const historyLen = 10

// maxHistorySize bounds a history file: 10 entries of at most about
// 1.5 KiB (a 200-rune title, escaped) each.
const maxHistorySize = 32 << 10

// jobState is a job's state in its requester's history.
type jobState string

// The states, in the order a job goes through them.
const (
	stateQueued      jobState = "queued"
	stateDownloading jobState = "downloading"
	stateSaved       jobState = "saved"
	stateFailed      jobState = "failed"
	stateCancelled   jobState = "cancelled"
)

// rank orders the states: a job never goes back to a lower rank, and
// the final ones (3) are all of the same, last rank.
func (s jobState) rank() int {
	switch s {
	case stateQueued:
		return 1
	case stateDownloading:
		return 2
	case stateSaved, stateFailed, stateCancelled:
		return 3
	}
	return 0
}

// stateOf is the state a result reports.
func stateOf(st job.Status) jobState {
	switch st {
	case job.StatusQueued:
		return stateQueued
	case job.StatusStarted:
		return stateDownloading
	case job.StatusDone:
		return stateSaved
	case job.StatusFailed:
		return stateFailed
	case job.StatusCancelled:
		return stateCancelled
	}
	return ""
}

// historyEntry is one job in a user's history.
type historyEntry struct {
	Job     string     `json:"job"`
	Video   string     `json:"video"`
	Format  job.Format `json:"format"`
	State   jobState   `json:"state"`
	Class   job.Class  `json:"class,omitempty"` // failed: why
	Title   string     `json:"title,omitempty"`
	File    string     `json:"file,omitempty"` // saved: the stored file's name
	Size    int64      `json:"size,omitempty"` // saved: its size in bytes
	Created int64      `json:"created"`        // the command's time (the token's), Unix seconds
	Updated int64      `json:"updated"`        // the last change, Unix seconds
}

// history is a user's history file.
type history struct {
	V    int            `json:"v"`
	Jobs []historyEntry `json:"jobs"` // newest first
}

// validate checks a history as read back: the courier wrote it, but a
// file that does not hold what it writes is not trusted either.
func (h *history) validate() error {
	if h.V != job.Version {
		return fmt.Errorf("version %d", h.V)
	}
	if len(h.Jobs) > historyLen {
		return fmt.Errorf("%d jobs", len(h.Jobs))
	}
	seen := map[string]bool{}
	for i, e := range h.Jobs {
		if err := e.validate(); err != nil {
			return fmt.Errorf("job %d: %w", i, err)
		}
		if seen[e.Job] {
			return fmt.Errorf("job %s twice", e.Job)
		}
		seen[e.Job] = true
	}
	return nil
}

func (e *historyEntry) validate() error {
	saved := e.State == stateSaved
	switch {
	case !job.ValidID(e.Job):
		return errors.New("not a job ID")
	case !videourl.ValidID(e.Video):
		return errors.New("not a video ID")
	case !e.Format.Valid():
		return errors.New("unknown format")
	case e.State.rank() == 0:
		return errors.New("unknown state")
	case (e.State == stateFailed) != (e.Class != job.ClassNone):
		return errors.New("a failure without a class, or a class without a failure")
	case e.Class != job.ClassNone && e.Class.Describe() == job.ClassNone.Describe():
		return errors.New("unknown failure class")
	case e.Title != job.SanitizeTitle(e.Title):
		return errors.New("title not sanitised")
	case saved && !storedFileOf(e.File, e.Video, e.Format):
		return errors.New("not the job's stored file")
	case !saved && (e.File != "" || e.Size != 0):
		return errors.New("a file without a saved job")
	case e.Size < 0 || e.Size > 1<<40:
		return errors.New("size out of range")
	case e.Created < 1_500_000_000 || e.Created > 1<<40 || e.Updated < 0 || e.Updated > 1<<40:
		return errors.New("implausible time")
	}
	return nil
}

// storedFileOf reports whether name is a stored file's name for video in
// format: what the worker names it (job.StoredName), any allowed
// extension.
func storedFileOf(name, video string, format job.Format) bool {
	return job.ValidStoredName(name) && strings.HasPrefix(name, video+"-"+string(format)+".")
}

// HistoryEntry is one job of a user's history (courier/history/<user>.json),
// for readers outside the courier (ytkeep status).
type HistoryEntry = historyEntry

// Its states, as HistoryEntry.State holds them.
const (
	HistoryQueued      = stateQueued
	HistoryDownloading = stateDownloading
	HistorySaved       = stateSaved
	HistoryFailed      = stateFailed
	HistoryCancelled   = stateCancelled
)

// MaxHistorySize bounds a history file.
const MaxHistorySize = maxHistorySize

// ParseHistory decodes a user's history file as the courier reads it
// (parseHistory), after checking its size: the jobs, newest first.
func ParseHistory(data []byte) ([]HistoryEntry, error) {
	if len(data) > maxHistorySize {
		return nil, fmt.Errorf("history of %d bytes, over %d", len(data), maxHistorySize)
	}
	h, err := parseHistory(data)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	return h.Jobs, nil
}

// parseHistory decodes a history file strictly: known fields only, one
// object, every entry checked.
func parseHistory(data []byte) (*history, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var h history
	if err := dec.Decode(&h); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data")
	}
	if err := h.validate(); err != nil {
		return nil, err
	}
	return &h, nil
}

// historyName is user's history file name; "" for what is not a Slack
// user ID (the token's user is the receiver's, checked again: it names
// a file).
func historyName(user string) string {
	if !slackreq.ValidSlackID(user) {
		return ""
	}
	return user + ".json"
}

// userLocks serialises the changes of one user's files (history, quota).
type userLocks [64]sync.Mutex

func (l *userLocks) of(user string) *sync.Mutex {
	h := fnv.New32a()
	h.Write([]byte(user))
	return &l[h.Sum32()%uint32(len(l))]
}

// loadHistory reads user's history; an absent one is empty. The caller
// holds the user's lock.
func (s *Service) loadHistory(user string) (*history, error) {
	name := historyName(user)
	if name == "" {
		return nil, fmt.Errorf("%q is not a Slack user ID", user)
	}
	data, err := spool.ReadFile(s.history, name, -1, maxHistorySize)
	if errors.Is(err, unix.ENOENT) {
		return &history{V: job.Version}, nil
	}
	if err != nil {
		return nil, err
	}
	h, err := parseHistory(data)
	if err != nil {
		return nil, fmt.Errorf("history %s: %w", name, err)
	}
	return h, nil
}

func (s *Service) saveHistory(user string, h *history) error {
	data, err := json.Marshal(h)
	if err != nil {
		return err
	}
	return spool.WriteFile(s.tmp, s.history, historyName(user), data, 0o600, -1, true)
}

// userHistory returns user's history (none: empty), under its lock.
func (s *Service) userHistory(user string) (*history, error) {
	lock := s.userLocks.of(user)
	lock.Lock()
	defer lock.Unlock()
	return s.loadHistory(user)
}

// recordHistory brings result r, of the job info was sealed for, into its
// requester's history. It reports whether the job's state moved forward
// and was kept (a queued record after the download started does not: it
// came late; nor a new job when every entry is a job still under way).
// A token without a user (sealed before they carried one) has no
// history; a history that cannot be read is logged and started afresh
// (it is a convenience, never a reason to hold up a result).
func (s *Service) recordHistory(r *job.Result, info *reply.Info) (advanced bool) {
	if info.User == "" {
		return true
	}
	lock := s.userLocks.of(info.User)
	lock.Lock()
	defer lock.Unlock()
	h, err := s.loadHistory(info.User)
	if err != nil {
		s.log.Error("couldn't read a history: starting it afresh", "user", info.User, "err", err)
		h = &history{V: job.Version}
	}
	i := slices.IndexFunc(h.Jobs, func(e historyEntry) bool { return e.Job == r.Job })
	e := historyEntry{Job: r.Job, Video: info.Video, Format: info.Format, Created: info.Created}
	if i >= 0 {
		e = h.Jobs[i]
	}
	state := stateOf(r.Status)
	if state.rank() <= e.State.rank() {
		return false
	}
	e.State, e.Updated = state, s.opt.Now().Unix()
	if state == stateSaved {
		e.Title, e.File, e.Size = r.Title, r.File, r.Size
	}
	if state == stateFailed {
		e.Class = r.Class
	}
	if err := e.validate(); err != nil {
		// Not from an honest worker: the result passed its own checks,
		// the token opened, the file matched the job.
		s.log.Error("a result does not fit the history", "job", r.Job, "err", err)
		return true
	}
	if i >= 0 {
		h.Jobs[i] = e
	} else if len(h.Jobs) < historyLen {
		h.Jobs = append(h.Jobs, e)
	} else {
		// Full: forget the entry least recently changed among those no
		// record will change again (ended, or too old for any token);
		// never a job still under way, which a late record (its place in
		// the queue) would add again as new. With none, e is not kept.
		v := s.evictable(h)
		if v < 0 {
			return false
		}
		h.Jobs[v] = e
	}
	// Newest command first.
	slices.SortStableFunc(h.Jobs, func(a, b historyEntry) int {
		return cmp.Or(cmp.Compare(b.Created, a.Created), strings.Compare(a.Job, b.Job))
	})
	if err := s.saveHistory(info.User, h); err != nil {
		s.log.Error("couldn't save a history", "user", info.User, "job", r.Job, "err", err)
	}
	return true
}

// evictable is the index of the entry of h to forget for a new one: of
// those that no record changes any more (a final state, or a command too
// old for its token to be accepted: tooOld), the one least recently
// updated; -1 when every entry is a job still under way.
func (s *Service) evictable(h *history) int {
	v := -1
	for i, e := range h.Jobs {
		if e.State.rank() < stateSaved.rank() && !s.tooOld(&reply.Info{Created: e.Created}) {
			continue
		}
		if v < 0 || cmp.Or(cmp.Compare(e.Updated, h.Jobs[v].Updated), cmp.Compare(e.Created, h.Jobs[v].Created), strings.Compare(e.Job, h.Jobs[v].Job)) < 0 {
			v = i
		}
	}
	return v
}

// stateWords says a state to the user, with its emoji.
var stateWords = map[jobState]string{
	stateQueued:      ":clock3: queued",
	stateDownloading: ":hourglass_flowing_sand: downloading",
	stateSaved:       ":white_check_mark: saved",
	stateFailed:      ":x: failed",
	stateCancelled:   ":no_entry_sign: cancelled",
}

// listText is the answer to "/ytkeep list": the user's jobs, newest
// first, each with its ID (to cancel or send it); titles made inert.
func listText(h *history, command string, uploads bool) string {
	if len(h.Jobs) == 0 {
		return fmt.Sprintf("You have no jobs yet. To keep a video: `%s <YouTube link> [audio|1080p|720p|480p|360p]`.", command)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Your last %d jobs, newest first:", len(h.Jobs))
	if len(h.Jobs) == 1 {
		b.Reset()
		b.WriteString("Your last job:")
	}
	for _, e := range h.Jobs {
		title := inert(e.Title)
		if title == "" {
			title = e.Video
		}
		fmt.Fprintf(&b, "\n• `%s` %s *%s* (`%s`, %s)", e.Job, stateWords[e.State], title, e.Video, e.Format)
		switch {
		case e.State == stateSaved:
			fmt.Fprintf(&b, ": `%s`, %s", e.File, formatSize(e.Size))
		case e.State == stateFailed:
			fmt.Fprintf(&b, ": %s", e.Class.Describe())
		}
		fmt.Fprintf(&b, " · %s", time.Unix(e.Updated, 0).UTC().Format("2006-01-02 15:04 UTC"))
	}
	fmt.Fprintf(&b, "\nTo stop a queued or running job: `%s cancel <job>`.", command)
	if uploads {
		fmt.Fprintf(&b, " To get a saved one in our direct messages: `%s send <job>`.", command)
	}
	return b.String()
}
