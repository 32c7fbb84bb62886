// Package job defines the two records that cross the spool between the
// receiver and the worker, and is the trust boundary for both.
//
// Each record has exactly one accepted byte form: the output of Marshal.
// Parse decodes strictly (unknown fields refused, version checked, every
// field re-validated) and then re-encodes; input that differs from its own
// canonical encoding in any byte (whitespace, key order, escapes, duplicate
// keys, trailing data) is refused. A record carries only data: IDs, enums,
// numbers and a sanitised title, never a path, a URL, a flag or a command.
package job

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/ytkeep/ytkeep/internal/slackreq"
	"github.com/ytkeep/ytkeep/internal/videourl"
)

// Version is the only record version this build reads and writes.
const Version = 1

// MaxRecordSize is the largest job or result file accepted, in bytes.
const MaxRecordSize = 4096

// MaxTitleRunes caps the title carried in a result.
const MaxTitleRunes = 200

// ParseError reports why a record was refused. Every ParseError is a
// security event: the other side wrote something this build never writes.
type ParseError struct {
	Field string
	Msg   string
}

func (e *ParseError) Error() string {
	if e.Field == "" {
		return "malformed record: " + e.Msg
	}
	return fmt.Sprintf("malformed record: field %s: %s", e.Field, e.Msg)
}

func perr(field, format string, args ...any) error {
	return &ParseError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Format is the quality the user asked for.
type Format string

// The accepted formats.
const (
	FormatBest  Format = "best"
	FormatAudio Format = "audio"
	Format1080  Format = "1080p"
	Format720   Format = "720p"
	Format480   Format = "480p"
	Format360   Format = "360p"
)

// Formats lists every accepted format, default first.
var Formats = []Format{FormatBest, FormatAudio, Format1080, Format720, Format480, Format360}

// ParseFormat maps user text (case-insensitive) to a Format.
func ParseFormat(s string) (Format, bool) {
	s = strings.ToLower(s)
	for _, f := range Formats {
		if string(f) == s {
			return f, true
		}
	}
	return "", false
}

// Valid reports whether f is one of Formats.
func (f Format) Valid() bool {
	for _, g := range Formats {
		if f == g {
			return true
		}
	}
	return false
}

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewID returns a fresh random job ID: 26 characters of [a-z2-7].
func NewID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand panics internally if it cannot)
	return strings.ToLower(idEncoding.EncodeToString(b[:]))
}

// IDFor returns the job ID of a request that may be delivered more than
// once under the same key (a Socket Mode envelope ID): the same 26
// characters of [a-z2-7] for the same key, so that a redelivery names the
// job already queued (the receiver's spool refuses a second file of that
// name, the worker a second run of that ID).
func IDFor(key string) string {
	sum := sha256.Sum256([]byte("ytkeep job id\x00" + key))
	return strings.ToLower(idEncoding.EncodeToString(sum[:16]))
}

// ValidID reports whether id has the form NewID produces.
func ValidID(id string) bool {
	if len(id) != 26 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if (c < 'a' || c > 'z') && (c < '2' || c > '7') {
			return false
		}
	}
	return true
}

// Job is a request to keep one video, written by the receiver.
//
// Reply is opaque to the worker: the receiver's sealed token holding the
// response_url (a bearer credential the worker must not read), which the
// worker copies into every result for the job.
type Job struct {
	V       int    `json:"v"`
	ID      string `json:"id"`
	Video   string `json:"video"`
	Format  Format `json:"format"`
	Team    string `json:"team"`
	User    string `json:"user"`
	Channel string `json:"channel"`
	Created int64  `json:"created"` // Unix seconds
	Reply   string `json:"reply"`
}

// ValidToken reports whether s has the shape of a reply token: 40 to 1024
// characters of unpadded base64url. Only the receiver can check more.
func ValidToken(s string) bool {
	if len(s) < 40 || len(s) > 1024 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '-' && c != '_' {
			return false
		}
	}
	return true
}

// Validate checks every field.
func (j *Job) Validate() error {
	switch {
	case j.V != Version:
		return perr("v", "version %d, want %d", j.V, Version)
	case !ValidID(j.ID):
		return perr("id", "not a job ID")
	case !videourl.ValidID(j.Video):
		return perr("video", "not a video ID")
	case !j.Format.Valid():
		return perr("format", "unknown format")
	case !slackreq.ValidSlackID(j.Team):
		return perr("team", "not a Slack ID")
	case !slackreq.ValidSlackID(j.User):
		return perr("user", "not a Slack ID")
	case !slackreq.ValidSlackID(j.Channel):
		return perr("channel", "not a Slack ID")
	case j.Created < 1_500_000_000 || j.Created > 1<<40:
		return perr("created", "implausible time")
	case !ValidToken(j.Reply):
		return perr("reply", "not a reply token")
	}
	return nil
}

// Result returns a result for the job with its reply token.
func (j *Job) Result(s Status, c Class) *Result {
	return &Result{V: Version, Job: j.ID, Status: s, Class: c, Reply: j.Reply}
}

// FileName is the spool file name for the job.
func (j *Job) FileName() string { return JobName(j.ID) }

// Marshal validates j and returns its canonical encoding.
func (j *Job) Marshal() ([]byte, error) {
	if err := j.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(j)
}

// ParseJob decodes and validates a job record in canonical form.
func ParseJob(data []byte) (*Job, error) {
	return parse[Job](data, MaxRecordSize)
}

// Status is the state a result reports.
type Status string

// The result statuses. Queued and Started are informational; Done,
// Failed and Cancelled are final.
const (
	StatusQueued    Status = "queued" // waiting for a free download slot
	StatusStarted   Status = "started"
	StatusDone      Status = "done"
	StatusFailed    Status = "failed"
	StatusCancelled Status = "cancelled" // by its requester or an admin
)

// Final reports whether no further result follows for the job.
func (s Status) Final() bool { return s == StatusDone || s == StatusFailed || s == StatusCancelled }

// Valid reports whether s is one of the statuses.
func (s Status) Valid() bool { return s == StatusQueued || s == StatusStarted || s.Final() }

// MaxPosition bounds a queued job's place in the queue.
const MaxPosition = 100000

// Class says, in a word, why a job failed.
type Class string

// The failure classes.
const (
	ClassNone        Class = ""
	ClassUnavailable Class = "unavailable" // the video could not be fetched
	ClassTooLarge    Class = "too_large"   // over the size cap
	ClassTimeout     Class = "timeout"     // over the wall-clock limit
	ClassBadOutput   Class = "bad_output"  // the downloader produced nothing acceptable
	ClassSandbox     Class = "sandbox"     // the downloader broke a sandbox rule
	ClassGaveUp      Class = "gave_up"     // cut short too many times
	ClassInternal    Class = "internal"    // our own fault
	ClassQuota       Class = "quota"       // the requester's daily download quota is used up
	ClassDiskFull    Class = "disk_full"   // the server's disk filled during the download
)

var classes = map[Class]string{
	ClassUnavailable: "the video could not be downloaded (it may be private, removed or region-locked)",
	ClassTooLarge:    "the video is larger than the configured size limit",
	ClassTimeout:     "the download took longer than the configured time limit",
	ClassBadOutput:   "the downloader produced no file of an allowed type",
	ClassSandbox:     "the downloader broke a sandbox rule and was stopped (reported to the admins)",
	ClassGaveUp:      "the download was interrupted too many times and was abandoned",
	ClassInternal:    "an internal error occurred (see the worker's log)",
	ClassDiskFull:    "the server's disk is full (the admins have been told); nothing was kept, try again later",
	ClassQuota:       "you have used up your daily download quota on this server (it starts afresh at midnight UTC; videos already on the server are not counted)",
}

// Describe returns the failure class in plain words.
func (c Class) Describe() string {
	if s, ok := classes[c]; ok {
		return s
	}
	return "unknown failure"
}

// Allowed media extensions of stored files.
var allowedExt = map[string]bool{
	"mp4": true, "webm": true, "mkv": true, "m4a": true, "mp3": true, "opus": true, "ogg": true,
}

// AllowedExt reports whether ext (without dot) is an allowed media type.
func AllowedExt(ext string) bool { return allowedExt[ext] }

// Result reports progress or the outcome of a job, written by the worker.
type Result struct {
	V        int    `json:"v"`
	Job      string `json:"job"`
	Status   Status `json:"status"`
	Class    Class  `json:"class,omitempty"`
	Title    string `json:"title,omitempty"`
	Duration int64  `json:"duration,omitempty"` // seconds
	Size     int64  `json:"size,omitempty"`     // bytes
	File     string `json:"file,omitempty"`     // stored name, see StoredName
	Cached   bool   `json:"cached,omitempty"`   // answered from an earlier download
	Position int    `json:"position,omitempty"` // queued: 1 is next
	Reply    string `json:"reply"`              // the job's reply token, copied
}

// Validate checks every field and their combinations.
func (r *Result) Validate() error {
	if r.V != Version {
		return perr("v", "version %d, want %d", r.V, Version)
	}
	if !ValidID(r.Job) {
		return perr("job", "not a job ID")
	}
	if !ValidToken(r.Reply) {
		return perr("reply", "not a reply token")
	}
	if r.Title != SanitizeTitle(r.Title) {
		return perr("title", "not sanitised")
	}
	if r.Duration < 0 || r.Duration > 7*24*3600 {
		return perr("duration", "out of range")
	}
	if r.Size < 0 || r.Size > 1<<40 {
		return perr("size", "out of range")
	}
	if (r.Status == StatusQueued) != (r.Position != 0) {
		return perr("position", "a queued result, and only one, has a position")
	}
	switch r.Status {
	case StatusQueued, StatusStarted, StatusCancelled:
		if r.Class != ClassNone || r.File != "" || r.Size != 0 || r.Cached || r.Title != "" || r.Duration != 0 {
			return perr("status", "%s carries no outcome", r.Status)
		}
		if r.Position < 0 || r.Position > MaxPosition {
			return perr("position", "out of range")
		}
	case StatusDone:
		if r.Class != ClassNone {
			return perr("class", "done carries no failure class")
		}
		if !ValidStoredName(r.File) {
			return perr("file", "not a stored name")
		}
	case StatusFailed:
		if _, ok := classes[r.Class]; !ok {
			return perr("class", "unknown failure class")
		}
		if r.File != "" || r.Size != 0 || r.Cached {
			return perr("status", "failed carries no file")
		}
	default:
		return perr("status", "unknown status")
	}
	return nil
}

// FileName is the spool file name of the result: one per job and status.
func (r *Result) FileName() string {
	return Name{Kind: KindResult, ID: r.Job, Status: r.Status}.String()
}

// Marshal validates r and returns its canonical encoding.
func (r *Result) Marshal() ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(r)
}

// ParseResult decodes and validates a result record in canonical form.
func ParseResult(data []byte) (*Result, error) {
	return parse[Result](data, MaxRecordSize)
}

// SanitizeTitle makes untrusted text (a video title) safe to store and show:
// valid UTF-8, no control, format or private-use characters, runs of white
// space folded to one space, at most MaxTitleRunes runes. It is idempotent.
func SanitizeTitle(s string) string {
	var b strings.Builder
	n := 0
	space := false
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		if n >= MaxTitleRunes {
			break
		}
		if unicode.IsSpace(r) {
			space = b.Len() > 0
			continue
		}
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || unicode.Is(unicode.Co, r) {
			continue
		}
		if space {
			if n+1 >= MaxTitleRunes {
				break
			}
			b.WriteByte(' ')
			n++
			space = false
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}

// record is what the record types share: a check of every field.
type record interface {
	Validate() error
}

// parse decodes a record of type T: at most max bytes, one JSON object of
// known fields (decodeStrict), every field checked, and exactly the bytes
// its encoding gives back (canonical).
func parse[T any, P interface {
	*T
	record
}](data []byte, max int) (*T, error) {
	if len(data) > max {
		return nil, perr("", "%d bytes, over the %d-byte limit", len(data), max)
	}
	v := P(new(T))
	if err := decodeStrict(data, v); err != nil {
		return nil, err
	}
	if err := v.Validate(); err != nil {
		return nil, err
	}
	if err := canonical(data, v); err != nil {
		return nil, err
	}
	return (*T)(v), nil
}

// decodeStrict decodes one JSON object of known fields, UTF-8, nothing after.
func decodeStrict(data []byte, v any) error {
	if !utf8.Valid(data) {
		return perr("", "not UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return perr("", "%v", err)
	}
	if dec.More() {
		return perr("", "trailing data")
	}
	return nil
}

// canonical refuses data unless it is byte-for-byte the encoding of v.
func canonical(data []byte, v any) error {
	want, err := json.Marshal(v)
	if err != nil {
		return perr("", "%v", err)
	}
	if !bytes.Equal(data, want) {
		return perr("", "not in canonical form")
	}
	return nil
}
