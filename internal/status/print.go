package status

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ytkeep/ytkeep/internal/config"
)

// Command is "ytkeep status": it checks who runs it (Allowed, with the
// effective uid euid), loads the configuration at configPath for the
// spool's place, and prints the report as tables, or as one JSON object
// when asJSON is set.
func Command(w io.Writer, configPath string, asJSON bool, limit, euid int, now time.Time) error {
	if err := Allowed(euid); err != nil {
		return err
	}
	if limit < 1 || limit > maxRead {
		return fmt.Errorf("-limit must be 1-%d", maxRead)
	}
	c, err := config.Load(configPath)
	if err != nil {
		return err
	}
	r, err := Collect(Options{SpoolDir: c.Spool.Dir, Now: now, Limit: limit})
	if err != nil {
		return err
	}
	if asJSON {
		return WriteJSON(w, r)
	}
	return WriteText(w, r)
}

// WriteJSON writes r as one indented JSON object.
func WriteJSON(w io.Writer, r *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes r as tables, one section after the other.
func WriteText(w io.Writer, r *Report) error {
	now := time.Unix(r.Time, 0)
	ago := func(t int64) string { return age(now.Sub(time.Unix(t, 0))) }
	var b strings.Builder
	fmt.Fprintf(&b, "spool %s at %s\n", r.Spool, now.UTC().Format("2006-01-02 15:04:05 UTC"))

	j := r.Jobs
	fmt.Fprintf(&b, "\nJOBS: %d queued, %d with a download slot\n", j.Queued, j.Running)
	table(&b, len(j.Jobs), "STATE\tJOB\tUSER\tTEAM\tVIDEO\tFORMAT\tAGE\tIN STATE\tATTEMPT", func(i int) string {
		e := j.Jobs[i]
		attempt := "-"
		if e.Attempt > 0 {
			attempt = strconv.Itoa(e.Attempt)
		}
		return strings.Join([]string{e.State, e.ID, e.User, e.Team, e.Video, e.Format, ago(e.Created), ago(e.Since), attempt}, "\t")
	})
	section(&b, &j.Section)

	f := r.Failures
	fmt.Fprintf(&b, "\nRECENT FAILURES (from the courier's history of each user, and results not yet taken)\n")
	table(&b, len(f.Failures), "WHEN\tJOB\tUSER\tVIDEO\tFORMAT\tCLASS\tREASON", func(i int) string {
		e := f.Failures[i]
		return strings.Join([]string{ago(e.Time) + " ago", e.ID, dash(e.User), dash(e.Video), dash(e.Format), e.Class, e.Reason}, "\t")
	})
	section(&b, &f.Section)

	q := r.Quarantine
	fmt.Fprintf(&b, "\nQUARANTINE (worker/quarantine, courier/quarantine; why: checked again now, the daemon's reason is in its log)\n")
	table(&b, len(q.Files), "WHEN\tDAEMON\tTYPE\tSIZE\tNAME\tWHY", func(i int) string {
		e := q.Files[i]
		return strings.Join([]string{ago(e.Time) + " ago", e.Daemon, e.Type, strconv.FormatInt(e.Size, 10), e.Name, e.Why}, "\t")
	})
	section(&b, &q.Section)

	a := r.Alerts
	fmt.Fprintf(&b, "\nALERTS NOT YET POSTED (the worker's in results/, the receiver's and the courier's kept while down)\n")
	table(&b, len(a.Alerts), "WHEN\tDAEMON\tEVENT\tDETAILS", func(i int) string {
		e := a.Alerts[i]
		var attrs []string
		for _, k := range slices.Sorted(maps.Keys(e.Attrs)) {
			// Quoted when it holds a space, = or ": a value (yt-dlp's
			// stderr, partly the video's) must not read as more pairs.
			v := e.Attrs[k]
			if strings.ContainsAny(v, " =\"") {
				v = strconv.Quote(v)
			}
			attrs = append(attrs, k+"="+v)
		}
		return strings.Join([]string{ago(e.Time) + " ago", e.Daemon, e.Event, dash(strings.Join(attrs, " "))}, "\t")
	})
	section(&b, &a.Section)
	b.WriteString("Alerts already posted are in the daemons' logs only (audit lines with \"alert\":true).\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// table writes a header and n rows, aligned, or "none".
func table(b *strings.Builder, n int, header string, row func(int) string) {
	if n == 0 {
		b.WriteString("  none\n")
		return
	}
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for i := 0; i < n; i++ {
		fmt.Fprintln(tw, row(i))
	}
	tw.Flush()
}

// section writes what a section's table does not show.
func section(b *strings.Builder, s *Section) {
	if s.Omitted > 0 {
		fmt.Fprintf(b, "  ... and %d more not shown (-limit, -json)\n", s.Omitted)
	}
	for _, p := range s.Problems {
		fmt.Fprintf(b, "  problem: %s: %s\n", p.File, p.Why)
	}
	for _, e := range s.Errors {
		fmt.Fprintf(b, "  INCOMPLETE: %s\n", e)
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// age says a duration in its largest unit or two: 45s, 3m, 2h05m, 3d04h.
func age(d time.Duration) string {
	if d < 0 {
		return "future"
	}
	s := int64(d / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm", s/60)
	case s < 86400:
		return fmt.Sprintf("%dh%02dm", s/3600, s%3600/60)
	}
	return fmt.Sprintf("%dd%02dh", s/86400, s%86400/3600)
}
