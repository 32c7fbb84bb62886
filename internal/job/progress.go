package job

import "encoding/json"

// Progress is how far a running download is, written by the worker at
// most once every few seconds per job: numbers only, for the job's
// status message. Zero means unknown (yt-dlp says "NA").
type Progress struct {
	V       int    `json:"v"`
	Job     string `json:"job"`
	Seq     int    `json:"seq"`             // 1, 2, …: its file name's number
	Percent int    `json:"percent"`         // 0–100
	Bytes   int64  `json:"bytes,omitempty"` // downloaded so far
	Total   int64  `json:"total,omitempty"` // expected in all (or yt-dlp's estimate)
	Speed   int64  `json:"speed,omitempty"` // bytes a second
	ETA     int64  `json:"eta,omitempty"`   // seconds left
	Reply   string `json:"reply"`           // the job's reply token, copied
}

// Validate checks every field.
func (p *Progress) Validate() error {
	if p.V != Version {
		return perr("v", "version %d, want %d", p.V, Version)
	}
	if !ValidID(p.Job) {
		return perr("job", "not a job ID")
	}
	if p.Seq < 1 || p.Seq > MaxProgress {
		return perr("seq", "out of range")
	}
	if p.Percent < 0 || p.Percent > 100 {
		return perr("percent", "out of range")
	}
	for _, f := range []struct {
		name string
		v    int64
	}{{"bytes", p.Bytes}, {"total", p.Total}, {"speed", p.Speed}} {
		if f.v < 0 || f.v > 1<<40 {
			return perr(f.name, "out of range")
		}
	}
	if p.ETA < 0 || p.ETA > 7*24*3600 {
		return perr("eta", "out of range")
	}
	if !ValidToken(p.Reply) {
		return perr("reply", "not a reply token")
	}
	return nil
}

// FileName is the spool file name of the record.
func (p *Progress) FileName() string {
	return Name{Kind: KindProgress, ID: p.Job, Attempt: p.Seq}.String()
}

// Marshal validates p and returns its canonical encoding.
func (p *Progress) Marshal() ([]byte, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(p)
}

// ParseProgress decodes and validates a progress record in canonical
// form.
func ParseProgress(data []byte) (*Progress, error) {
	return parse[Progress](data, MaxRecordSize)
}
