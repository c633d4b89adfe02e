package emulator

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// connMux shares one TCP port between gRPC and plain HTTP: a connection
// that opens with the HTTP/2 client preface ("PRI * HTTP/2.0", which every
// gRPC client sends at once) goes to grpc, any other to http (the JWKS
// endpoint, HTTP/1.1). Only the first three bytes are read to decide.
type connMux struct {
	lis  net.Listener
	grpc *chanListener
	http *chanListener
}

func newConnMux(lis net.Listener) *connMux {
	done := make(chan struct{})
	var once sync.Once
	closeAll := func() error {
		once.Do(func() { close(done) })
		return lis.Close()
	}
	return &connMux{
		lis:  lis,
		grpc: &chanListener{conns: make(chan net.Conn), done: done, addr: lis.Addr(), close: closeAll},
		http: &chanListener{conns: make(chan net.Conn), done: done, addr: lis.Addr(), close: closeAll},
	}
}

// run accepts until the listener is closed (by either side's Close).
func (m *connMux) run() {
	for {
		c, err := m.lis.Accept()
		if err != nil {
			_ = m.grpc.close()
			return
		}
		go m.route(c)
	}
}

func (m *connMux) route(c net.Conn) {
	var head [3]byte
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, head[:]); err != nil {
		c.Close()
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	pc := &peekedConn{Conn: c, head: head[:]}
	to := m.http
	if bytes.Equal(head[:], []byte("PRI")) {
		to = m.grpc
	}
	select {
	case to.conns <- pc:
	case <-to.done:
		c.Close()
	}
}

// peekedConn gives back the bytes read to route it before reading on.
type peekedConn struct {
	net.Conn
	head []byte
}

func (c *peekedConn) Read(p []byte) (int, error) {
	if len(c.head) > 0 {
		n := copy(p, c.head)
		c.head = c.head[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// chanListener is a net.Listener fed by connMux.
type chanListener struct {
	conns chan net.Conn
	done  chan struct{}
	addr  net.Addr
	close func() error
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	err := l.close()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

func (l *chanListener) Addr() net.Addr { return l.addr }
