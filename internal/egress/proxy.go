package egress

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Event reports one connection the proxy made or refused.
type Event struct {
	Job, Video string // "" when the request named no job the proxy knows
	Host       string
	Port       uint16
	Addr       string // the address connected to
	Up, Down   int64  // bytes relayed to and from it
	Refused    string // why it was refused; "" when it was made
}

// Proxy is the egress proxy. Register each job before its child runs;
// Serve answers the children. It is safe for concurrent use.
type Proxy struct {
	Policy Policy
	// MaxConns caps one job's connections open at once; MaxBytes the
	// bytes one job relays in all (both directions).
	MaxConns int
	MaxBytes int64
	// Report receives every connection made (when it ends) and every
	// refusal. It must not block for long.
	Report func(Event)
	// Resolve and Dial default to the system resolver and a TCP dialer
	// (never MPTCP); tests replace them.
	Resolve func(ctx context.Context, host string) ([]netip.Addr, error)
	Dial    func(ctx context.Context, addr string) (net.Conn, error)
	// HeadTimeout bounds reading a request head (default 10 s).
	HeadTimeout time.Duration
	// Peer, if set, vets each connection's other end as it is accepted,
	// before it holds anything: the downloader passes a check that it
	// is its own user (LoopbackPeerUID). A refused one is closed.
	Peer func(net.Conn) error

	mu   sync.Mutex
	jobs map[string]*jobState // by token
}

type jobState struct {
	id, video string
	conns     atomic.Int32
	bytes     atomic.Int64
}

// Credentials are what a child puts in its proxy URL: the job it runs for.
type Credentials struct{ User, Token string }

// Register makes credentials for job id (downloading video) and returns
// them with the function that forgets them, once the child is gone.
func (p *Proxy) Register(id, video string) (Credentials, func()) {
	b := make([]byte, 24)
	rand.Read(b)
	token := hex.EncodeToString(b)
	p.mu.Lock()
	if p.jobs == nil {
		p.jobs = map[string]*jobState{}
	}
	p.jobs[token] = &jobState{id: id, video: video}
	p.mu.Unlock()
	return Credentials{User: "job", Token: token}, func() {
		p.mu.Lock()
		delete(p.jobs, token)
		p.mu.Unlock()
	}
}

// Serve answers connections on ln until it is closed.
func (p *Proxy) Serve(ln net.Listener) error {
	if err := p.Policy.Check(); err != nil {
		return err
	}
	heads := make(chan struct{}, MaxPendingHeads)
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of descriptors (EMFILE, ENFILE) and the like pass:
			// wait a little and go on, as net/http does.
			var ne net.Error
			if errors.As(err, &ne) || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		if p.Peer != nil {
			if err := p.Peer(c); err != nil {
				c.Close()
				p.report(Event{Refused: "not a download: " + err.Error()})
				continue
			}
		}
		select {
		case heads <- struct{}{}:
		default:
			// Too many connections still sending their request head:
			// refuse this one at once rather than hold a descriptor.
			c.Close()
			p.report(Event{Refused: fmt.Sprintf("over %d connections waiting for a request", MaxPendingHeads)})
			continue
		}
		go p.handle(c, heads)
	}
}

// MaxPendingHeads caps the connections, all jobs together, whose request
// head has not been read yet: an unauthenticated child (or any local
// user) cannot hold the proxy's descriptors.
const MaxPendingHeads = 64

func (p *Proxy) report(e Event) {
	if p.Report != nil {
		p.Report(e)
	}
}

// handle serves one child connection: one request, then a tunnel (or, for
// the test origin, one relayed GET).
func (p *Proxy) handle(c net.Conn, heads chan struct{}) {
	defer c.Close()
	released := false
	release := func() {
		if !released {
			released = true
			<-heads
		}
	}
	defer release()
	timeout := p.HeadTimeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	c.SetDeadline(time.Now().Add(timeout))
	br := bufio.NewReaderSize(c, 4096)
	head, err := readHead(br)
	if err != nil {
		p.refuse(c, Event{Refused: err.Error()}, "400 Bad Request")
		return
	}
	req, err := ParseRequest(head)
	if err != nil {
		p.refuse(c, Event{Refused: err.Error()}, "400 Bad Request")
		return
	}
	release() // the head is read: the connection now counts against its job
	ev := Event{Host: req.Host, Port: req.Port}
	p.mu.Lock()
	j := p.jobs[req.Token]
	p.mu.Unlock()
	if j == nil || req.User != "job" {
		p.refuse(c, withReason(ev, "no job with these credentials"), "407 Proxy Authentication Required")
		return
	}
	ev.Job, ev.Video = j.id, j.video
	if n := j.conns.Add(1); p.MaxConns > 0 && int(n) > p.MaxConns {
		j.conns.Add(-1)
		p.refuse(c, withReason(ev, fmt.Sprintf("over %d connections at once", p.MaxConns)), "503 Service Unavailable")
		return
	}
	defer j.conns.Add(-1)
	if p.MaxBytes > 0 && j.bytes.Load() >= p.MaxBytes {
		p.refuse(c, withReason(ev, "byte budget spent"), "503 Service Unavailable")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	addr, err := p.destination(ctx, req)
	if err != nil {
		p.refuse(c, withReason(ev, err.Error()), "403 Forbidden")
		return
	}
	ev.Addr = addr
	up, err := p.dial(ctx, addr)
	if err != nil {
		p.refuse(c, withReason(ev, "couldn't connect: "+causeOf(err)), "502 Bad Gateway")
		return
	}
	defer up.Close()
	c.SetDeadline(time.Time{})
	if req.Connect {
		if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
			return
		}
	} else {
		var b strings.Builder
		fmt.Fprintf(&b, "GET %s HTTP/1.1\r\n", req.Path)
		for _, h := range req.Header {
			b.WriteString(h + "\r\n")
		}
		b.WriteString("Connection: close\r\n\r\n")
		n, err := io.WriteString(up, b.String())
		ev.Up = int64(n)
		j.bytes.Add(int64(n))
		if err != nil {
			return
		}
	}
	upBytes, down := p.relay(j, c, br, up)
	ev.Up, ev.Down = ev.Up+upBytes, down
	if p.MaxBytes > 0 && j.bytes.Load() > p.MaxBytes {
		ev.Refused = "byte budget spent (cut off)"
	}
	p.report(ev)
}

func withReason(e Event, why string) Event { e.Refused = why; return e }

// refuse reports e, then answers status and closes (the report comes
// first: by the time the child reads the answer, the refusal is on record).
func (p *Proxy) refuse(c net.Conn, e Event, status string) {
	p.report(e)
	c.SetWriteDeadline(time.Now().Add(5 * time.Second)) // the head's may have passed
	io.WriteString(c, "HTTP/1.1 "+status+"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
}

// readHead reads up to and including the empty line that ends a request
// head, at most MaxHead bytes.
func readHead(br *bufio.Reader) ([]byte, error) {
	var head []byte
	for {
		line, err := br.ReadSlice('\n')
		head = append(head, line...)
		if len(head) > MaxHead {
			return nil, errors.New("bad proxy request: head too long")
		}
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				continue
			}
			return nil, errors.New("bad proxy request: no complete head")
		}
		if string(line) == "\r\n" {
			return head, nil
		}
	}
}

// destination decides the address to connect to: the test origin as is,
// or an allowed name resolved here, every one of whose addresses must be
// public (a name that also resolves to a private address is refused, so
// that no answer order or rebinding can reach one). The proxy then
// connects to exactly the address it checked.
func (p *Proxy) destination(ctx context.Context, req *Request) (string, error) {
	if p.Policy.isTestOrigin(req.Host, req.Port) {
		return net.JoinHostPort(req.Host, strconv.Itoa(int(req.Port))), nil
	}
	if !req.Connect {
		return "", errors.New("plain http is not allowed")
	}
	if err := p.Policy.allowName(req.Host, req.Port); err != nil {
		return "", err
	}
	resolve := p.Resolve
	if resolve == nil {
		resolve = func(ctx context.Context, host string) ([]netip.Addr, error) {
			// Fully qualified: no search domain of this host's is
			// tried after a name that does not exist.
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host+".")
		}
	}
	ips, err := resolve(ctx, req.Host)
	if err != nil || len(ips) == 0 {
		return "", fmt.Errorf("%s does not resolve", req.Host)
	}
	for _, ip := range ips {
		if !Public(ip) {
			return "", fmt.Errorf("%s resolves to a non-public address %s", req.Host, ip)
		}
	}
	return net.JoinHostPort(ips[0].Unmap().String(), strconv.Itoa(int(req.Port))), nil
}

func (p *Proxy) dial(ctx context.Context, addr string) (net.Conn, error) {
	if p.Dial != nil {
		return p.Dial(ctx, addr)
	}
	d := net.Dialer{Timeout: 10 * time.Second}
	d.SetMultipathTCP(false) // Landlock's port rules do not cover MPTCP
	return d.DialContext(ctx, "tcp", addr)
}

// relay copies both ways until either side ends, counting bytes against
// the job's budget and cutting both sides off once it is spent.
func (p *Proxy) relay(j *jobState, c net.Conn, fromChild io.Reader, up net.Conn) (upBytes, down int64) {
	var wg sync.WaitGroup
	wg.Add(2)
	var once sync.Once
	stop := func() { once.Do(func() { c.Close(); up.Close() }) }
	pipe := func(dst io.Writer, src io.Reader, n *int64) {
		defer wg.Done()
		defer stop()
		buf := make([]byte, 32<<10)
		for {
			k, err := src.Read(buf)
			if k > 0 {
				*n += int64(k)
				total := j.bytes.Add(int64(k))
				if _, werr := dst.Write(buf[:k]); werr != nil {
					return
				}
				if p.MaxBytes > 0 && total > p.MaxBytes {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	go pipe(up, fromChild, &upBytes)
	if dst, ok := c.(*net.TCPConn); ok {
		if src, ok := up.(*net.TCPConn); ok {
			// The download's way, where the bytes are: spliced in the
			// kernel, never copied through this process (Linux), a
			// megabyte at a time so the budget is checked as it goes.
			go func() {
				defer wg.Done()
				defer stop()
				for {
					chunk := int64(1 << 20)
					if p.MaxBytes > 0 {
						// Never past the budget by more than a byte.
						chunk = min(chunk, p.MaxBytes-j.bytes.Load()+1)
					}
					if chunk <= 0 {
						return
					}
					k, err := dst.ReadFrom(&io.LimitedReader{R: src, N: chunk})
					down += k
					total := j.bytes.Add(k)
					if err != nil || k == 0 || (p.MaxBytes > 0 && total > p.MaxBytes) {
						return
					}
				}
			}()
			wg.Wait()
			return upBytes, down
		}
	}
	go pipe(c, up, &down)
	wg.Wait()
	return upBytes, down
}

// causeOf is err's innermost message, without addresses a caller may not
// want logged twice.
func causeOf(err error) string {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err.Error()
		}
		err = u
	}
}
