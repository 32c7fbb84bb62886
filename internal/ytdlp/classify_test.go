package ytdlp

import (
	"testing"

	"github.com/ytkeep/ytkeep/internal/job"
)

// TestClassify: yt-dlp's error lines, as it writes them, name the
// failure the user is told of.
func TestClassify(t *testing.T) {
	for _, c := range []struct {
		stderr string
		want   job.Class
	}{
		{"ERROR: [youtube] x: Video unavailable", job.ClassUnavailable},
		{"[download] File is larger than max-filesize (2000 bytes > 1000 bytes). Aborting.", job.ClassTooLarge},
		{"ERROR: unable to write data: [Errno 28] No space left on device", job.ClassDiskFull},
		{"OSError: [Errno 122] Disk quota exceeded", job.ClassDiskFull},
		{"", job.ClassUnavailable},
	} {
		if got := Classify(c.stderr); got != c.want {
			t.Errorf("Classify(%q) = %q, want %q", c.stderr, got, c.want)
		}
	}
}
