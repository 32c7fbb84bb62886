package receiver

import (
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/ytkeep/ytkeep/internal/slackreq"
	"github.com/ytkeep/ytkeep/internal/spool"
)

func benchService(b *testing.B) *Service {
	root := b.TempDir()
	layout := spool.Layout{Root: filepath.Join(root, "spool")}
	if err := layout.CreateSingleUser(filepath.Join(root, "dl")); err != nil {
		b.Fatal(err)
	}
	s, err := New(Options{SpoolDir: layout.Root, Command: "/ytkeep", AllowedTeams: []string{"T1"},
		AllowedChannels: []string{"*"}, AllowedUsers: []string{"*"}, PerUserPerMinute: 1 << 30,
		ResponseURLAllowed: func(string) bool { return true },
		Logger:             slog.New(slog.NewJSONHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkHandle measures a whole accepted command: checks, URL parsing
// and the durable enqueue (state file and job file, each fsynced with its
// directory).
func BenchmarkHandle(b *testing.B) {
	s := benchService(b)
	c := &slackreq.Command{TeamID: "T1", ChannelID: "C1", UserID: "U1", Command: "/ytkeep",
		Text: "https://youtu.be/dQw4w9WgXcQ 720p", ResponseURL: "https://hooks.slack.com/x"}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if r := s.Handle(c); r[0] != 'Q' {
			b.Fatal(r)
		}
	}
}

// BenchmarkHandleParallel is the same with concurrent requests, as under load.
func BenchmarkHandleParallel(b *testing.B) {
	s := benchService(b)
	var n atomic.Int64
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c := &slackreq.Command{TeamID: "T1", ChannelID: "C1", UserID: "U" + strconv.FormatInt(n.Add(1), 10), Command: "/ytkeep",
				Text: "https://youtu.be/dQw4w9WgXcQ 720p", ResponseURL: "https://hooks.slack.com/x"}
			if r := s.Handle(c); r[0] != 'Q' {
				b.Fatal(r)
			}
		}
	})
}
