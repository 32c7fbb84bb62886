package egress

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// LoopbackPeerUID returns the user owning the other end of c, a TCP
// connection accepted on an IPv4 loopback address: the kernel's socket
// table (/proc/self/net/tcp) lists that end, with its owner, as a
// connection from c's remote address to its local one. TCP has no
// SO_PEERCRED; this is how the proxy tells its downloads (its own user)
// from any other local user, who could otherwise hold its connections.
func LoopbackPeerUID(c net.Conn) (int, error) {
	remote, err1 := netip.ParseAddrPort(c.RemoteAddr().String())
	local, err2 := netip.ParseAddrPort(c.LocalAddr().String())
	if err1 != nil || err2 != nil || !remote.Addr().Is4() || !local.Addr().Is4() {
		return -1, errors.New("not an IPv4 connection")
	}
	f, err := os.Open("/proc/self/net/tcp")
	if err != nil {
		return -1, err
	}
	defer f.Close()
	want := procAddr(remote) + " " + procAddr(local) + " 01 " // ESTABLISHED
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		_, rest, ok := strings.Cut(line, ": ")
		if !ok || !strings.HasPrefix(rest, want) {
			continue
		}
		// sl: local rem st tx:rx tr:when retrnsmt uid ...
		fields := strings.Fields(rest)
		if len(fields) < 7 {
			break
		}
		uid, err := strconv.Atoi(fields[6])
		if err != nil {
			return -1, fmt.Errorf("socket table: bad uid %q", fields[6])
		}
		return uid, nil
	}
	if err := sc.Err(); err != nil {
		return -1, err
	}
	return -1, errors.New("the connection's other end is not in this network namespace's socket table")
}

// procAddr writes a as /proc/net/tcp does: the address's four bytes as a
// little-endian hex number, then the port in hex.
func procAddr(a netip.AddrPort) string {
	b := a.Addr().As4()
	return fmt.Sprintf("%02X%02X%02X%02X:%04X", b[3], b[2], b[1], b[0], a.Port())
}
