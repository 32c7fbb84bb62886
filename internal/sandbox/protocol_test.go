package sandbox

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ytkeep/ytkeep/internal/confine"
	"github.com/ytkeep/ytkeep/internal/job"
)

// TestServerRefusesRawHostileBytes plays a compromised worker that writes
// its own bytes on the launcher socket, not through the Launcher API.
// Each hostile message carries a pipe's write end: a server that refuses
// the request closes it without running anything (the test reads EOF and
// no output), and the server stays up and serves an honest request after
// all of them.
func TestServerRefusesRawHostileBytes(t *testing.T) {
	l, _ := launcher(t)
	dirPath := t.TempDir()
	dir, err := os.Open(dirPath)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	// Every message below would run "echo ran" if the server took it the
	// way a lenient decoder reads it; refused, it runs nothing.
	raw := `{"id":9,"raw":{"spec":{"Path":"/bin/sh","Args":["-c","echo ran"],"Env":null,"Limits":{"CPUSeconds":30,"FileBytes":1048576,"OpenFiles":64,"Processes":4096,"DataBytes":536870912}},"timeout_ms":10000}}`
	body := strings.TrimPrefix(raw, `{"id":9,`)
	hostile := map[string]string{
		"not JSON":                   "\x00\xff garbage",
		"byte order mark":            "\ufeff" + raw,
		"unknown field":              `{"id":9,"argv":["--exec","id"],` + body,
		"zero id":                    `{"id":0,` + body,
		"kill with a command":        `{"id":9,"kill":true,` + body,
		"download with a command":    `{"id":9,"job_dir":"` + job.NewID() + `","video":"dQw4w9WgXcQ","format":"best",` + body,
		"two objects":                raw + raw,
		"trailing bytes":             raw + "x",
		"leading space":              " " + raw,
		"spaces inside":              strings.Replace(raw, ":", ": ", 1),
		"case-insensitive duplicate": strings.TrimSuffix(raw, "}") + `,"ID":9}`,
		"over the size cap":          `{"id":9,"pad":"` + strings.Repeat("a", maxMsg) + `",` + body,
	}
	for name, msg := range hostile {
		t.Run(name, func(t *testing.T) {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			rights := unix.UnixRights(int(dir.Fd()), int(w.Fd()), int(w.Fd()))
			err = unix.Sendmsg(l.fd, []byte(msg), rights, nil, 0)
			w.Close()
			if err != nil && !(name == "over the size cap" && err == unix.EMSGSIZE) {
				t.Fatalf("sendmsg: %v", err)
			}
			out := make(chan []byte, 1)
			go func() { b, _ := io.ReadAll(r); out <- b }()
			select {
			case b := <-out:
				if len(b) != 0 {
					t.Fatalf("the refused request ran something: %q", b)
				}
			case <-time.After(60 * time.Second):
				t.Fatal("the server kept the descriptors of a refused request")
			}
		})
	}
	// Still up, and the same bytes in canonical form are served.
	var stdout bytes.Buffer
	o, err := l.Run(context.Background(), &Spec{Path: "/bin/sh", Args: []string{"-c", "echo ran"}, Limits: limits}, dir, &stdout, nil, 10*time.Second)
	if err != nil || o.ExitCode != 0 || stdout.String() != "ran\n" {
		t.Fatalf("after the hostile requests: %+v, %v, %q", o, err, stdout.String())
	}
}

// A setup that names raw programs is refused by a server built without
// the tests' raw decoder, as every release build is.
func TestReleaseServerRefusesRawPrograms(t *testing.T) {
	saved := rawSpec
	rawSpec = nil
	defer func() { rawSpec = saved }()
	s := &server{children: map[uint64]chan struct{}{}, setup: Setup{RawPrograms: []string{"/bin/sh"}}}
	if _, _, err := s.specFor(&job.Launch{ID: 1, Raw: []byte(`{"spec":{"Path":"/bin/sh"}}`)}, mustOpen(t, t.TempDir()), ""); err == nil ||
		!strings.Contains(err.Error(), "no caller's command line") {
		t.Fatalf("raw request accepted without the test decoder: %v", err)
	}
}

func mustOpen(t *testing.T, path string) *os.File {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// A launcher server that dies before its hello (under systemd 252 it
// was killed installing its seccomp filter; here a script that reads the
// setup and exits stands in for it) must make StartLauncher fail, so that
// the worker exits and systemd restarts and reports it, instead of
// waiting for ever on a socket whose other end the worker itself held.
func TestStartLauncherFailsWhenServerExits(t *testing.T) {
	rules := confine.DownloaderRules(confine.DownloaderParams{JobRoot: t.TempDir()})
	server := filepath.Join(t.TempDir(), "server")
	if err := os.WriteFile(server, []byte("#!/bin/sh\nexec head -c 1 <&4 >/dev/null\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		l, err := StartLauncher(server, &Setup{Rules: *rules, Seccomp: true})
		if l != nil {
			l.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "exited before it was ready") {
			t.Fatalf("StartLauncher: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("StartLauncher still waits for a launcher server that has exited")
	}
}

// A server that cannot start says why: the worker's error names the
// cause, not only that the server is gone.
func TestStartLauncherReportsWhy(t *testing.T) {
	self, _ := os.Executable()
	rules := confine.DownloaderRules(confine.DownloaderParams{JobRoot: t.TempDir()})
	rules.WriteDirs = append(rules.WriteDirs, t.TempDir()) // two job roots: refused
	l, err := StartLauncher(self, &Setup{Rules: *rules, Seccomp: true})
	if err == nil {
		l.Close()
		t.Fatal("StartLauncher succeeded with a server that refused its setup")
	}
	if !strings.Contains(err.Error(), "exactly one job root") {
		t.Fatalf("StartLauncher: %v", err)
	}
}

// A compromised worker (it makes the job directory) plants a yt-dlp plugin
// where yt-dlp looks for them, before asking for a download: the launcher
// refuses a job directory that is not empty, and runs nothing.
func TestServerRefusesAPreparedJobDir(t *testing.T) {
	l, root, err := downloader(t, "testdata/echo-yt-dlp")
	if err != nil {
		t.Fatal(err)
	}
	const id = "aaaaaaaaaaaaaaaaaaaaaaaaaa"
	d := jobDir(t, root, id)
	plugin := filepath.Join(root, id, ".config", "yt-dlp", "plugins", "evil", "yt_dlp_plugins", "extractor")
	if err := os.MkdirAll(plugin, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(plugin, "evil.py"), []byte("import os; os.system('id > /tmp/pwned')\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	_, err = l.Download(context.Background(), id, "dQw4w9WgXcQ", "best", d, &out, nil)
	if err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("download from a prepared job directory: %v", err)
	}
	if out.Len() != 0 {
		t.Fatalf("something ran: %q", out.String())
	}
}

// The download's HOME, XDG_CONFIG_HOME and TMPDIR are a directory the
// launcher made, empty, not the job directory the worker made.
func TestDownloadGetsAFreshHome(t *testing.T) {
	l, root, err := downloader(t, "testdata/env-yt-dlp")
	if err != nil {
		t.Fatal(err)
	}
	const id = "bbbbbbbbbbbbbbbbbbbbbbbbbb"
	d := jobDir(t, root, id)
	var out bytes.Buffer
	if o, err := l.Download(context.Background(), id, "dQw4w9WgXcQ", "best", d, &out, nil); err != nil || o.ExitCode != 0 {
		t.Fatalf("download: %v %+v", err, o)
	}
	home := filepath.Join(root, id, ".home")
	want := "HOME=" + home + "\nXDG_CONFIG_HOME=" + home + "/.config\nTMPDIR=" + home + "\nhome entries: 0\n"
	if out.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", out.String(), want)
	}
}
