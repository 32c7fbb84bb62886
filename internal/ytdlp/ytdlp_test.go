package ytdlp

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ytkeep/ytkeep/internal/job"
)

// installed returns the capabilities of the yt-dlp on this machine. CI
// installs it; a developer machine without it skips with the reason.
func installed(t *testing.T) *Capabilities {
	t.Helper()
	path, err := exec.LookPath("yt-dlp")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("yt-dlp is not installed, and CI must run every test")
		}
		t.Skip("SKIPPED: yt-dlp is not installed (apt-get install yt-dlp)")
	}
	v, err := exec.Command(path, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	ver, err := ParseVersion(v)
	if err != nil {
		t.Fatal(err)
	}
	h, err := exec.Command(path, "--help").Output()
	if err != nil {
		t.Fatal(err)
	}
	return ParseHelp(ver, h)
}

func request() *Request {
	return &Request{Video: "dQw4w9WgXcQ", Format: job.Format720, Dir: "/var/lib/x/job", FFmpeg: "/usr/bin/ffmpeg", MaxBytes: 1 << 20, SocketTimeout: 30}
}

func TestInstalledHasRequiredFlags(t *testing.T) {
	c := installed(t)
	if m := c.Missing(); len(m) > 0 {
		t.Fatalf("installed yt-dlp %s lacks %v", c.Version, m)
	}
	if !c.Has("--progress-template") {
		t.Error("--progress-template not detected in a yt-dlp that has it")
	}
}

func TestArgs(t *testing.T) {
	c := installed(t)
	a, err := c.Args(request())
	if err != nil {
		t.Fatal(err)
	}
	if a[len(a)-2] != "--" || a[len(a)-1] != "https://www.youtube.com/watch?v=dQw4w9WgXcQ" {
		t.Fatalf("argv does not end with -- URL: %q", a[len(a)-2:])
	}
	for _, f := range required {
		if f == "--extract-audio" {
			continue
		}
		if !slices.Contains(a, f) {
			t.Errorf("argv lacks %s", f)
		}
	}
	for _, bad := range []string{"--exec", "--netrc", "--netrc-cmd", "--cookies", "--cookies-from-browser", "--external-downloader", "--downloader", "--write-link", "--write-subs", "--load-info-json", "--batch-file", "--config-locations", "--compat-options", "--allow-unsafe-ext", "--plugin-dirs"} {
		if slices.Contains(a, bad) {
			t.Errorf("argv contains forbidden %s", bad)
		}
	}
	i := slices.Index(a, "--use-extractors")
	if a[i+1] != "youtube" {
		t.Errorf("production extractor %q", a[i+1])
	}
	if slices.Contains(a, "--extract-audio") {
		t.Error("--extract-audio for a video format")
	}
	r := request()
	r.Format = job.FormatAudio
	r.TestBaseURL = "http://127.0.0.1:9/media/"
	a, _ = c.Args(r)
	if !slices.Contains(a, "--extract-audio") || a[len(a)-1] != "http://127.0.0.1:9/media/dQw4w9WgXcQ.mp4" {
		t.Errorf("test-mode audio argv %q", a)
	}
	if i := slices.Index(a, "--use-extractors"); a[i+1] != "generic" {
		t.Errorf("test extractor %q", a[i+1])
	}
}

// TestProxyNotOnCommandLine: the egress proxy's per-job credentials go to
// yt-dlp in its environment, which only its own user may read, never in
// its command line, which anyone who sees the process may.
func TestProxyNotOnCommandLine(t *testing.T) {
	c := installed(t)
	r := request()
	r.Proxy = "http://job:s3cr3t-token@127.0.0.1:41000"
	a, err := c.Args(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, arg := range a {
		if strings.Contains(arg, "s3cr3t-token") || arg == "--proxy" {
			t.Errorf("the command line holds the proxy: %q", a)
		}
	}
	env := Env("/job/.home", r.Proxy)
	if !slices.Contains(env, "https_proxy="+r.Proxy) || !slices.Contains(env, "http_proxy="+r.Proxy) {
		t.Errorf("the environment lacks the proxy: %q", env)
	}
	if env := Env("/job/.home", "http://job:t@203.0.113.9:8080"); strings.Contains(strings.Join(env, " "), "proxy") {
		t.Errorf("a proxy that is not the loopback egress proxy reached the environment: %q", env)
	}
}

func TestArgsRefuses(t *testing.T) {
	c := installed(t)
	for name, mut := range map[string]func(*Request){
		"option as id": func(r *Request) { r.Video = "--exec=id;x" },
		"url as id":    func(r *Request) { r.Video = "https://x/" },
		"bad format":   func(r *Request) { r.Format = "bv*+--exec" },
		"relative dir": func(r *Request) { r.Dir = "job" },
		"no size cap":  func(r *Request) { r.MaxBytes = 0 },
		"remote proxy": func(r *Request) { r.Proxy = "http://job:t@203.0.113.9:8080" },
	} {
		r := request()
		mut(r)
		if a, err := c.Args(r); err == nil {
			t.Errorf("%s: Args = %q", name, a)
		}
	}
}

func TestArgsRefusesOldYtDlp(t *testing.T) {
	h, _ := os.ReadFile("testdata/help-minimal.txt")
	c := ParseHelp("2021.01.01", h)
	if !c.Has("--ignore-config") || !c.Has("--use-extractors") || c.Has("--no-exec") {
		t.Fatalf("ParseHelp read %v", c.flags)
	}
	if _, err := c.Args(request()); err == nil || !strings.Contains(err.Error(), "--no-exec") {
		t.Fatalf("Args with a yt-dlp lacking hardening flags: %v", err)
	}
	if !c.Older("2023.03.04") || c.Older("2020.01.01") {
		t.Fatal("Older")
	}
}

func TestParseVersion(t *testing.T) {
	for in, want := range map[string]string{"2023.03.04\n": "2023.03.04", "2025.11.12.123456": "2025.11.12.123456"} {
		if got, err := ParseVersion([]byte(in)); err != nil || got != want {
			t.Errorf("ParseVersion(%q) = %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "1.0", "2023.3.4", "2023.03.04; rm -rf", "x\n2023.03.04"} {
		if _, err := ParseVersion([]byte(in)); err == nil {
			t.Errorf("ParseVersion(%q) accepted", in)
		}
	}
}

func TestParseOutput(t *testing.T) {
	out := "ytkeep-progress  10.5%\nsome noise\nytkeep-progress 100.0%\n" +
		`ytkeep-meta {"id": "dQw4w9WgXcQ", "title": "A \u001b[31mtitle\nwith <!channel>", "duration": 212.4, "ext": "mp4"}` + "\n"
	o, err := ParseOutput(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if o.Progress != 100 || o.Meta == nil {
		t.Fatalf("output %+v", o)
	}
	want := Meta{ID: "dQw4w9WgXcQ", Title: "A [31mtitle with <!channel>", Duration: 212, Ext: "mp4"}
	if *o.Meta != want {
		t.Fatalf("meta %+v, want %+v", *o.Meta, want)
	}
}

func TestParseOutputHostile(t *testing.T) {
	meta := `ytkeep-meta {"id":"dQw4w9WgXcQ","title":"t","duration":3,"ext":"mp4"}` + "\n"
	long := strings.Repeat("A", MaxLine+10)
	tests := []struct {
		name     string
		in       string
		meta     string // the video ID of the meta line ParseOutput must find, or ""
		progress int
		lines    int
	}{
		{"two metas", "ytkeep-meta {\"id\":\"a\"}\nytkeep-meta {\"id\":\"b\"}\n", "", -1, 2},
		{"huge meta line", "ytkeep-meta {\"title\":\"" + long + "\"}\n", "", -1, 1},
		{"huge meta line, then a meta line", "ytkeep-meta {\"title\":\"" + long + "\"}\n" + meta, "", -1, 2},
		{"long line, then a meta line", long + "\n" + meta, "dQw4w9WgXcQ", -1, 2},
		{"long lines around progress and meta", long + "\nytkeep-progress 42%\n" + long + long + "\n" + meta + long, "dQw4w9WgXcQ", 42, 5},
		{"line of exactly MaxLine, then a meta line", strings.Repeat("B", MaxLine-1) + "\n" + meta, "dQw4w9WgXcQ", -1, 2},
		{"bad json", "ytkeep-meta {\"id\":\n", "", -1, 1},
		{"neg percent", "ytkeep-progress -5%\n", "", -1, 1},
		{"NaN and Inf percent", "ytkeep-progress NaN%\nytkeep-progress Inf%\nytkeep-progress 1e400%\n", "", -1, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, _ := ParseOutput(strings.NewReader(tt.in))
			switch {
			case tt.meta == "" && o.Meta != nil:
				t.Errorf("meta accepted: %+v", o.Meta)
			case tt.meta != "" && (o.Meta == nil || o.Meta.ID != tt.meta):
				t.Errorf("meta %+v, want video %s", o.Meta, tt.meta)
			}
			if o.Progress != tt.progress {
				t.Errorf("progress %d, want %d", o.Progress, tt.progress)
			}
			if o.Lines != tt.lines {
				t.Errorf("%d lines, want %d", o.Lines, tt.lines)
			}
		})
	}
	// A flood is read to its end without growing memory past the caps.
	flood := strings.NewReader(strings.Repeat("x\n", MaxOutput))
	if _, err := ParseOutput(flood); err != nil {
		t.Fatal(err)
	}
	if flood.Len() != 0 {
		t.Fatal("output not drained")
	}
	// So is one endless line.
	endless := strings.NewReader(strings.Repeat("x", 2*MaxOutput) + "\n" + meta)
	if o, err := ParseOutput(endless); err == nil || o.Meta != nil || endless.Len() != 0 {
		t.Fatalf("endless line: %+v, %v, %d bytes left", o, err, endless.Len())
	}
}

// hostileSamples are the files in testdata/hostile, each a standard output
// a hostile yt-dlp could print, with what ParseOutput must make of it: the
// video ID of the meta line it must find ("" for none) and the progress.
var hostileSamples = map[string]struct {
	meta     string
	progress int
}{
	"long-line-then-meta.txt":    {"dQw4w9WgXcQ", 50},
	"long-meta-then-meta.txt":    {"", -1},
	"two-metas.txt":              {"", -1},
	"meta-not-at-line-start.txt": {"", -1},
	"control-title.txt":          {"dQw4w9WgXcQ", -1},
	"crlf.txt":                   {"dQw4w9WgXcQ", 100},
	"bad-progress.txt":           {"", 7},
	"nul-bytes.txt":              {"", -1},
}

// TestHostileSamples runs every file of testdata/hostile through
// ParseOutput; a file without an entry in hostileSamples fails the test.
func TestHostileSamples(t *testing.T) {
	files, err := filepath.Glob("testdata/hostile/*")
	if err != nil || len(files) != len(hostileSamples) {
		t.Fatalf("testdata/hostile holds %d files, hostileSamples %d (%v)", len(files), len(hostileSamples), err)
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			want, ok := hostileSamples[name]
			if !ok {
				t.Fatal("no expectation in hostileSamples")
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			o, _ := ParseOutput(bytes.NewReader(b))
			switch {
			case want.meta == "" && o.Meta != nil:
				t.Errorf("meta accepted: %+v", o.Meta)
			case want.meta != "" && (o.Meta == nil || o.Meta.ID != want.meta):
				t.Errorf("meta %+v, want video %s", o.Meta, want.meta)
			case o.Meta != nil && o.Meta.Title != job.SanitizeTitle(o.Meta.Title):
				t.Errorf("unsanitised title %q", o.Meta.Title)
			}
			if o.Progress != want.progress {
				t.Errorf("progress %d, want %d", o.Progress, want.progress)
			}
		})
	}
}

func FuzzParseOutput(f *testing.F) {
	f.Add([]byte("ytkeep-meta {\"id\":\"dQw4w9WgXcQ\",\"title\":\"t\",\"duration\":3,\"ext\":\"mp4\"}\n"))
	f.Add([]byte("ytkeep-progress 50%\n"))
	files, _ := filepath.Glob("testdata/hostile/*")
	for _, name := range files {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		o, _ := ParseOutput(bytes.NewReader(b))
		if o.Meta != nil && o.Meta.Title != job.SanitizeTitle(o.Meta.Title) {
			t.Fatalf("unsanitised title %q", o.Meta.Title)
		}
		if o.Progress < -1 || o.Progress > 100 {
			t.Fatalf("progress %d", o.Progress)
		}
	})
}

// TestParseProgress: the progress line yt-dlp writes with our template,
// and what must not pass for one.
func TestParseProgress(t *testing.T) {
	good := map[string]Progress{
		"  42.3% 1048576 2097152 NA 524288.5 2": {Percent: 42, Bytes: 1048576, Total: 2097152, Speed: 524288, ETA: 2},
		"100.0% 43187 43187 NA NA 0":            {Percent: 100, Bytes: 43187, Total: 43187},
		"7.1% 1000 NA 14000.2 250.0 52":         {Percent: 7, Bytes: 1000, Total: 14000, Speed: 250, ETA: 52},
		"N/A% 1000 NA NA 250.0 NA":              {Bytes: 1000, Speed: 250},
		"0.0% NA NA NA NA NA":                   {},
		"100%":                                  {Percent: 100},
	}
	for line, want := range good {
		if got, ok := ParseProgress(line); !ok || got != want {
			t.Errorf("ParseProgress(%q) = %+v, %v; want %+v", line, got, ok, want)
		}
	}
	for _, line := range []string{"", "42", "101%", "Unknown%", "N/A", "N/A%%", "-1%", "NaN%", "Inf%", "42% 1 2 3 4", "42% 1 2 3 4 5 6",
		"42% -1 2 3 4 5", "42% 1 2 3 4 99999999", "42% 1 2e20 3 4 5", "42% x 2 3 4 5", "42% 1 2 3 4 NaN",
		"<!channel>% 1 2 3 4 5"} {
		if p, ok := ParseProgress(line); ok {
			t.Errorf("ParseProgress(%q) accepted: %+v", line, p)
		}
	}
}

func FuzzParseProgress(f *testing.F) {
	f.Add("  42.3% 1048576 2097152 NA 524288.5 2")
	f.Add("100%")
	f.Add("1e2% 1e12 NA NA NA 1e6")
	f.Fuzz(func(t *testing.T, line string) {
		p, ok := ParseProgress(line)
		if !ok {
			return
		}
		if p.Percent < 0 || p.Percent > 100 || p.Bytes < 0 || p.Bytes > 1<<40 || p.Total < 0 || p.Total > 1<<40 ||
			p.Speed < 0 || p.Speed > 1<<40 || p.ETA < 0 || p.ETA > 7*24*3600 {
			t.Fatalf("%q: out of bounds %+v", line, p)
		}
	})
}
