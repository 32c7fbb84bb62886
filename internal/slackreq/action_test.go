package slackreq

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestParseAction(t *testing.T) {
	good, err := os.ReadFile("testdata/actions/good.json")
	if err != nil {
		t.Fatal(err)
	}
	a, err := ParseAction(good)
	if err != nil {
		t.Fatal(err)
	}
	want := Action{TeamID: "T1DC2JH3J", UserID: "U2CERLKJA", ChannelID: "D0BOTDM01", APIAppID: "A0YTKEEP01",
		ResponseURL: "https://hooks.slack.com/actions/T1DC2JH3J/1/abc", ActionID: "ytkeep_cancel", Value: "aaaaaaaaaaaaaaaaaaaaaaaaaa"}
	if *a != want {
		t.Fatalf("ParseAction = %+v, want %+v", *a, want)
	}
}

// TestHostileActions: every sample but good.json is refused with a
// bad_form Error.
func TestHostileActions(t *testing.T) {
	files, _ := filepath.Glob("testdata/actions/*.json")
	if len(files) < 10 {
		t.Fatalf("%d samples", len(files))
	}
	for _, f := range files {
		if filepath.Base(f) == "good.json" {
			continue
		}
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			a, err := ParseAction(b)
			var e *Error
			if !errors.As(err, &e) || e.Reason != ReasonBadForm {
				t.Fatalf("ParseAction = %+v, %v; want a bad_form refusal", a, err)
			}
		})
	}
}

func TestActionPayload(t *testing.T) {
	for _, tt := range []struct {
		body     string
		ok, fail bool
	}{
		{"payload=%7B%7D", true, false},
		{"payload=%7B%7D&payload=%7B%7D", true, true},
		{"payload=%7B%7D&team_id=T1", true, true},
		{"command=%2Fytkeep&text=x", false, false},
	} {
		_, ok, err := ActionPayload([]byte(tt.body))
		if ok != tt.ok || (err != nil) != tt.fail {
			t.Errorf("ActionPayload(%q) = %v, %v", tt.body, ok, err)
		}
	}
}

func FuzzParseAction(f *testing.F) {
	files, _ := filepath.Glob("testdata/actions/*.json")
	for _, p := range files {
		b, _ := os.ReadFile(p)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := ParseAction(b)
		if err != nil {
			return
		}
		if !ValidSlackID(a.TeamID) || !ValidSlackID(a.UserID) || !ValidSlackID(a.ChannelID) ||
			(a.EnterpriseID != "" && !ValidSlackID(a.EnterpriseID)) {
			t.Fatalf("accepted IDs %+v", a)
		}
	})
}
