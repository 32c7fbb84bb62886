package ytdlp

import (
	"slices"
	"strings"
	"testing"
)

func TestOlderThan(t *testing.T) {
	for _, tt := range []struct {
		version string
		older   bool
	}{
		{"2023.03.04", true}, {"2025.11.11", true}, {"2025.11.12", false}, {"2025.11.12.1", false},
		{"2026.01.02", false}, {"", true}, {"2025", true},
	} {
		if got := OlderThan(tt.version, CurrentVersion); got != tt.older {
			t.Errorf("OlderThan(%q) = %v", tt.version, got)
		}
	}
}

// A yt-dlp that cannot be told to skip plugin directories (Debian 12's
// 2023.03.04) is refused: a plugin planted where it looks would run with
// the downloader's network.
func TestRequiresNoPluginDirs(t *testing.T) {
	var help strings.Builder
	for _, f := range required {
		if f != "--no-plugin-dirs" {
			help.WriteString("    " + f + "    x\n")
		}
	}
	c := ParseHelp("2023.03.04", []byte(help.String()))
	if m := c.Missing(); len(m) != 1 || m[0] != "--no-plugin-dirs" {
		t.Fatalf("Missing() = %q, want only --no-plugin-dirs", m)
	}
	if _, err := c.Args(&Request{Video: "dQw4w9WgXcQ", Format: "best", Dir: "/j", FFmpeg: "/usr/bin/ffmpeg", MaxBytes: 1, SocketTimeout: 1}); err == nil {
		t.Fatal("a command line was built for a yt-dlp without --no-plugin-dirs")
	}
	help.WriteString("    --no-plugin-dirs    x\n")
	a, err := ParseHelp("2025.04.30", []byte(help.String())).Args(&Request{Video: "dQw4w9WgXcQ", Format: "best", Dir: "/j", FFmpeg: "/usr/bin/ffmpeg", MaxBytes: 1, SocketTimeout: 1})
	if err != nil || !slices.Contains(a, "--no-plugin-dirs") {
		t.Fatalf("args %q, %v", a, err)
	}
}
