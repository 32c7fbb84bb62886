package job

import "encoding/json"

// Stored is the metadata sidecar the worker writes next to each stored
// file, as SidecarName(video, format). Only the worker writes it; it is
// read back (to answer a request from the store) as untrusted all the
// same: the downloads directory is shared with the people who watch.
type Stored struct {
	V        int    `json:"v"`
	Video    string `json:"video"`
	Format   Format `json:"format"`
	File     string `json:"file"`
	Title    string `json:"title"`
	Duration int64  `json:"duration"`
	Size     int64  `json:"size"`
	StoredAt int64  `json:"stored_at"`
	Job      string `json:"job"`
}

// Validate checks every field.
func (s *Stored) Validate() error {
	n, err := ParseName(s.File)
	switch {
	case s.V != Version:
		return perr("v", "unsupported version %d", s.V)
	case err != nil || n.Kind != KindStored || n.Video != s.Video || n.Format != s.Format:
		return perr("file", "not the stored name of %s in %s", s.Video, s.Format)
	case s.Title != SanitizeTitle(s.Title):
		return perr("title", "not sanitised")
	case s.Duration < 0 || s.Size < 0 || s.StoredAt < 0:
		return perr("", "negative number")
	case !ValidID(s.Job):
		return perr("job", "invalid job id")
	}
	return nil
}

// Marshal returns the canonical encoding.
func (s *Stored) Marshal() ([]byte, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(s)
}

// ParseStored decodes a sidecar: strict, canonical, every field checked.
func ParseStored(data []byte) (*Stored, error) { return parse[Stored](data, MaxRecordSize) }
