package demo

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDemo runs what make demo runs (the binaries make build left in
// bin/), in Socket Mode and in HTTP mode, and checks the narration a user
// reads: the acknowledgement, the status message in the DM going from
// downloading to saved, the stored file.
func TestDemo(t *testing.T) {
	bin, err := filepath.Abs("../../bin")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(bin, "ytkeep-courier")); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("no binaries in %s on CI (make test builds them first): %v", bin, err)
		}
		t.Skipf("SKIPPED LOUDLY: no binaries in %s: run make build", bin)
	}
	for _, tool := range []string{"/usr/bin/yt-dlp", "/usr/bin/ffmpeg"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s missing on CI", tool)
			}
			t.Skipf("SKIPPED LOUDLY: %s is not installed", tool)
		}
	}
	// The narration's steps, not Slack's 3 s, are under test here: the
	// ack and each status update may take long on a loaded machine.
	defer func(w time.Duration) { slackWait = w }(slackWait)
	slackWait = time.Minute
	for _, httpMode := range []bool{false, true} {
		var out bytes.Buffer
		if err := Run(context.Background(), &out, bin, false, httpMode); err != nil {
			t.Fatalf("demo (http %v): %v\n%s", httpMode, err, out.String())
		}
		for _, want := range []string{
			"I'll keep you posted in our direct messages until it's saved.",
			"(posted) :hourglass_flowing_sand: Downloading `dQw4w9WgXcQ` (720p)…",
			"(updated) :white_check_mark: Saved *dQw4w9WgXcQ*",
			"dQw4w9WgXcQ-720p.mp4 (",
			"the courier uploaded dQw4w9WgXcQ-720p.mp4 into your DM",
			"the same bytes as on the server",
			"/ytkeep list",
		} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("demo (http %v) does not say %q:\n%s", httpMode, want, out.String())
			}
		}
	}
}
