package httpjson

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// invoke calls method ("/pkg.Service/Method") with req through the
// transcoder as a gRPC-Web call that carries r's headers (credentials,
// trace context), context, remote address and TLS state, so that the gRPC
// server authenticates, authorizes, logs and traces it like any other call.
// It passes each response message, binary protobuf, to onMsg; an error from
// onMsg ends the call. It returns the call's status.
func (h *Handler) invoke(r *http.Request, method string, req proto.Message, onMsg func([]byte) error) *status.Status {
	msg, err := proto.Marshal(req)
	if err != nil {
		return status.Newf(codes.Internal, "httpjson: encoding %s request: %v", method, err)
	}
	body := make([]byte, 5+len(msg))
	binary.BigEndian.PutUint32(body[1:5], uint32(len(msg)))
	copy(body[5:], msg)

	in := r.Clone(r.Context())
	in.Method = http.MethodPost
	in.URL = &url.URL{Path: method}
	in.RequestURI = ""
	for _, k := range []string{"Content-Type", "Content-Length", "Content-Encoding", "Accept", "Accept-Encoding",
		"Grpc-Encoding", "Grpc-Accept-Encoding", "Connection", "Te", "Upgrade"} {
		in.Header.Del(k)
	}
	in.Header.Set("Content-Type", "application/grpc-web+proto")
	in.Body = io.NopCloser(bytes.NewReader(body))
	in.ContentLength = int64(len(body))

	fw := &frameWriter{header: http.Header{}, onMsg: onMsg}
	h.transcoder.ServeHTTP(fw, in)
	fw.mu.Lock()
	defer fw.mu.Unlock()
	fw.done = true
	switch {
	case fw.err != nil && r.Context().Err() != nil:
		return status.New(codes.Canceled, "httpjson: the client went away")
	case fw.err != nil:
		return status.New(codes.Internal, fw.err.Error())
	case fw.trailer != nil:
		return statusFrom(fw.trailer)
	case fw.header.Get("Grpc-Status") != "": // a trailers-only response
		return statusFrom(fw.header)
	}
	code := codes.Unknown
	switch fw.code {
	case http.StatusUnauthorized:
		code = codes.Unauthenticated
	case http.StatusForbidden:
		code = codes.PermissionDenied
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		code = codes.Unavailable
	case http.StatusOK, 0:
		code = codes.Internal
	}
	return status.Newf(code, "httpjson: %s answered HTTP %d without a gRPC status: %.200s", method, fw.code, fw.buf)
}

// statusFrom reads grpc-status, grpc-message and grpc-status-details-bin.
func statusFrom(h http.Header) *status.Status {
	code, err := strconv.Atoi(h.Get("Grpc-Status"))
	if err != nil {
		return status.Newf(codes.Internal, "httpjson: the gRPC server sent grpc-status %q", h.Get("Grpc-Status"))
	}
	if bin := h.Get("Grpc-Status-Details-Bin"); bin != "" {
		raw, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(bin, "="))
		if err == nil {
			p := new(spb.Status)
			if proto.Unmarshal(raw, p) == nil && p.GetCode() == int32(code) {
				return status.FromProto(p)
			}
		}
	}
	msg, err := url.PathUnescape(h.Get("Grpc-Message"))
	if err != nil {
		msg = h.Get("Grpc-Message")
	}
	return status.New(codes.Code(code), msg)
}

// frameWriter is the http.ResponseWriter of an in-process gRPC-Web call: it
// splits the body into frames as they are written, passing messages to
// onMsg and keeping the trailers.
type frameWriter struct {
	header  http.Header
	code    int
	onMsg   func([]byte) error
	buf     []byte
	trailer http.Header
	err     error

	mu   sync.Mutex // Write may be called from the transcoder's goroutines
	done bool
}

func (f *frameWriter) Header() http.Header { return f.header }

func (f *frameWriter) WriteHeader(code int) {
	if f.code == 0 {
		f.code = code
	}
}

func (f *frameWriter) Flush() {}

func (f *frameWriter) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done {
		return 0, errors.New("httpjson: write after the call ended")
	}
	if f.err != nil {
		return 0, f.err
	}
	if f.code == 0 {
		f.code = http.StatusOK
	}
	f.buf = append(f.buf, p...)
	if f.code != http.StatusOK {
		return len(p), nil // an HTTP error body; invoke reports it
	}
	for len(f.buf) >= 5 {
		flag, n := f.buf[0], binary.BigEndian.Uint32(f.buf[1:5])
		if uint64(len(f.buf)-5) < uint64(n) {
			break
		}
		frame := f.buf[5 : 5+n]
		switch {
		case flag&0x80 != 0:
			f.trailer = parseTrailer(frame)
		case flag&0x01 != 0:
			f.err = errors.New("httpjson: the gRPC server sent a compressed message, which was not asked for")
		default:
			if err := f.onMsg(frame); err != nil {
				f.err = err
			}
		}
		f.buf = f.buf[5+n:]
		if f.err != nil {
			return 0, f.err
		}
	}
	return len(p), nil
}

// parseTrailer reads a gRPC-Web trailer frame: HTTP/1 header lines.
func parseTrailer(b []byte) http.Header {
	h := http.Header{}
	for line := range strings.SplitSeq(string(b), "\r\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		h.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	return h
}
