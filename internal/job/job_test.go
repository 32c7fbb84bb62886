package job

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ytkeep/ytkeep/internal/egress"
)

const token = "c2VhbGVkLXJlcGx5LXRva2VuLWZvci10ZXN0cy1vbmx5LXh4eHh4eHh4"

func validJob() *Job {
	return &Job{V: 1, ID: NewID(), Video: "dQw4w9WgXcQ", Format: Format720,
		Team: "T1DC2JH3J", User: "U2CERLKJA", Channel: "C8PSS9T3V", Created: 1764140000, Reply: token}
}

func TestJobRoundTrip(t *testing.T) {
	j := validJob()
	b, err := j.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseJob(b)
	if err != nil {
		t.Fatalf("ParseJob(Marshal) = %v", err)
	}
	if *got != *j {
		t.Fatalf("round trip changed the job: %+v vs %+v", got, j)
	}
	if len(b) > MaxRecordSize {
		t.Fatalf("a job encodes to %d bytes", len(b))
	}
}

func TestParseJobRefuses(t *testing.T) {
	good, _ := validJob().Marshal()
	s := string(good)
	tests := []struct{ name, in string }{
		{"empty", ""},
		{"null", "null"},
		{"array", "[]"},
		{"unknown field", strings.Replace(s, `{"v":1,`, `{"v":1,"path":"/etc/shadow",`, 1)},
		{"wrong version", strings.Replace(s, `"v":1`, `"v":2`, 1)},
		{"trailing garbage", s + "x"},
		{"trailing newline", s + "\n"},
		{"second object", s + s},
		{"leading space", " " + s},
		{"reordered keys", strings.Replace(s, `{"v":1,`, `{`, 1)[:len(s)-len(`{"v":1,`)] + `,"v":1}`},
		{"duplicate key", strings.Replace(s, `"format":"720p"`, `"format":"best","format":"720p"`, 1)},
		{"case-folded key", strings.Replace(s, `"video"`, `"VIDEO"`, 1)},
		{"escaped value", strings.Replace(s, `"720p"`, `"\u0037"+"20p"`, 1)},
		{"unicode escape", strings.Replace(s, `"720p"`, `"\u00372\u0030p"`, 1)},
		{"bad video", strings.Replace(s, `"dQw4w9WgXcQ"`, `"--exec=id;x"`, 1)},
		{"url as video", strings.Replace(s, `"dQw4w9WgXcQ"`, `"https://e/x"`, 1)},
		{"bad format", strings.Replace(s, `"720p"`, `"bestvideo+--exec"`, 1)},
		{"uppercase format", strings.Replace(s, `"720p"`, `"720P"`, 1)},
		{"bad team", strings.Replace(s, `"T1DC2JH3J"`, `"t1dc2jh3j"`, 1)},
		{"float created", strings.Replace(s, `"created":1764140000`, `"created":1764140000.0`, 1)},
		{"old created", strings.Replace(s, `"created":1764140000`, `"created":5`, 1)},
		{"string created", strings.Replace(s, `"created":1764140000`, `"created":"1764140000"`, 1)},
		{"oversize", s[:len(s)-1] + strings.Repeat(" ", MaxRecordSize) + "}"},
		{"invalid utf8", strings.Replace(s, `"U2CERLKJA"`, "\"U2\xffLKJA\"", 1)},
		{"no reply token", strings.Replace(s, `"reply":"`+token+`"`, `"reply":""`, 1)},
		{"reply token with padding", strings.Replace(s, token, token+"==", 1)},
		{"reply token as url", strings.Replace(s, token, "https://hooks.slack.com/commands/T1/1/xxxxxxxxxxxxxxxxxxxxxxxxx", 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if j, err := ParseJob([]byte(tt.in)); err == nil {
				t.Fatalf("ParseJob accepted %q as %+v", tt.in, j)
			} else if _, ok := err.(*ParseError); !ok {
				t.Fatalf("error %T (%v), want *ParseError", err, err)
			}
		})
	}
}

func TestResultValidate(t *testing.T) {
	id := NewID()
	tests := []struct {
		name string
		r    Result
		ok   bool
	}{
		{"started", Result{V: 1, Job: id, Reply: token, Status: StatusStarted}, true},
		{"done", Result{V: 1, Job: id, Reply: token, Status: StatusDone, Title: "A clip", Duration: 3, Size: 30000, File: "dQw4w9WgXcQ-720p.mp4"}, true},
		{"done cached", Result{V: 1, Job: id, Reply: token, Status: StatusDone, File: "dQw4w9WgXcQ-audio.m4a", Cached: true}, true},
		{"failed", Result{V: 1, Job: id, Reply: token, Status: StatusFailed, Class: ClassTimeout}, true},
		{"done no file", Result{V: 1, Job: id, Reply: token, Status: StatusDone}, false},
		{"done path file", Result{V: 1, Job: id, Reply: token, Status: StatusDone, File: "../../etc/passwd"}, false},
		{"done bad ext", Result{V: 1, Job: id, Reply: token, Status: StatusDone, File: "dQw4w9WgXcQ-720p.sh"}, false},
		{"done with class", Result{V: 1, Job: id, Reply: token, Status: StatusDone, Class: ClassTimeout, File: "dQw4w9WgXcQ-720p.mp4"}, false},
		{"failed unknown class", Result{V: 1, Job: id, Reply: token, Status: StatusFailed, Class: "pwned"}, false},
		{"failed no class", Result{V: 1, Job: id, Reply: token, Status: StatusFailed}, false},
		{"failed with file", Result{V: 1, Job: id, Reply: token, Status: StatusFailed, Class: ClassTimeout, File: "dQw4w9WgXcQ-720p.mp4"}, false},
		{"unknown status", Result{V: 1, Job: id, Reply: token, Status: "waiting"}, false},
		{"queued", Result{V: 1, Job: id, Reply: token, Status: StatusQueued, Position: 3}, true},
		{"queued no position", Result{V: 1, Job: id, Reply: token, Status: StatusQueued}, false},
		{"queued far", Result{V: 1, Job: id, Reply: token, Status: StatusQueued, Position: MaxPosition + 1}, false},
		{"queued negative", Result{V: 1, Job: id, Reply: token, Status: StatusQueued, Position: -1}, false},
		{"started with position", Result{V: 1, Job: id, Reply: token, Status: StatusStarted, Position: 1}, false},
		{"queued with file", Result{V: 1, Job: id, Reply: token, Status: StatusQueued, Position: 1, File: "dQw4w9WgXcQ-720p.mp4"}, false},
		{"cancelled", Result{V: 1, Job: id, Reply: token, Status: StatusCancelled}, true},
		{"cancelled with class", Result{V: 1, Job: id, Reply: token, Status: StatusCancelled, Class: ClassTimeout}, false},
		{"cancelled with title", Result{V: 1, Job: id, Reply: token, Status: StatusCancelled, Title: "A clip"}, false},
		{"raw title", Result{V: 1, Job: id, Reply: token, Status: StatusStarted, Title: "a\nb"}, false},
		{"negative size", Result{V: 1, Job: id, Reply: token, Status: StatusDone, Size: -1, File: "dQw4w9WgXcQ-720p.mp4"}, false},
		{"bad job", Result{V: 1, Job: "x", Reply: token, Status: StatusStarted}, false},
		{"no token", Result{V: 1, Job: id, Status: StatusStarted}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.r.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
			if !tt.ok {
				return
			}
			b, err := tt.r.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseResult(b)
			if err != nil {
				t.Fatalf("ParseResult(Marshal) = %v", err)
			}
			if *got != tt.r {
				t.Fatalf("round trip changed the result")
			}
		})
	}
}

func TestSanitizeTitle(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"  lead and trail  ", "lead and trail"},
		{"tab\tand\nnewline", "tab and newline"},
		{"bell\x07 esc\x1b[31m", "bell esc[31m"},
		{"rtl\u202eoverride", "rtloverride"},
		{"zero\u200bwidth", "zerowidth"},
		{"bad \xff utf8", "bad \uFFFD utf8"},
		{"<!channel> & co", "<!channel> & co"},
		{strings.Repeat("é", 300), strings.Repeat("é", MaxTitleRunes)},
	}
	for _, tt := range tests {
		got := SanitizeTitle(tt.in)
		if got != tt.want {
			t.Errorf("SanitizeTitle(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if SanitizeTitle(got) != got {
			t.Errorf("SanitizeTitle not idempotent on %q", tt.in)
		}
	}
}

func TestStoredName(t *testing.T) {
	for _, f := range Formats {
		n := StoredName("dQw4w9WgXcQ", f, "mp4")
		if !ValidStoredName(n) {
			t.Errorf("ValidStoredName(%q) = false", n)
		}
	}
	for _, bad := range []string{"", ".mp4", "dQw4w9WgXcQ.mp4", "dQw4w9WgXcQ-720p", "dQw4w9WgXcQ-720p.exe",
		"../4w9WgXcQ-720p.mp4", "dQw4w9WgXcQ-720p.mp4/x", "dQw4w9WgXcQ_720p.mp4", "dQw4w9WgXcQ-999p.mp4"} {
		if ValidStoredName(bad) {
			t.Errorf("ValidStoredName(%q) = true", bad)
		}
	}
}

// parsers are the record parsers, by the testdata/hostile directory that
// holds samples for each.
var parsers = map[string]func([]byte) error{
	"job":         func(b []byte) error { _, err := ParseJob(b); return err },
	"result":      func(b []byte) error { _, err := ParseResult(b); return err },
	"stored":      func(b []byte) error { _, err := ParseStored(b); return err },
	"launch":      func(b []byte) error { _, err := ParseLaunch(b); return err },
	"launchreply": func(b []byte) error { _, err := ParseLaunchReply(b); return err },
	"progress":    func(b []byte) error { _, err := ParseProgress(b); return err },
	"request":     func(b []byte) error { _, err := ParseRequest(b); return err },
}

// hostile returns the samples of testdata/hostile/<kind>, by file name.
func hostile(t testing.TB, kind string) map[string][]byte {
	files, err := filepath.Glob(filepath.Join("testdata", "hostile", kind, "*.json"))
	if err != nil || len(files) < 8 {
		t.Fatalf("hostile %s samples: %v, %d files", kind, err, len(files))
	}
	m := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m[filepath.Base(f)] = b
	}
	return m
}

// TestHostileRecords checks every file in testdata/hostile/<kind>: each is
// an honest record with one hostile change, and must be refused by its
// parser with a ParseError naming the field before the "~" in its file
// name (nothing before it: refused as a whole, before any field check).
// Naming the field keeps a sample from passing for another reason (a
// result sample refused only because it lacked a reply token, say).
func TestHostileRecords(t *testing.T) {
	for kind, parse := range parsers {
		for name, b := range hostile(t, kind) {
			t.Run(kind+"/"+name, func(t *testing.T) {
				field, _, ok := strings.Cut(name, "~")
				if !ok {
					t.Fatalf("sample name %q has no ~", name)
				}
				err := parse(b)
				var pe *ParseError
				if !errors.As(err, &pe) {
					t.Fatalf("accepted, or refused without a ParseError: %v", err)
				}
				if pe.Field != field {
					t.Fatalf("refused for field %q (%v), want %q", pe.Field, err, field)
				}
			})
		}
	}
}

// The honest records the hostile samples were made from are accepted.
func TestHostileSamplesBases(t *testing.T) {
	const id = "aaaaaaaaaaaaaaaaaaaaaaaaaa"
	j := &Job{V: 1, ID: id, Video: "dQw4w9WgXcQ", Format: FormatBest, Team: "T1DC2JH3J", User: "U2CERLKJA", Channel: "C8PSS9T3V", Created: 1764140000, Reply: token}
	r := &Result{V: 1, Job: id, Status: StatusDone, Title: "A title", Duration: 3, Size: 43187, File: "dQw4w9WgXcQ-best.mp4", Reply: token}
	s := &Stored{V: 1, Video: "dQw4w9WgXcQ", Format: FormatBest, File: "dQw4w9WgXcQ-best.mp4", Title: "A title", Duration: 3, Size: 43187, StoredAt: 1764140000, Job: id}
	l := &Launch{ID: 7, JobDir: id, Video: "dQw4w9WgXcQ", Format: FormatBest}
	lr := &LaunchReply{ID: 7, ElapsedMS: 1200}
	pr := &Progress{V: 1, Job: id, Seq: 3, Percent: 42, Bytes: 1000, Total: 2000, Speed: 500, ETA: 2, Reply: token}
	rq := validRequest()
	for kind, m := range map[string]interface{ Marshal() ([]byte, error) }{"job": j, "result": r, "stored": s, "launch": l, "launchreply": lr, "progress": pr, "request": rq} {
		b, err := m.Marshal()
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		if err := parsers[kind](b); err != nil {
			t.Fatalf("%s base refused: %v", kind, err)
		}
	}
}

func FuzzParseJob(f *testing.F) {
	good, _ := validJob().Marshal()
	f.Add(good)
	for _, b := range hostile(f, "job") {
		f.Add(b)
	}
	f.Add([]byte(`{"v":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		j, err := ParseJob(b)
		if err != nil {
			return
		}
		again, err := j.Marshal()
		if err != nil || string(again) != string(b) {
			t.Fatalf("accepted non-canonical input %q", b)
		}
	})
}

func FuzzParseResult(f *testing.F) {
	r := Result{V: 1, Job: NewID(), Reply: token, Status: StatusDone, Title: "t", File: "dQw4w9WgXcQ-best.webm"}
	good, _ := r.Marshal()
	f.Add(good)
	for _, b := range hostile(f, "result") {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseResult(b)
		if err != nil {
			return
		}
		again, err := r.Marshal()
		if err != nil || string(again) != string(b) {
			t.Fatalf("accepted non-canonical input %q", b)
		}
		if r.Status == StatusDone && !ValidStoredName(r.File) {
			t.Fatalf("accepted done result without a stored name")
		}
	})
}

func FuzzParseStored(f *testing.F) {
	s := Stored{V: 1, Video: "dQw4w9WgXcQ", Format: FormatAudio, File: "dQw4w9WgXcQ-audio.m4a", Title: "t", Size: 1, StoredAt: 1, Job: NewID()}
	good, _ := s.Marshal()
	f.Add(good)
	for _, b := range hostile(f, "stored") {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseStored(b)
		if err != nil {
			return
		}
		again, err := s.Marshal()
		if err != nil || string(again) != string(b) {
			t.Fatalf("accepted non-canonical input %q", b)
		}
		if n, err := ParseName(s.File); err != nil || n.Kind != KindStored || n.Video != s.Video || n.Format != s.Format {
			t.Fatalf("accepted a sidecar naming another file: %q", s.File)
		}
	})
}

// FuzzParseLaunch: a request the launcher accepts re-encodes byte for byte
// and is exactly one of a kill, a download of a valid ID, or a raw run.
func FuzzParseLaunch(f *testing.F) {
	for _, l := range []*Launch{{ID: 1, Kill: true}, {ID: 2, JobDir: NewID(), Video: "dQw4w9WgXcQ", Format: Format360},
		{ID: 3, Raw: []byte(`{"spec":{"Path":"/bin/true"},"timeout_ms":1000}`)}} {
		b, err := l.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, b := range hostile(f, "launch") {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := ParseLaunch(b)
		if err != nil {
			return
		}
		again, err := l.Marshal()
		if err != nil || string(again) != string(b) {
			t.Fatalf("accepted non-canonical input %q", b)
		}
		kinds := 0
		for _, k := range []bool{l.Kill, l.Raw != nil, l.JobDir != ""} {
			if k {
				kinds++
			}
		}
		if kinds != 1 || (l.JobDir != "" && (!ValidID(l.JobDir) || !l.Format.Valid())) {
			t.Fatalf("accepted %+v", l)
		}
	})
}

// FuzzParseLaunchReply: what the worker accepts from the launcher server
// re-encodes byte for byte and stays within bounds.
func FuzzParseLaunchReply(f *testing.F) {
	for _, r := range []*LaunchReply{{ID: 1, Exit: -1, Signal: 31, ElapsedMS: 5}, {ID: 2, Error: "busy"},
		{Egress: &egress.Event{Job: NewID(), Video: "dQw4w9WgXcQ", Host: "i.ytimg.com", Port: 443, Refused: "not allowed"}}} {
		b, err := r.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, b := range hostile(f, "launchreply") {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseLaunchReply(b)
		if err != nil {
			return
		}
		again, err := r.Marshal()
		if err != nil || string(again) != string(b) {
			t.Fatalf("accepted non-canonical input %q", b)
		}
		if r.Egress == nil && r.ID == 0 {
			t.Fatalf("accepted %q", b)
		}
	})
}

func FuzzParseProgress(f *testing.F) {
	good, _ := (&Progress{V: 1, Job: "aaaaaaaaaaaaaaaaaaaaaaaaaa", Seq: 1, Percent: 7, Bytes: 10, Total: 100, Speed: 5, ETA: 18, Reply: token}).Marshal()
	f.Add(good)
	for _, b := range hostile(f, "progress") {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParseProgress(b)
		if err != nil {
			return
		}
		again, err := p.Marshal()
		if err != nil || string(again) != string(b) {
			t.Fatalf("accepted non-canonical input %q", b)
		}
		if p.FileName() == "" || p.Percent < 0 || p.Percent > 100 {
			t.Fatalf("accepted %+v", p)
		}
	})
}
