//go:build breach

// Command ytkeep-breach is the assume-breach suite's attack runner (test
// builds only). "ytkeep-breach all URL" runs every attempt of the catalog,
// each in its own subprocess, and posts the JSON report to URL, the one
// channel a downloader has: its allowed media port.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"

	"github.com/ytkeep/ytkeep/internal/breach"
)

func main() {
	// Installed setuid root by the suite (B32): it only tells its
	// effective uid, and refuses anything else while privileged.
	if len(os.Args) == 2 && os.Args[1] == "whoami" {
		fmt.Printf("euid=%d\n", os.Geteuid())
		return
	}
	if os.Geteuid() != os.Getuid() {
		os.Exit(2)
	}
	if len(os.Args) == 3 && os.Args[1] == "attempt" {
		breach.RunOne(os.Args[2])
		return
	}
	if (len(os.Args) != 3 && len(os.Args) != 4) || os.Args[1] != "all" {
		fmt.Fprintln(os.Stderr, "usage: ytkeep-breach all REPORT-URL [PROXY-URL] | attempt ID")
		os.Exit(2)
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	report, _ := json.Marshal(breach.RunAll(self))
	client := http.DefaultClient
	if len(os.Args) == 4 {
		// A download's only way out is the egress proxy: tunnel through
		// it to the media server (the one test origin it reaches).
		client = tunnelClient(os.Args[3])
	}
	resp, err := client.Post(os.Args[2], "application/json", bytes.NewReader(report))
	if err != nil {
		fmt.Fprintln(os.Stderr, "could not send the report:", err)
		os.Exit(1)
	}
	resp.Body.Close()
	os.Exit(1) // a "download" that failed, as far as the worker knows
}

// tunnelClient returns a client whose every connection is a CONNECT
// tunnel through the egress proxy at proxyURL (http://user:token@host:port),
// so that plain http requests go inside it.
func tunnelClient(proxyURL string) *http.Client {
	u, err := url.Parse(proxyURL)
	if err != nil || u.User == nil {
		fmt.Fprintln(os.Stderr, "bad proxy URL")
		os.Exit(2)
	}
	token, _ := u.User.Password()
	auth := base64.StdEncoding.EncodeToString([]byte(u.User.Username() + ":" + token))
	dial := func(ctx context.Context, _, addr string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", u.Host)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nProxy-Authorization: Basic %s\r\n\r\n", addr, auth)
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusOK {
			c.Close()
			return nil, fmt.Errorf("proxy refused the tunnel: %v", err)
		}
		return c, nil
	}
	return &http.Client{Transport: &http.Transport{DialContext: dial}}
}
