package sandbox

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ytkeep/ytkeep/internal/confine"
)

// TestChildCannotWriteMetrics: the downloader's metrics directory is in
// the server's Landlock rules (it writes its metrics file there) but in
// no child's: a download, running as the same user, cannot write it. The
// control, without Landlock, shows the attempt would succeed.
func TestChildCannotWriteMetrics(t *testing.T) {
	if confine.LandlockABI() < confine.MinLandlockABI {
		t.Skip("SKIPPED: this kernel has no Landlock ABI 6; the metrics directory is then kept from the downloads by AppArmor alone")
	}
	for _, c := range []struct {
		name     string
		landlock bool
	}{{"landlock", true}, {"control without landlock", false}} {
		t.Run(c.name, func(t *testing.T) {
			root, metricsDir := t.TempDir(), t.TempDir()
			self, _ := os.Executable()
			rules := confine.DownloaderRules(confine.DownloaderParams{JobRoot: root})
			l, err := StartLauncher(self, &Setup{Rules: *rules, RawPrograms: []string{"/bin/sh"},
				Landlock: c.landlock, Seccomp: true, MetricsDirs: []string{metricsDir}})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			dir, err := os.MkdirTemp(root, "job")
			if err != nil {
				t.Fatal(err)
			}
			d, err := os.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			target := filepath.Join(metricsDir, "ytkeep_downloader.prom")
			var out, errb bytes.Buffer
			o, err := l.Run(context.Background(), &Spec{Path: "/bin/sh", Args: []string{"-c", "printf 'forged 1\\n' > " + target}, Limits: limits},
				d, &out, &errb, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			_, statErr := os.Stat(target)
			wrote := statErr == nil
			if wrote != !c.landlock {
				t.Errorf("the child wrote the metrics file: %v (exit %d, stderr %q); want %v", wrote, o.ExitCode, errb.String(), !c.landlock)
			}
		})
	}
}
