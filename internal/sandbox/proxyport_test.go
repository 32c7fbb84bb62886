package sandbox

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestProxyPortPerDownload: each download reaches the egress proxy on a
// port of its own, so one that holds a hundred connections without a
// request (more than the proxy's pending heads) leaves another download's
// request answered. With one port for all, the second request would find
// the heads full and be dropped unanswered (review finding R4).
func TestProxyPortPerDownload(t *testing.T) {
	l, root, err := downloader(t, "testdata/proxy-yt-dlp")
	if err != nil {
		t.Fatal(err)
	}
	const flood, ask = "ffffffffffffffffffffffffff", "aaaaaaaaaaaaaaaaaaaaaaaaaa"
	var wg sync.WaitGroup
	var floodOut bytes.Buffer
	wg.Add(1)
	go func() {
		defer wg.Done()
		l.Download(context.Background(), flood, "floodAAAAAA", "best", jobDir(t, root, flood), &floodOut, nil)
	}()
	time.Sleep(200 * time.Millisecond) // the flood starts first; the asker waits 1 s more itself
	var out bytes.Buffer
	o, err := l.Download(context.Background(), ask, "askAAAAAAAA", "best", jobDir(t, root, ask), &out, nil)
	wg.Wait()
	if err != nil || o.ExitCode != 0 {
		t.Fatalf("download: %v %+v\n%s", err, o, out.String())
	}
	if got := strings.TrimSpace(out.String()); !strings.HasPrefix(got, "HTTP/1.1 407 ") {
		t.Errorf("the second download's request got %q, want the proxy's 407 (no credentials); the flood: %q", got, floodOut.String())
	}
}
