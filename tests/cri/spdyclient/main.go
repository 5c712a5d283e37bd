// spdyclient: the client half of Kubernetes' SPDY/3.1 streaming protocols, for the tests.
//
// It is what kubectl and the kubelet's proxy do, built on moby/spdystream (the library
// client-go's SPDY transport uses; Debian packages it, client-go it does not): the HTTP
// upgrade with X-Stream-Protocol-Version, then one SPDY stream per standard stream
// (remotecommand: exec and attach) or an error+data pair of streams per forwarded
// connection (portforward.k8s.io). It prints one JSON report on stdout.
//
//	spdyclient [flags] exec URL [ACTION...]      (attach is the same protocol)
//	spdyclient [flags] portforward URL
//
// ACTIONs run in order once the streams exist: stdin:TEXT, resize:WxH, wait:TEXT (until
// stdout holds TEXT), eof (close stdin), ping, sleep:MS, quit (leave without waiting for
// the outcome).
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/moby/spdystream"
)

type report struct {
	Status    int               `json:"status"`
	Body      string            `json:"body,omitempty"`
	Headers   map[string]string `json:"headers,omitempty"`
	Protocol  string            `json:"protocol"`
	Stdout    []byte            `json:"stdout"`
	Stderr    []byte            `json:"stderr"`
	Error     []byte            `json:"error"`
	Refused   []string          `json:"refused,omitempty"`
	Pinged    bool              `json:"pinged,omitempty"`
	Forwards  []forward         `json:"forwards,omitempty"`
	Failure   string            `json:"failure,omitempty"`
	StdinSent int               `json:"stdin_sent,omitempty"`
}

type forward struct {
	Data  []byte `json:"data"`
	Error []byte `json:"error"`
}

// lockedBuffer collects a stream's bytes while actions look at them.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.buf.Bytes()...)
}

// bufConn reads through the reader that parsed the HTTP response: SPDY frames the
// server sent right after its 101 may already sit in it.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }

var (
	protocols = flag.String("protocols", "v4.channel.k8s.io", "X-Stream-Protocol-Version values, comma-separated ('' sends none)")
	upgrade   = flag.String("upgrade", "SPDY/3.1", "the Upgrade header")
	method    = flag.String("method", "GET", "the request's method (kubectl's exec and attach POST)")
	stdin     = flag.Bool("stdin", false, "open a stdin stream")
	stdout    = flag.Bool("stdout", false, "open a stdout stream")
	stderr    = flag.Bool("stderr", false, "open a stderr stream")
	tty       = flag.Bool("tty", false, "a terminal: open a resize stream (v3 and later)")
	port      = flag.Int("port", 0, "portforward: the port")
	count     = flag.Int("count", 1, "portforward: forwarded connections at once on the one SPDY connection")
	send      = flag.String("send", "", "portforward: what each connection sends")
	upload    = flag.Int("upload", 0, "exec: bytes of 'x' to send on stdin before the actions")
	extra     = flag.String("stream", "", "exec: also create a stream of this streamType")
)

func main() {
	flag.Parse()
	args := flag.Args()
	if len(args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: spdyclient [flags] exec|portforward URL [ACTION...]")
		os.Exit(2)
	}
	rep := &report{}
	conn, err := dial(args[1], rep)
	if err == nil && conn != nil {
		if args[0] == "portforward" {
			err = portForward(conn, rep)
		} else {
			err = remoteCommand(conn, rep, args[2:])
		}
	}
	if err != nil {
		rep.Failure = err.Error()
	}
	out, _ := json.Marshal(rep)
	fmt.Println(string(out))
}

// dial sends the upgrade request; a nil connection (and no error) when refused.
func dial(raw string, rep *report) (*spdystream.Connection, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	nc, err := net.DialTimeout("tcp", u.Host, 10*time.Second)
	if err != nil {
		return nil, err
	}
	req, _ := http.NewRequest(*method, raw, nil)
	req.Header.Set("Connection", "Upgrade")
	if *upgrade != "" {
		req.Header.Set("Upgrade", *upgrade)
	}
	for _, p := range strings.Split(*protocols, ",") {
		if p != "" {
			req.Header.Add("X-Stream-Protocol-Version", p)
		}
	}
	if err := req.Write(nc); err != nil {
		return nil, err
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return nil, err
	}
	rep.Status = resp.StatusCode
	rep.Protocol = resp.Header.Get("X-Stream-Protocol-Version")
	rep.Headers = map[string]string{}
	for k := range resp.Header {
		rep.Headers[strings.ToLower(k)] = strings.Join(resp.Header.Values(k), ",")
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(resp.Body)
		rep.Body = string(body)
		nc.Close()
		return nil, nil
	}
	if !strings.Contains(strings.ToLower(resp.Header.Get("Connection")), "upgrade") ||
		!strings.EqualFold(resp.Header.Get("Upgrade"), "SPDY/3.1") {
		return nil, fmt.Errorf("not an SPDY/3.1 upgrade: %v", resp.Header)
	}
	sc, err := spdystream.NewConnection(&bufConn{Conn: nc, r: br}, false)
	if err != nil {
		return nil, err
	}
	go sc.Serve(spdystream.NoOpStreamHandler)
	return sc, nil
}

func create(conn *spdystream.Connection, headers http.Header) (*spdystream.Stream, error) {
	s, err := conn.CreateStream(headers, nil, false)
	if err != nil {
		return nil, err
	}
	if err := s.WaitTimeout(30 * time.Second); err != nil {
		return nil, err
	}
	return s, nil
}

// closeAll ends the connection as client-go does: reset every stream, then go away.
func closeAll(conn *spdystream.Connection, streams ...*spdystream.Stream) {
	for _, s := range streams {
		if s != nil {
			s.Reset()
		}
	}
	conn.Close()
}

func remoteCommand(conn *spdystream.Connection, rep *report, actions []string) error {
	var streams []*spdystream.Stream
	defer func() { closeAll(conn, streams...) }()
	mk := func(kind string) (*spdystream.Stream, error) {
		h := http.Header{}
		h.Set("streamType", kind)
		s, err := create(conn, h)
		if err != nil {
			return nil, fmt.Errorf("creating the %s stream: %v", kind, err)
		}
		streams = append(streams, s)
		return s, nil
	}
	errStream, err := mk("error")
	if err != nil {
		return err
	}
	var in, out, errOut, resize *spdystream.Stream
	if *stdin {
		if in, err = mk("stdin"); err != nil {
			return err
		}
	}
	if *stdout {
		if out, err = mk("stdout"); err != nil {
			return err
		}
	}
	if *stderr {
		if errOut, err = mk("stderr"); err != nil {
			return err
		}
	}
	if *tty && rep.Protocol != "v2.channel.k8s.io" && rep.Protocol != "channel.k8s.io" {
		if resize, err = mk("resize"); err != nil {
			return err
		}
	}
	if *extra != "" {
		if _, err := mk(*extra); err != nil {
			rep.Refused = append(rep.Refused, *extra)
		}
	}
	var wg sync.WaitGroup
	var outBuf, errBuf, statusBuf lockedBuffer
	drain := func(s *spdystream.Stream, into io.Writer) {
		if s == nil {
			return
		}
		wg.Add(1)
		go func() { defer wg.Done(); io.Copy(into, s) }()
	}
	drain(out, &outBuf)
	drain(errOut, &errBuf)
	statusDone := make(chan struct{})
	go func() { io.Copy(&statusBuf, errStream); close(statusDone) }()

	if *upload > 0 && in != nil {
		chunk := bytes.Repeat([]byte("x"), 32768)
		for left := *upload; left > 0; left -= len(chunk) {
			if left < len(chunk) {
				chunk = chunk[:left]
			}
			if _, err := in.Write(chunk); err != nil {
				return err
			}
			rep.StdinSent += len(chunk)
		}
	}
	for _, a := range actions {
		verb, arg, _ := strings.Cut(a, ":")
		switch verb {
		case "stdin":
			if _, err := in.Write([]byte(arg)); err != nil {
				return err
			}
		case "eof":
			in.Close()
		case "resize":
			w, h, _ := strings.Cut(arg, "x")
			wi, _ := strconv.Atoi(w)
			hi, _ := strconv.Atoi(h)
			size, _ := json.Marshal(map[string]int{"Width": wi, "Height": hi})
			if _, err := resize.Write(size); err != nil {
				return err
			}
		case "wait":
			deadline := time.Now().Add(20 * time.Second)
			for !bytes.Contains(outBuf.Bytes(), []byte(arg)) {
				if time.Now().After(deadline) {
					return fmt.Errorf("stdout never showed %q: %q", arg, outBuf.Bytes())
				}
				time.Sleep(20 * time.Millisecond)
			}
		case "ping":
			if _, err := conn.Ping(); err != nil {
				return fmt.Errorf("ping: %v", err)
			}
			rep.Pinged = true
		case "sleep":
			ms, _ := strconv.Atoi(arg)
			time.Sleep(time.Duration(ms) * time.Millisecond)
		case "quit": // leave at once, as a detaching kubectl attach
			rep.Stdout, rep.Stderr = outBuf.Bytes(), errBuf.Bytes()
			return nil
		default:
			return fmt.Errorf("unknown action %q", a)
		}
	}
	// as client-go: the outcome once the error stream ends and the outputs are drained
	select {
	case <-statusDone:
	case <-time.After(60 * time.Second):
		return fmt.Errorf("the error stream did not end")
	}
	wg.Wait()
	rep.Stdout, rep.Stderr, rep.Error = outBuf.Bytes(), errBuf.Bytes(), statusBuf.Bytes()
	return nil
}

func portForward(conn *spdystream.Connection, rep *report) error {
	rep.Forwards = make([]forward, *count)
	var mu sync.Mutex
	var streams []*spdystream.Stream
	defer func() { closeAll(conn, streams...) }()
	errs := make(chan error, *count)
	for i := 0; i < *count; i++ {
		go func(i int) {
			h := http.Header{}
			h.Set("streamType", "error")
			h.Set("port", strconv.Itoa(*port))
			h.Set("requestID", strconv.Itoa(i))
			es, err := create(conn, h)
			if err != nil {
				errs <- fmt.Errorf("creating error stream %d: %v", i, err)
				return
			}
			es.Close() // nothing is written to it, as client-go
			h.Set("streamType", "data")
			ds, err := create(conn, h)
			if err != nil {
				errs <- fmt.Errorf("creating data stream %d: %v", i, err)
				return
			}
			mu.Lock()
			streams = append(streams, es, ds)
			mu.Unlock()
			errText := make(chan []byte)
			go func() { b, _ := io.ReadAll(es); errText <- b }()
			if *send != "" {
				if _, err := ds.Write([]byte(*send)); err != nil {
					errs <- err
					return
				}
			}
			data, _ := io.ReadAll(ds)
			rep.Forwards[i] = forward{Data: data, Error: <-errText}
			errs <- nil
		}(i)
	}
	for i := 0; i < *count; i++ {
		select {
		case err := <-errs:
			if err != nil {
				return err
			}
		case <-time.After(60 * time.Second):
			return fmt.Errorf("port forward timed out")
		}
	}
	return nil
}
