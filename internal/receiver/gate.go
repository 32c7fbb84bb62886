package receiver

import (
	"log/slog"
	"sync"
)

// maxSignedGates bounds the (reason, team) pairs told apart; past it,
// refusals share one gate.
const maxSignedGates = 1024

// signedGates aggregates the alerts of refusals after the signature
// check (an unauthorized workspace, user or channel, another app, the
// rate limit, a hostile link): one refusalGate per reason and team, so
// the first of each after a quiet spell is alerted at once, and a flood
// of the same (a workspace not allowed, a user over the limit, someone
// who holds the signing secret) arrives as one alert and counted
// summaries: refused reason=<reason> team=<team> repeated=true
// requests=<n> users=<distinct users> … window=<length>. Memory is
// bounded (maxSignedGates gates, each bounded; a gate is forgotten when
// its spell ends) and each refusal costs O(1). It is safe for concurrent
// use.
type signedGates struct {
	log   *slog.Logger
	mu    sync.Mutex
	gates map[[2]string]*refusalGate
}

func newSignedGates(log *slog.Logger) *signedGates {
	return &signedGates{log: log, gates: map[[2]string]*refusalGate{}}
}

// alertFirst records a refusal for reason of user in team. It reports
// whether to alert about it now; if not, it is counted for a summary.
func (s *signedGates) alertFirst(reason, team, user string) bool {
	key := [2]string{reason, team}
	s.mu.Lock()
	g := s.gates[key]
	if g == nil {
		if len(s.gates) >= maxSignedGates {
			key = [2]string{"", ""}
			g = s.gates[key]
		}
		if g == nil {
			g = &refusalGate{log: s.log, summary: []any{"reason", key[0], "team", key[1], "repeated", true},
				addrLabel: "users", remotesLabel: "first_users", reasons: map[string]int{}, addrs: map[string]bool{}}
			if key[0] == "" {
				g.summary = []any{"reason", "signed", "team", "many", "repeated", true}
			}
			g.quiet = func() {
				s.mu.Lock()
				if s.gates[key] == g {
					delete(s.gates, key)
				}
				s.mu.Unlock()
			}
			s.gates[key] = g
		}
	}
	s.mu.Unlock()
	return g.alertFirst(reason, user)
}
