package job

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ytkeep/ytkeep/internal/audit"
)

func TestAlertRoundTrip(t *testing.T) {
	a := audit.AlertRecord{Time: time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("CET", 3600)), Daemon: "worker", Event: audit.Violation,
		Attrs: map[string]string{"signal": "SIGSYS", "job": "j"}}
	b, err := MarshalAlert(a)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseAlert(b, "worker")
	if err != nil {
		t.Fatalf("ParseAlert(MarshalAlert) = %v\n%s", err, b)
	}
	if !got.Time.Equal(a.Time) || got.Event != a.Event || got.Attrs["signal"] != "SIGSYS" || got.Daemon != "worker" {
		t.Fatalf("round trip: %+v", got)
	}
	// The daemon named inside is never believed.
	if got, _ := ParseAlert(b, "receiver"); got.Daemon != "receiver" {
		t.Fatalf("daemon %q, want the one the file came from", got.Daemon)
	}
}

// A violation with a long stderr tail, or many long attributes, still
// makes an alert file the receiver accepts: values are cut, not refused.
func TestMarshalAlertCutsToFit(t *testing.T) {
	long := strings.Repeat("é", 5000) // two bytes a rune: cuts must keep runes whole
	attrs := map[string]string{}
	for i := 0; i < 20; i++ {
		attrs["k"+string(rune('a'+i))] = long
	}
	for name, a := range map[string]audit.AlertRecord{
		"stderr tail": {Event: audit.Violation, Daemon: "worker", Attrs: map[string]string{"stderr": long}},
		"many long":   {Event: audit.Violation, Daemon: "worker", Attrs: attrs},
		"bad utf-8":   {Event: audit.Violation, Daemon: "worker", Attrs: map[string]string{"stderr": "a\xffb"}},
	} {
		t.Run(name, func(t *testing.T) {
			b, err := MarshalAlert(a)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseAlert(b, "worker")
			if err != nil {
				t.Fatalf("the receiver refuses it: %v", err)
			}
			if len(b) > MaxAlertSize || len(got.Attrs) > audit.MaxAlertAttrs {
				t.Fatalf("%d bytes, %d attributes", len(b), len(got.Attrs))
			}
			for k, v := range got.Attrs {
				if !utf8.ValidString(v) || len(v) > MaxAlertValue || len(v) == 0 {
					t.Fatalf("attribute %s: %d bytes", k, len(v))
				}
			}
		})
	}
}

func TestParseAlertRefuses(t *testing.T) {
	good := `{"time":"2026-01-01T00:00:00Z","daemon":"worker","event":"violation","attrs":{"signal":"SIGSYS"}}`
	if _, err := ParseAlert([]byte(good), "worker"); err != nil {
		t.Fatalf("the honest sample is refused: %v", err)
	}
	for name, b := range hostile(t, "alert") {
		t.Run(name, func(t *testing.T) {
			if a, err := ParseAlert(b, "worker"); err == nil {
				t.Fatalf("accepted: %+v", a)
			}
		})
	}
}

// FuzzParseAlert: an accepted alert file re-encodes byte for byte and
// stays within the limits.
func FuzzParseAlert(f *testing.F) {
	f.Add([]byte(`{"time":"2026-01-01T00:00:00Z","daemon":"worker","event":"violation","attrs":{"signal":"SIGSYS"}}`))
	for _, b := range hostile(f, "alert") {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := ParseAlert(b, "worker")
		if err != nil {
			return
		}
		var orig audit.AlertRecord
		if err := decodeStrict(b, &orig); err != nil {
			t.Fatal(err)
		}
		a.Daemon = orig.Daemon
		again, err := MarshalAlert(*a)
		if err != nil || string(again) != string(b) {
			t.Fatalf("accepted non-canonical input %q", b)
		}
		if len(a.Attrs) > audit.MaxAlertAttrs || !alertEvents[a.Event] {
			t.Fatalf("accepted %+v", a)
		}
	})
}
