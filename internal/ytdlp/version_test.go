package ytdlp

import "testing"

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
