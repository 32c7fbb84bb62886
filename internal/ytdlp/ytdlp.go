// Package ytdlp builds yt-dlp's command line and reads what yt-dlp prints.
//
// The argument vector is fixed: only the video ID (checked to be 11
// characters of [A-Za-z0-9_-]) and the format enum vary, and the URL is
// rebuilt from the ID after "--". Flags are used only when the installed
// yt-dlp lists them in --help, and the hardening flags are required: if
// one is missing, Args fails rather than run a weaker command.
//
// Everything yt-dlp prints is untrusted (it carries text from the video
// page); the parsers here bound it and extract only typed fields.
package ytdlp

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"github.com/ytkeep/ytkeep/internal/job"
	"github.com/ytkeep/ytkeep/internal/videourl"
)

// Capabilities is what the installed yt-dlp supports.
type Capabilities struct {
	Version string          // e.g. 2023.03.04
	flags   map[string]bool // long options listed by --help
}

var versionRE = regexp.MustCompile(`^(\d{4})\.(\d{2})\.(\d{2})(\.\d+)?$`)

// ParseVersion reads the output of yt-dlp --version.
func ParseVersion(out []byte) (string, error) {
	v := strings.TrimSpace(string(out))
	if !versionRE.MatchString(v) {
		return "", fmt.Errorf("unrecognised yt-dlp version %q", truncate(v, 40))
	}
	return v, nil
}

var flagRE = regexp.MustCompile(`(?m)^\s+(?:-\w, )?(--[a-z0-9][a-z0-9-]*)`)

// ParseHelp reads the output of yt-dlp --help.
func ParseHelp(version string, out []byte) *Capabilities {
	c := &Capabilities{Version: version, flags: map[string]bool{}}
	for _, m := range flagRE.FindAllSubmatch(out, -1) {
		c.flags[string(m[1])] = true
	}
	return c
}

// Has reports whether the installed yt-dlp lists flag.
func (c *Capabilities) Has(flag string) bool { return c.flags[flag] }

// Older reports whether the version is older than date "YYYY.MM.DD".
func (c *Capabilities) Older(date string) bool {
	return len(c.Version) < 10 || c.Version[:10] < date
}

// required are the flags without which ytkeep refuses to run yt-dlp.
var required = []string{
	"--ignore-config", "--no-exec", "--no-cookies", "--no-cache-dir",
	"--no-playlist", "--restrict-filenames", "--no-overwrites",
	"--max-filesize", "--socket-timeout", "--newline", "--use-extractors",
	"--print", "--paths", "--output", "--format", "--ffmpeg-location",
	"--no-mtime", "--max-downloads", "--extract-audio",
	// Without it yt-dlp imports plugins from $XDG_CONFIG_HOME, ~ and the
	// working directory's parents: code of whoever could write there
	// would run with the downloader's network (yt-dlp 2025.01.15 and
	// newer have it; Debian 12's 2023.03.04 does not, and also ignores
	// YTDLP_NO_PLUGINS).
	"--no-plugin-dirs",
}

// Missing lists the required flags the installed yt-dlp lacks.
func (c *Capabilities) Missing() []string {
	var m []string
	for _, f := range required {
		if !c.flags[f] {
			m = append(m, f)
		}
	}
	return m
}

// Request is one download.
type Request struct {
	Video  string     // 11-character video ID
	Format job.Format // quality enum
	// Source selects where the video comes from: "" for YouTube, or a
	// loopback base URL in test mode (config.Testing.MediaBaseURL).
	TestBaseURL   string
	Dir           string // absolute job directory; output goes here
	FFmpeg        string // absolute path
	MaxBytes      int64
	SocketTimeout int // seconds
	// Proxy is the egress proxy's URL, with the job's credentials
	// (http://user:token@127.0.0.1:port), or "" for none. Args checks it;
	// it reaches yt-dlp through Env, not the command line.
	Proxy string
}

// MetaPrefix marks the line yt-dlp prints after the file is complete.
const MetaPrefix = "ytkeep-meta "

// ProgressPrefix marks progress lines.
const ProgressPrefix = "ytkeep-progress "

// progressFields are the progress line's fields after ProgressPrefix, as
// yt-dlp's output template writes them: percent ("42.3%"), bytes so far,
// total bytes, the estimate of the total, speed (bytes a second) and
// seconds left; "NA" for what yt-dlp does not know.
const progressFields = "%(progress._percent_str)s %(progress.downloaded_bytes)s %(progress.total_bytes)s " +
	"%(progress.total_bytes_estimate)s %(progress.speed)s %(progress.eta)s"

// Progress is one progress line, read (ParseProgress). Zero is unknown.
type Progress struct {
	Percent                  int
	Bytes, Total, Speed, ETA int64
}

// ParseProgress reads the fields of a progress line (after
// ProgressPrefix), untrusted: a percent from 0 to 100 (N/A%, unknown,
// reads as 0), then optionally
// five numbers or NA, each within bounds (bytes and speed at most 1 TiB,
// ETA at most a week). Anything else is not a progress line.
func ParseProgress(s string) (Progress, bool) {
	f := strings.Fields(s)
	if len(f) != 1 && len(f) != 6 {
		return Progress{}, false
	}
	pct, err := strconv.ParseFloat(strings.TrimSuffix(f[0], "%"), 64)
	if f[0] == "N/A%" { // yt-dlp, when the total is not known
		pct, err = 0, nil
	}
	if err != nil || !strings.HasSuffix(f[0], "%") || !(pct >= 0 && pct <= 100) {
		return Progress{}, false
	}
	p := Progress{Percent: int(pct)}
	if len(f) == 1 {
		return p, true
	}
	var v [5]int64
	for i, x := range f[1:] {
		if x == "NA" {
			continue
		}
		n, err := strconv.ParseFloat(x, 64)
		limit := float64(int64(1) << 40)
		if i == 4 {
			limit = 7 * 24 * 3600
		}
		if err != nil || !(n >= 0 && n <= limit) {
			return Progress{}, false
		}
		v[i] = int64(n)
	}
	p.Bytes, p.Total, p.Speed, p.ETA = v[0], v[1], v[3], v[4]
	if p.Total == 0 {
		p.Total = v[2] // the estimate
	}
	return p, true
}

var selectors = map[job.Format]string{
	job.FormatBest:  "bv*+ba/b",
	job.Format1080:  "bv*[height<=?1080]+ba/b[height<=?1080]",
	job.Format720:   "bv*[height<=?720]+ba/b[height<=?720]",
	job.Format480:   "bv*[height<=?480]+ba/b[height<=?480]",
	job.Format360:   "bv*[height<=?360]+ba/b[height<=?360]",
	job.FormatAudio: "ba/b",
}

// URL is the only URL ytkeep ever gives yt-dlp: rebuilt from the ID.
func (r *Request) URL() string {
	if r.TestBaseURL != "" {
		return r.TestBaseURL + r.Video + ".mp4"
	}
	return "https://www.youtube.com/watch?v=" + r.Video
}

// Args returns yt-dlp's argument vector (without argv[0]).
func (c *Capabilities) Args(r *Request) ([]string, error) {
	if m := c.Missing(); len(m) > 0 {
		return nil, fmt.Errorf("yt-dlp %s lacks required flags %s: install a current yt-dlp", c.Version, strings.Join(m, " "))
	}
	if !videourl.ValidID(r.Video) {
		return nil, errors.New("invalid video ID")
	}
	sel, ok := selectors[r.Format]
	if !ok {
		return nil, errors.New("invalid format")
	}
	if !strings.HasPrefix(r.Dir, "/") || !strings.HasPrefix(r.FFmpeg, "/") || r.MaxBytes <= 0 || r.SocketTimeout <= 0 {
		return nil, errors.New("incomplete download request")
	}
	extractor := "youtube"
	if r.TestBaseURL != "" {
		extractor = "generic"
	}
	a := []string{
		"--ignore-config",
		"--no-exec",
		"--no-cookies",
		"--no-cache-dir",
		"--no-playlist",
		"--max-downloads", "1",
		"--restrict-filenames",
		"--no-overwrites",
		"--no-mtime",
		"--use-extractors", extractor,
		"--max-filesize", strconv.FormatInt(r.MaxBytes, 10),
		"--socket-timeout", strconv.Itoa(r.SocketTimeout),
		"--ffmpeg-location", r.FFmpeg,
		"--paths", r.Dir,
		"--output", "%(id)s.%(ext)s",
		"--format", sel,
		"--newline",
		"--print", "after_move:" + MetaPrefix + "%(.{id,title,duration,ext})j",
	}
	if c.Has("--progress") {
		a = append(a, "--progress") // --print implies --quiet; keep progress
	}
	if c.Has("--progress-template") {
		a = append(a, "--progress-template", "download:"+ProgressPrefix+progressFields)
	}
	a = append(a, "--no-plugin-dirs")
	for _, f := range []string{"--no-cookies-from-browser", "--no-write-info-json", "--no-write-comments", "--no-write-subs", "--no-write-thumbnail", "--no-batch-file", "--no-colors"} {
		if c.Has(f) {
			a = append(a, f)
		}
	}
	if r.Format == job.FormatAudio {
		a = append(a, "--extract-audio")
	}
	if r.Proxy != "" && !proxyOK(r.Proxy) {
		return nil, errors.New("the proxy must be the loopback egress proxy")
	}
	return append(a, "--", r.URL()), nil
}

func proxyOK(p string) bool {
	return strings.HasPrefix(p, "http://") && strings.Contains(p, "@127.0.0.1:") && !strings.ContainsAny(p, "\x00\n ")
}

// Env is the whole environment of the yt-dlp process, whose home is home.
// The egress proxy's URL (proxy, with the job's credentials) goes in
// http_proxy and https_proxy, which yt-dlp and ffmpeg read when no
// --proxy is given: a command line is readable by any user who can see
// the process, the environment only by its own user.
func Env(home, proxy string) []string {
	e := []string{
		"PATH=/usr/local/bin:/usr/bin:/bin",
		"HOME=" + home,
		"LANG=C.UTF-8",
		"LC_ALL=C.UTF-8",
		"PYTHONDONTWRITEBYTECODE=1",
		"PYTHONNOUSERSITE=1",
		"YTDLP_NO_PLUGINS=1",
		"TMPDIR=" + home,
		"XDG_CACHE_HOME=" + home + "/.cache",
		"XDG_CONFIG_HOME=" + home + "/.config",
	}
	if proxy != "" && proxyOK(proxy) {
		e = append(e, "http_proxy="+proxy, "https_proxy="+proxy)
	}
	return e
}

// Meta is what yt-dlp reports about the finished file.
type Meta struct {
	ID       string
	Title    string
	Duration int64
	Ext      string
}

// Output is what ParseOutput found in yt-dlp's standard output.
type Output struct {
	Meta     *Meta // nil if no complete meta line was seen
	Progress int   // last percent seen, -1 if none
	Lines    int
}

// MaxLine caps one output line, its newline included. A longer line is
// read to its end without being kept (it still counts towards MaxOutput),
// and parsing goes on with the next line, so a meta line after it is
// still found. The skipped line is counted in Output.Lines and reported in
// ParseOutput's error; if it starts with MetaPrefix it counts as a meta
// line, so that a real meta line after it makes two.
const MaxLine = 64 << 10

// MaxOutput caps the total output read.
const MaxOutput = 4 << 20

// ParseOutput reads yt-dlp's standard output, untrusted. It reads at most
// MaxOutput bytes, holding at most MaxLine of them at a time, and then
// drains the rest so that the child never blocks on a full pipe.
//
// The Output is valid even when the error is not nil: the error reports
// what yt-dlp does not print (more than one meta line, which also clears
// Meta; lines longer than MaxLine) or a failure to read.
func ParseOutput(r io.Reader) (*Output, error) { return ParseOutputProgress(r, nil) }

// ParseOutputProgress is ParseOutput that also calls onProgress, when not
// nil, with each progress line as it is read.
func ParseOutputProgress(r io.Reader, onProgress func(Progress)) (*Output, error) {
	o := &Output{Progress: -1}
	br := bufio.NewReaderSize(&io.LimitedReader{R: r, N: MaxOutput}, MaxLine)
	metas, long := 0, 0
	var err error
	for err == nil {
		var line []byte
		line, err = br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// No newline within MaxLine bytes: skip to the end of the line.
			o.Lines++
			long++
			if bytes.HasPrefix(line, []byte(MetaPrefix)) {
				metas++
			}
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			continue
		}
		if len(line) == 0 {
			continue // the end of the output, after a newline
		}
		o.Lines++
		line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
		switch {
		case bytes.HasPrefix(line, []byte(MetaPrefix)):
			metas++
			if m, err := parseMeta(line[len(MetaPrefix):]); err == nil {
				o.Meta = m
			}
		case bytes.HasPrefix(line, []byte(ProgressPrefix)):
			if p, ok := ParseProgress(string(line[len(ProgressPrefix):])); ok {
				o.Progress = p.Percent
				if onProgress != nil {
					onProgress(p)
				}
			}
		}
	}
	io.Copy(io.Discard, r) // never block the child on a full pipe
	switch {
	case metas > 1:
		o.Meta = nil // one video, one meta line; more is not yt-dlp
		return o, errors.New("more than one meta line")
	case err != io.EOF:
		return o, fmt.Errorf("couldn't read yt-dlp's output: %w", err)
	case long > 0:
		return o, fmt.Errorf("skipped %d output lines longer than %d bytes", long, MaxLine)
	}
	return o, nil
}

func parseMeta(b []byte) (*Meta, error) {
	var raw struct {
		ID       string   `json:"id"`
		Title    string   `json:"title"`
		Duration *float64 `json:"duration"`
		Ext      string   `json:"ext"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, err
	}
	m := &Meta{ID: raw.ID, Title: job.SanitizeTitle(raw.Title), Ext: raw.Ext}
	if raw.Duration != nil && *raw.Duration >= 0 && *raw.Duration < 7*24*3600 {
		m.Duration = int64(*raw.Duration + 0.5)
	}
	return m, nil
}

// Classify maps yt-dlp's standard error to a failure class.
func Classify(stderr string) job.Class {
	switch {
	case strings.Contains(stderr, "larger than max-filesize"), strings.Contains(stderr, "File is larger than"):
		return job.ClassTooLarge
	case strings.Contains(stderr, "No space left on device"), strings.Contains(stderr, "[Errno 28]"), strings.Contains(stderr, "Disk quota exceeded"):
		return job.ClassDiskFull
	default:
		return job.ClassUnavailable
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
