package config

import (
	"strings"
	"testing"
)

func TestMetricsSettings(t *testing.T) {
	c, err := Parse(valid)
	if err != nil {
		t.Fatal(err)
	}
	if c.Metrics.Dir != "" || c.Metrics.IntervalSeconds != 5 {
		t.Fatalf("metrics default to %+v, want off, every 5 s", c.Metrics)
	}
	c, err = Parse(valid + "\n[metrics]\ndir = \"/var/lib/ytkeep/metrics\"\ninterval_seconds = 15\n")
	if err != nil || c.Metrics.Dir != "/var/lib/ytkeep/metrics" || c.Metrics.IntervalSeconds != 15 {
		t.Fatalf("%+v, %v", c, err)
	}
	for _, bad := range []struct{ name, keys, want string }{
		{"relative", `dir = "metrics"`, "clean absolute path"},
		{"unclean", `dir = "/var/lib/ytkeep/../metrics"`, "clean absolute path"},
		{"trailing slash", `dir = "/var/lib/ytkeep/metrics/"`, "clean absolute path"},
		{"negative interval", `interval_seconds = -1`, "1 to 3600"},
		{"long interval", `interval_seconds = 3601`, "1 to 3600"},
		{"unknown key", `path = "/x"`, "unknown keys: metrics.path"},
	} {
		t.Run(bad.name, func(t *testing.T) {
			_, err := Parse(valid + "\n[metrics]\n" + bad.keys + "\n")
			if err == nil || !strings.Contains(err.Error(), bad.want) {
				t.Fatalf("got %v, want an error with %q", err, bad.want)
			}
		})
	}
}
