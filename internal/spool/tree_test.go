package spool

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

// deploy/tmpfiles.d/ytkeep.conf must create exactly Tree for the default
// paths, with the same modes, owners and groups. Besides it, tmpfiles.d
// may create only the root-owned directories the units need.
func TestTmpfilesMatchesTree(t *testing.T) {
	f, err := os.Open("../../deploy/tmpfiles.d/ytkeep.conf")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fs := strings.Fields(line)
		if len(fs) != 6 || fs[0] != "d" || fs[5] != "-" {
			t.Fatalf("unexpected tmpfiles.d line %q (only plain d lines are expected)", line)
		}
		if _, dup := got[fs[1]]; dup {
			t.Fatalf("%s is listed twice", fs[1])
		}
		mode, err := strconv.ParseUint(fs[2], 8, 32)
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		got[fs[1]] = fmt.Sprintf("%04o %s %s", mode, fs[3], fs[4])
	}
	want := map[string]string{}
	for _, e := range (Layout{Root: "/var/spool/ytkeep"}).Tree("/var/lib/ytkeep/downloads") {
		want[e.Path] = fmt.Sprintf("%04o %s %s", e.Mode, Names[e.Owner], Names[e.Group])
	}
	// Outside the tree: the units' empty RootDirectory= and its parent,
	// and the configuration directory.
	for _, p := range []string{"/var/lib/ytkeep", "/var/lib/ytkeep/root", "/etc/ytkeep", "/var/lib/ytkeep/metrics"} {
		want[p] = "0755 root root"
	}
	// The metrics directories, each its daemon's user's (metrics.OpenFile
	// refuses any other; testbed.TestMetricsFilesProtected).
	want["/var/lib/ytkeep/metrics/receiver"] = "0755 ytkeep-recv ytkeep-spool"
	want["/var/lib/ytkeep/metrics/worker"] = "0755 ytkeep-work ytkeep-spool"
	want["/var/lib/ytkeep/metrics/downloader"] = "0755 ytkeep-dl ytkeep-dl"
	want["/var/lib/ytkeep/metrics/courier"] = "0755 ytkeep-courier ytkeep-courier"
	for p, w := range want {
		if got[p] != w {
			t.Errorf("tmpfiles.d: %s is %q, want %q", p, got[p], w)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("tmpfiles.d creates %s, which is not in the tree", p)
		}
	}
}
