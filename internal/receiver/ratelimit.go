package receiver

import "time"

// userWindow counts each user's events in the last minute, for the
// per-user limits. Its cost per event does not depend on how many users
// are active: the users live in two generations of maps, cur and prev.
// A user's entry is looked up in cur, then in prev (and moved to cur);
// once a minute has passed since cur was started, prev is dropped whole
// and cur becomes prev. An entry left in prev for a whole generation was
// last touched more than a minute ago, so every time it holds is out of
// the window: dropping it forgets nothing the limit needs. No event ever
// walks the map. Memory is the users of the last two minutes. It is not
// safe for concurrent use (Service.rateMu guards it).
type userWindow struct {
	cur, prev map[string]*userEvents
	start     time.Time // when cur was started
}

// userEvents are one user's events in the window, oldest first: at most
// the limit, since a refused event is not recorded.
type userEvents struct {
	times []time.Time
	// refused says a refusal was reported since the last accepted
	// event (one alert per user and minute).
	refused bool
}

// newUserWindow returns a window holding live, the events of the last
// minute by user (openRateLog's), as of now.
func newUserWindow(now time.Time, live map[string][]time.Time) *userWindow {
	w := &userWindow{cur: make(map[string]*userEvents, len(live)), prev: map[string]*userEvents{}, start: now}
	for u, ts := range live {
		w.cur[u] = &userEvents{times: ts}
	}
	return w
}

// get returns user's entry, its times pruned to the minute before now;
// nil if there is none.
func (w *userWindow) get(user string, now time.Time) *userEvents {
	if now.Sub(w.start) >= time.Minute {
		w.prev, w.cur, w.start = w.cur, make(map[string]*userEvents, len(w.cur)), now
	}
	e := w.cur[user]
	if e == nil {
		if e = w.prev[user]; e == nil {
			return nil
		}
		delete(w.prev, user)
		w.cur[user] = e
	}
	keep := e.times[:0]
	for _, t := range e.times { // at most the limit, a few dozen
		if now.Sub(t) < time.Minute {
			keep = append(keep, t)
		}
	}
	clear(e.times[len(keep):])
	e.times = keep
	return e
}

// allow records an event of user at now unless the user has had limit
// events in the minute before it. first reports the first refusal since
// the user's last accepted event.
func (w *userWindow) allow(user string, now time.Time, limit int) (ok, first bool) {
	e := w.get(user, now)
	if e == nil {
		e = &userEvents{}
		w.cur[user] = e
	}
	if len(e.times) >= limit {
		first = !e.refused
		e.refused = true
		return false, first
	}
	e.refused = false
	e.times = append(e.times, now)
	return true, false
}

// users is how many users the window holds (both generations).
func (w *userWindow) users() int { return len(w.cur) + len(w.prev) }
