package status

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/ytkeep/ytkeep/internal/job"
	"github.com/ytkeep/ytkeep/internal/videourl"
)

// The courier keeps each user's last jobs in courier/history/<user>.json
// (internal/courier, history.go). The format is read here as the courier
// reads it, strictly: known fields only, one object, at most
// historyLen entries, every field checked. A field the courier adds
// later makes its files refused here, visibly (a problem line), never
// misread; TestHistoryMatchesCourier holds the two to the same sample.

const (
	historyLen     = 10       // courier's historyLen
	maxHistorySize = 32 << 10 // courier's maxHistorySize
)

// The states a history entry may have.
const (
	stateQueued      = "queued"
	stateDownloading = "downloading"
	stateSaved       = "saved"
	stateFailed      = "failed"
	stateCancelled   = "cancelled"
)

var historyStates = map[string]bool{stateQueued: true, stateDownloading: true, stateSaved: true, stateFailed: true, stateCancelled: true}

// history is a user's history file.
type history struct {
	V    int            `json:"v"`
	Jobs []historyEntry `json:"jobs"`
}

// historyEntry is one job in a user's history.
type historyEntry struct {
	Job     string     `json:"job"`
	Video   string     `json:"video"`
	Format  job.Format `json:"format"`
	State   string     `json:"state"`
	Class   job.Class  `json:"class,omitempty"`
	Title   string     `json:"title,omitempty"`
	File    string     `json:"file,omitempty"`
	Size    int64      `json:"size,omitempty"`
	Created int64      `json:"created"`
	Updated int64      `json:"updated"`
}

// parseHistory decodes a history file: at most maxHistorySize bytes of
// UTF-8, one object of known fields, every entry checked.
func parseHistory(data []byte) (*history, error) {
	if len(data) > maxHistorySize {
		return nil, fmt.Errorf("history of %d bytes, over %d", len(data), maxHistorySize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var h history
	if err := dec.Decode(&h); err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	if dec.More() {
		return nil, errors.New("history: trailing data")
	}
	if h.V != job.Version {
		return nil, fmt.Errorf("history: version %d", h.V)
	}
	if len(h.Jobs) > historyLen {
		return nil, fmt.Errorf("history: %d jobs, over %d", len(h.Jobs), historyLen)
	}
	seen := map[string]bool{}
	for i, e := range h.Jobs {
		if err := e.validate(); err != nil {
			return nil, fmt.Errorf("history: job %d: %w", i, err)
		}
		if seen[e.Job] {
			return nil, fmt.Errorf("history: job %s twice", e.Job)
		}
		seen[e.Job] = true
	}
	return &h, nil
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
	case !historyStates[e.State]:
		return errors.New("unknown state")
	case (e.State == stateFailed) != (e.Class != job.ClassNone):
		return errors.New("a failure without a class, or a class without a failure")
	case e.Class != job.ClassNone && e.Class.Describe() == job.ClassNone.Describe():
		return errors.New("unknown failure class")
	case e.Title != job.SanitizeTitle(e.Title):
		return errors.New("title not sanitised")
	case saved && !job.ValidStoredName(e.File):
		return errors.New("not a stored file")
	case !saved && (e.File != "" || e.Size != 0):
		return errors.New("a file without a saved job")
	case e.Size < 0 || e.Size > 1<<40:
		return errors.New("size out of range")
	case e.Created < 1_500_000_000 || e.Created > 1<<40 || e.Updated < 0 || e.Updated > 1<<40:
		return errors.New("implausible time")
	}
	return nil
}
