package job

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const id = "abcdefghijklmnopqrstuvwxyz"

func TestParseName(t *testing.T) {
	good := []struct {
		name string
		want Name
	}{
		{id + ".job", Name{Kind: KindJob, ID: id}},
		{id + ".job.1", Name{Kind: KindClaimed, ID: id, Attempt: 1}},
		{id + ".job.1000", Name{Kind: KindClaimed, ID: id, Attempt: 1000}},
		{id + ".started.result", Name{Kind: KindResult, ID: id, Status: StatusStarted}},
		{id + ".done.result", Name{Kind: KindResult, ID: id, Status: StatusDone}},
		{id + ".failed.result", Name{Kind: KindResult, ID: id, Status: StatusFailed}},
		{id + ".alert", Name{Kind: KindAlert, ID: id}},
		{id + ".1.progress", Name{Kind: KindProgress, ID: id, Attempt: 1}},
		{id + ".10000.progress", Name{Kind: KindProgress, ID: id, Attempt: 10000}},
		{"dQw4w9WgXcQ-best.mp4", Name{Kind: KindStored, Video: "dQw4w9WgXcQ", Format: FormatBest, Ext: "mp4"}},
		{"dQw4w9WgXcQ-audio.opus", Name{Kind: KindStored, Video: "dQw4w9WgXcQ", Format: FormatAudio, Ext: "opus"}},
		{"dQw4w9WgXcQ-720p.json", Name{Kind: KindSidecar, Video: "dQw4w9WgXcQ", Format: Format720}},
	}
	for _, tt := range good {
		t.Run(tt.name, func(t *testing.T) {
			n, err := ParseName(tt.name)
			if err != nil {
				t.Fatal(err)
			}
			if n != tt.want {
				t.Fatalf("got %+v, want %+v", n, tt.want)
			}
			if n.String() != tt.name {
				t.Fatalf("String() = %q", n.String())
			}
		})
	}
	for _, bad := range hostileNames(t) {
		if n, err := ParseName(bad); err == nil {
			t.Errorf("ParseName(%q) accepted as %+v", bad, n)
		}
	}
}

// hostileNames are names no honest writer produces (testdata/names/hostile,
// one per line), which also seed the fuzz corpus.
func hostileNames(t testing.TB) []string {
	b, err := os.ReadFile(filepath.Join("testdata", "names", "hostile"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range strings.Split(string(b), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			names = append(names, strings.ReplaceAll(l, `\0`, "\x00"))
		}
	}
	if len(names) < 20 {
		t.Fatalf("only %d hostile names", len(names))
	}
	return names
}

func TestNameConstructors(t *testing.T) {
	j := validJob()
	r := j.Result(StatusDone, "")
	for _, n := range []string{j.FileName(), r.FileName(), ClaimedName(j.ID, 3), AlertName(j.ID),
		StoredName("dQw4w9WgXcQ", Format480, "webm"), SidecarName("dQw4w9WgXcQ", Format480)} {
		if p, err := ParseName(n); err != nil || p.String() != n {
			t.Errorf("%q: %+v, %v", n, p, err)
		}
	}
}

// FuzzParseName: whatever is accepted is exactly what String gives back.
func FuzzParseName(f *testing.F) {
	f.Add(id + ".job.7")
	f.Add("dQw4w9WgXcQ-1080p.mkv")
	for _, n := range hostileNames(f) {
		f.Add(n)
	}
	f.Fuzz(func(t *testing.T, name string) {
		n, err := ParseName(name)
		if err != nil {
			return
		}
		if n.String() != name {
			t.Fatalf("accepted %q as %+v, which is %q", name, n, n.String())
		}
		if strings.ContainsAny(name, "/\x00") || strings.HasPrefix(name, ".") {
			t.Fatalf("accepted %q", name)
		}
	})
}
