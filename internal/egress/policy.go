package egress

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// DefaultHosts are the names a YouTube download reaches: the web pages and
// the innertube API on youtube.com, short links, the media on
// googlevideo.com, images on ytimg.com and ggpht.com.
var DefaultHosts = []string{
	"youtube.com", "*.youtube.com", "youtu.be", "*.googlevideo.com", "*.ytimg.com", "*.ggpht.com",
}

// Policy says where the proxy may connect.
type Policy struct {
	// Hosts are the names allowed: "example.com" exactly, "*.example.com"
	// any name below it (not example.com itself).
	Hosts []string
	// Ports are the destination ports allowed (production: 443).
	Ports []uint16
	// TestOrigin, in test mode only, is the one loopback "127.0.0.1:port"
	// (the testbed's media server) that may be reached, by CONNECT or by
	// GET. Production never allows loopback.
	TestOrigin string
}

// Check validates the policy itself.
func (p *Policy) Check() error {
	if len(p.Ports) == 0 {
		return fmt.Errorf("egress policy: no port allowed")
	}
	for _, h := range p.Hosts {
		name := strings.TrimPrefix(h, "*.")
		if name != strings.ToLower(name) || !validName(name) || !strings.Contains(name, ".") {
			return fmt.Errorf("egress policy: %q is not a host name or *.name pattern", h)
		}
	}
	if p.TestOrigin != "" {
		ap, err := netip.ParseAddrPort(p.TestOrigin)
		if err != nil || !ap.Addr().IsLoopback() || !ap.Addr().Is4() {
			return fmt.Errorf("egress policy: test origin %q is not a 127.0.0.1 address and port", p.TestOrigin)
		}
	}
	return nil
}

// isTestOrigin reports whether host:port is the test origin.
func (p *Policy) isTestOrigin(host string, port uint16) bool {
	return p.TestOrigin != "" && p.TestOrigin == fmt.Sprintf("%s:%d", host, port)
}

// allowName reports whether a request may name host:port: a listed host
// name (never an IP literal) on an allowed port.
func (p *Policy) allowName(host string, port uint16) error {
	if !slices.Contains(p.Ports, port) {
		return fmt.Errorf("port %d is not allowed", port)
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return fmt.Errorf("an IP address is not a host name")
	}
	for _, h := range p.Hosts {
		if suffix, ok := strings.CutPrefix(h, "*"); ok {
			if strings.HasSuffix(host, suffix) && len(host) > len(suffix) {
				return nil
			}
		} else if host == h {
			return nil
		}
	}
	return fmt.Errorf("%s is not an allowed host", host)
}

// blocked are the address ranges the proxy never connects to: this host,
// the local networks, link-local (cloud metadata services), shared and
// reserved space, documentation ranges, multicast. IPv4-mapped and
// IPv4-embedding IPv6 forms are unwrapped and checked as IPv4.
var blocked = func() []netip.Prefix {
	var ps []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
		"192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15",
		"198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
		"::/128", "::1/128", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32",
		"fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
		"::ffff:0:0:0/96", // IPv4-translated (RFC 2765)
		"3fff::/20",       // documentation (RFC 9637)
		"5f00::/16",       // segment routing SIDs (RFC 9602)
	} {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	return ps
}()

// Public reports whether the proxy may connect to ip: a global unicast
// address outside every blocked range, in any of its forms.
func Public(ip netip.Addr) bool {
	ip = ip.WithZone("")
	switch {
	case ip.Is4In6():
		return Public(ip.Unmap())
	case netip.MustParsePrefix("64:ff9b::/96").Contains(ip): // NAT64
		b := ip.As16()
		return Public(netip.AddrFrom4([4]byte(b[12:16])))
	case netip.MustParsePrefix("2002::/16").Contains(ip): // 6to4
		b := ip.As16()
		return Public(netip.AddrFrom4([4]byte(b[2:6])))
	case netip.MustParsePrefix("::/96").Contains(ip): // IPv4-compatible (deprecated)
		return false
	}
	if !ip.IsValid() || !ip.IsGlobalUnicast() {
		return false
	}
	for _, p := range blocked {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}
