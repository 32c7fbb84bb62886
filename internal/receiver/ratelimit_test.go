package receiver

import (
	"fmt"
	"testing"
	"time"
)

// TestUserWindow: the limit counts a user's events of the last minute
// exactly, across generation swaps, and forgets users idle for a minute
// without walking the map.
func TestUserWindow(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	tests := []struct {
		name   string
		events []float64 // seconds after t0, each allowed
		then   float64
		want   bool
	}{
		{"under the limit", []float64{1, 2}, 3, true},
		{"at the limit", []float64{1, 2, 3}, 4, false},
		{"a minute later", []float64{1, 2, 3}, 63, true},
		{"just under a minute", []float64{1, 2, 3}, 60.9, false},
		// The events are in the first generation; a swap at 60 s moves
		// it to prev; the user is still limited at 70 s.
		{"across a swap", []float64{50, 55, 59}, 70, false},
		// Events straddling two generations.
		{"straddling", []float64{30, 59, 61}, 89, false},
		{"straddling, first out", []float64{30, 59, 61}, 90.5, true},
		// Another user's events swap the generations twice; the user's
		// entry was moved to cur by its last event at 119 s.
		{"two swaps", []float64{100, 110, 119}, 150, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newUserWindow(t0, nil)
			for _, s := range tt.events {
				// Someone else's traffic drives the swaps.
				w.allow("UOTHER", at(s-0.5), 1<<30)
				if ok, _ := w.allow("U1", at(s), 3); !ok {
					t.Fatalf("event at %vs refused", s)
				}
			}
			w.allow("UOTHER", at(tt.then-0.5), 1<<30)
			if ok, _ := w.allow("U1", at(tt.then), 3); ok != tt.want {
				t.Fatalf("at %vs: allowed %v, want %v", tt.then, ok, tt.want)
			}
		})
	}
	t.Run("first refusal", func(t *testing.T) {
		w := newUserWindow(t0, nil)
		var firsts []bool
		for i := range 5 {
			ok, first := w.allow("U1", at(float64(i)), 2)
			if !ok {
				firsts = append(firsts, first)
			}
		}
		if fmt.Sprint(firsts) != "[true false false]" {
			t.Fatalf("first refusals %v, want one", firsts)
		}
		if ok, first := w.allow("U1", at(70), 2); !ok || first {
			t.Fatal("not allowed after a minute")
		}
		w.allow("U1", at(71), 2)
		if _, first := w.allow("U1", at(72), 2); !first {
			t.Fatal("a new refusal after an accepted event is not the first")
		}
	})
	t.Run("restored from the log", func(t *testing.T) {
		w := newUserWindow(at(30), map[string][]time.Time{"U1": {at(1), at(2), at(3)}})
		if ok, _ := w.allow("U1", at(30), 3); ok {
			t.Fatal("the log's events were not counted")
		}
	})
}

// TestUserWindowForgets: 100,000 users, each active once, over ten
// minutes: the window holds the users of the last two minutes at most.
func TestUserWindowForgets(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	w := newUserWindow(t0, nil)
	peak := 0
	for i := range 100_000 {
		now := t0.Add(time.Duration(i) * 6 * time.Millisecond) // 10,000 a minute
		w.allow(fmt.Sprintf("U%07d", i), now, 20)
		peak = max(peak, w.users())
	}
	if peak > 2*10_000+1 {
		t.Fatalf("the window held %d users, more than two minutes' 20,000", peak)
	}
}

// BenchmarkAllowRate: the per-user limit (20 a minute) with n users
// active in the minute, each request from the next user in turn, each
// user sending 10 a minute (the clock advances 6 s/n a request). The
// cost per request must not grow with n; it includes the rate log's
// append.
func BenchmarkAllowRate(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 40_000} {
		b.Run(fmt.Sprintf("users=%d", n), func(b *testing.B) {
			s := benchService(b)
			now := time.Unix(1_800_000_000, 0)
			s.opt.Now = func() time.Time { return now }
			s.opt.PerUserPerMinute = 20
			step := 6 * time.Second / time.Duration(n)
			users := make([]string, n)
			for i := range users {
				users[i] = fmt.Sprintf("U%07d", i)
				s.allowRate(users[i]) // all active
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				now = now.Add(step)
				if !s.allowRate(users[i%n]) {
					b.Fatal("refused")
				}
			}
		})
	}
}
