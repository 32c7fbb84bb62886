package job

import (
	"errors"
	"strconv"
	"strings"

	"github.com/ytkeep/ytkeep/internal/videourl"
)

// Kind is what a file in the spool or the store is, by its name.
type Kind int

// The kinds of names. Every file ytkeep writes has one of these names;
// anything else found in a spool directory is hostile or debris.
const (
	KindJob      Kind = iota + 1 // incoming/<id>.job, written by the receiver
	KindClaimed                  // worker/claimed/<id>.job.<attempt>
	KindResult                   // results/<id>.<status>.result, by the worker
	KindAlert                    // results/<id>.alert (worker), receiver/alerts/<id>.alert
	KindStored                   // downloads/<video>-<format>.<media ext>
	KindSidecar                  // downloads/<video>-<format>.json
	KindProgress                 // results/<id>.<seq>.progress, by the worker
	KindRequest                  // incoming/<id>.request (receiver), results/<id>.request (worker)
)

// MaxProgress bounds the sequence number in a progress record's name.
const MaxProgress = 10000

// MaxAttempts bounds the attempt number in a claimed job's name.
const MaxAttempts = 1000

// Name is a parsed file name. Only the fields of its Kind are set.
type Name struct {
	Kind    Kind
	ID      string // job id: KindJob, KindClaimed, KindResult, KindAlert, KindRequest
	Attempt int    // KindClaimed: 1 for the first claim; KindProgress: its sequence number
	Status  Status // KindResult
	Video   string // KindStored, KindSidecar
	Format  Format // KindStored, KindSidecar
	Ext     string // KindStored: an allowed media extension
}

// ParseName classifies a file name; it refuses every name that String
// would not give back byte for byte.
func ParseName(name string) (Name, error) {
	bad := func(why string) (Name, error) { return Name{}, errors.New("not a ytkeep file name: " + why) }
	if len(name) > 64 || strings.ContainsAny(name, "/\x00") {
		return bad("too long or not a base name")
	}
	// Job-id names: <26 id chars>.<rest>.
	if len(name) > 27 && name[26] == '.' && ValidID(name[:26]) {
		n := Name{ID: name[:26]}
		switch rest := name[27:]; {
		case rest == "job":
			n.Kind = KindJob
		case rest == "alert":
			n.Kind = KindAlert
		case rest == "request":
			n.Kind = KindRequest
		case strings.HasPrefix(rest, "job."):
			a := rest[len("job."):]
			v, err := strconv.Atoi(a)
			if err != nil || v < 1 || v > MaxAttempts || strconv.Itoa(v) != a {
				return bad("bad attempt number")
			}
			n.Kind, n.Attempt = KindClaimed, v
		case strings.HasSuffix(rest, ".progress"):
			a := strings.TrimSuffix(rest, ".progress")
			v, err := strconv.Atoi(a)
			if err != nil || v < 1 || v > MaxProgress || strconv.Itoa(v) != a {
				return bad("bad progress number")
			}
			n.Kind, n.Attempt = KindProgress, v
		case strings.HasSuffix(rest, ".result"):
			n.Kind, n.Status = KindResult, Status(strings.TrimSuffix(rest, ".result"))
			if !n.Status.Valid() {
				return bad("unknown result status")
			}
		default:
			return bad("unknown suffix")
		}
		return n, nil
	}
	// Store names: <11 video chars>-<format>.<ext>.
	dot := strings.LastIndexByte(name, '.')
	if dot < 13 || name[11] != '-' || !videourl.ValidID(name[:11]) {
		return bad("neither a job nor a stored file")
	}
	n := Name{Video: name[:11], Format: Format(name[12:dot])}
	if !n.Format.Valid() {
		return bad("unknown format")
	}
	switch ext := name[dot+1:]; {
	case ext == "json":
		n.Kind = KindSidecar
	case AllowedExt(ext):
		n.Kind, n.Ext = KindStored, ext
	default:
		return bad("extension not allowed")
	}
	return n, nil
}

// String returns the file name n stands for.
func (n Name) String() string {
	switch n.Kind {
	case KindJob:
		return n.ID + ".job"
	case KindClaimed:
		return n.ID + ".job." + strconv.Itoa(n.Attempt)
	case KindResult:
		return n.ID + "." + string(n.Status) + ".result"
	case KindAlert:
		return n.ID + ".alert"
	case KindRequest:
		return n.ID + ".request"
	case KindProgress:
		return n.ID + "." + strconv.Itoa(n.Attempt) + ".progress"
	case KindStored:
		return StoredName(n.Video, n.Format, n.Ext)
	case KindSidecar:
		return SidecarName(n.Video, n.Format)
	}
	return ""
}

// JobName is the name of job id's file in incoming/.
func JobName(id string) string { return Name{Kind: KindJob, ID: id}.String() }

// ClaimedName is job id's name in the worker's claimed/ during attempt n.
func ClaimedName(id string, attempt int) string {
	return Name{Kind: KindClaimed, ID: id, Attempt: attempt}.String()
}

// AlertName is the name of an alert file with the given id.
func AlertName(id string) string { return Name{Kind: KindAlert, ID: id}.String() }

// StoredName is the file name the worker gives a stored video.
func StoredName(video string, f Format, ext string) string {
	return video + "-" + string(f) + "." + ext
}

// SidecarName is the name of the metadata file next to a stored video.
func SidecarName(video string, f Format) string { return video + "-" + string(f) + ".json" }

// ValidStoredName reports whether name has the form StoredName produces
// with an allowed extension.
func ValidStoredName(name string) bool {
	n, err := ParseName(name)
	return err == nil && n.Kind == KindStored
}
