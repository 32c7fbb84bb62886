package status

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ytkeep/ytkeep/internal/courier"
)

func TestHistoryGood(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "history_good.json"))
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := courier.ParseHistory(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 2 || jobs[0].State != courier.HistoryFailed || jobs[1].File != "dQw4w9WgXcQ-best.mp4" {
		t.Errorf("parsed %+v", jobs)
	}
}

// TestHistoryHostile: each sample is an honest history with one hostile
// change, named by its file.
func TestHistoryHostile(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "hostile", "history", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatal("no samples", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".json"), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if jobs, err := courier.ParseHistory(data); err == nil {
				t.Errorf("accepted: %+v", jobs)
			}
		})
	}
}

func FuzzParseHistory(f *testing.F) {
	if data, err := os.ReadFile(filepath.Join("testdata", "history_good.json")); err == nil {
		f.Add(data)
	}
	f.Add([]byte(`{"v":1,"jobs":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		jobs, err := courier.ParseHistory(data)
		if err != nil {
			return
		}
		// What is accepted is whole: its canonical form parses again to
		// the same jobs, within the courier's bound.
		again, err := json.Marshal(map[string]any{"v": 1, "jobs": jobs})
		if err != nil {
			t.Fatal(err)
		}
		back, err := courier.ParseHistory(again)
		if err != nil || !reflect.DeepEqual(back, jobs) || len(jobs) > 10 {
			t.Fatalf("accepted %+v, which does not read back (%v)", jobs, err)
		}
	})
}
