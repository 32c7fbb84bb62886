package egress

import (
	"net/netip"
	"testing"
)

func TestPublic(t *testing.T) {
	for _, tt := range []struct {
		ip     string
		public bool
	}{
		{"142.250.185.14", true}, {"8.8.8.8", true}, {"2607:f8b0:4004:c1b::be", true}, {"2a00:1450:4001:82b::200e", true},
		{"169.254.169.254", false}, // cloud metadata
		{"127.0.0.1", false}, {"127.8.9.10", false}, {"0.0.0.0", false}, {"10.1.2.3", false}, {"172.16.0.1", false},
		{"172.31.255.255", false}, {"192.168.1.1", false}, {"100.64.0.1", false}, {"100.127.255.255", false},
		{"192.0.2.1", false}, {"198.18.0.1", false}, {"224.0.0.251", false}, {"239.255.255.250", false},
		{"255.255.255.255", false}, {"240.0.0.1", false},
		{"::", false}, {"::1", false}, {"fe80::1", false}, {"fc00::1", false}, {"fd12:3456::1", false},
		{"ff02::1", false}, {"2001:db8::1", false},
		{"::ffff:127.0.0.1", false}, {"::ffff:169.254.169.254", false}, {"::ffff:8.8.8.8", true},
		{"64:ff9b::a9fe:a9fe", false}, {"64:ff9b::808:808", true}, // NAT64 of 169.254.169.254 and 8.8.8.8
		{"2002:a9fe:a9fe::1", false}, {"2002:808:808::1", true}, // 6to4
		{"::a9fe:a9fe", false}, // IPv4-compatible
		{"2001::1", false},     // Teredo
		{"::ffff:0:a9fe:a9fe", false}, {"3fff::1", false}, {"5f00::1", false},
	} {
		if got := Public(netip.MustParseAddr(tt.ip)); got != tt.public {
			t.Errorf("Public(%s) = %v, want %v", tt.ip, got, tt.public)
		}
	}
}

func TestAllowName(t *testing.T) {
	p := &Policy{Hosts: DefaultHosts, Ports: []uint16{443}}
	if err := p.Check(); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		host string
		port uint16
		ok   bool
	}{
		{"www.youtube.com", 443, true}, {"youtube.com", 443, true}, {"m.youtube.com", 443, true}, {"youtu.be", 443, true},
		{"rr3---sn-4g5e6nze.googlevideo.com", 443, true}, {"i.ytimg.com", 443, true}, {"yt3.ggpht.com", 443, true},
		{"www.youtube.com", 80, false}, {"www.youtube.com", 22, false},
		{"googlevideo.com", 443, false}, // the pattern is *.googlevideo.com
		{"evil.com", 443, false}, {"youtube.com.evil.com", 443, false}, {"evilyoutube.com", 443, false},
		{"notgooglevideo.com", 443, false}, {"142.250.185.14", 443, false}, {"::1", 443, false},
	} {
		if err := p.allowName(tt.host, tt.port); (err == nil) != tt.ok {
			t.Errorf("allowName(%s, %d) = %v, want ok=%v", tt.host, tt.port, err, tt.ok)
		}
	}
}

func TestPolicyCheck(t *testing.T) {
	for _, bad := range []Policy{
		{Hosts: DefaultHosts},
		{Hosts: []string{"*"}, Ports: []uint16{443}},
		{Hosts: []string{"*.com"}, Ports: []uint16{443}},
		{Hosts: []string{"Example.com"}, Ports: []uint16{443}},
		{Hosts: DefaultHosts, Ports: []uint16{443}, TestOrigin: "10.0.0.1:80"},
		{Hosts: DefaultHosts, Ports: []uint16{443}, TestOrigin: "localhost:80"},
	} {
		if err := bad.Check(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}
