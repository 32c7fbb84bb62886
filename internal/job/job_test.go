package job

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
		{"unknown status", Result{V: 1, Job: id, Reply: token, Status: "queued"}, false},
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

// TestHostileRecords checks every file in testdata/hostile: each must be
// refused both as a job and as a result.
func TestHostileRecords(t *testing.T) {
	files, err := filepath.Glob("testdata/hostile/*")
	if err != nil || len(files) < 5 {
		t.Fatalf("hostile samples: %v, %d files", err, len(files))
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseJob(b); err == nil {
			t.Errorf("%s accepted as a job", f)
		}
		if _, err := ParseResult(b); err == nil {
			t.Errorf("%s accepted as a result", f)
		}
	}
}

func FuzzParseJob(f *testing.F) {
	good, _ := validJob().Marshal()
	f.Add(good)
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
