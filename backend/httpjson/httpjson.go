// Package httpjson serves the gRPC services of a backend.Server as
// HTTP/JSON, from their google.api.http annotations (proto/courier/v1):
//
//	POST /v1/jobs                  EnqueueJob (body: EnqueueJobRequest)
//	POST /v1/jobs:batchEnqueue     EnqueueJobs (body: EnqueueJobsRequest)
//	GET  /v1/jobs/{id}             GetJob
//	POST /v1/jobs/{id}:cancel      CancelJob
//	GET  /v1/jobs                  ListJobs (?type=&state=&pageSize=&pageToken=&labels[K]=V)
//	GET  /v1/jobs/{id}:watch       WatchJob, as server-sent events
//	GET  /v1/jobs:count            CountJobs (?type=)
//	GET  /v1/deadLetters           ListDeadLetters (?type=&pageSize=)
//	POST /v1/deadLetters:replay    ReplayDeadLetters (body: ReplayDeadLettersRequest)
//	GET  /v1/hello?name=NAME       hello.v1.Hello/SayHello
//
// Bodies are protojson (lowerCamelCase field names, every field present).
// A request body is JSON; a body sent as curl -d sends it (no type, or the
// form type) is read as JSON too. Unknown fields are errors. An error is a
// google.rpc.Status as JSON with the HTTP status of its code (NotFound 404,
// InvalidArgument and FailedPrecondition 400, Unauthenticated 401,
// PermissionDenied 403, ResourceExhausted 429, Unavailable 503, ...).
//
// # Why Vanguard
//
// The transcoding is connectrpc.com/vanguard's, in process, onto the gRPC
// server's own handler (backend.Server.GRPCHandler): every HTTP/JSON request
// becomes a gRPC call of the very same server, so it runs through the very
// same interceptors. Authentication (a bearer token in Authorization,
// X-WEBAUTH-USER/X-WEBAUTH-ROLES trusted by the caller's real address, the
// client certificate when the HTTP server has TLS), authorization (the same
// per-service policies, deny by default), the RPC log and tracing are one
// code path, not two kept in step. It needs no code generation beyond the
// annotations. grpc-gateway, the alternative, generates handlers that either
// call the service implementation directly (skipping the interceptors, and
// without streaming) or dial the gRPC server as a client, where the server
// sees the gateway instead of the caller: its address, which trusted proxies
// are checked against, and its certificate are lost.
//
// # Watch: server-sent events
//
// Vanguard's REST side streams only google.api.HttpBody responses, so this
// package serves WatchJob itself, as server-sent events (text/event-stream):
// an "event: job" whose data is the Job as protojson, for the current state
// and each change, until a terminal state ends the stream; an "event: error"
// whose data is a google.rpc.Status if the watch fails after it started
// (e.g. Unavailable when the server shuts down); a ": keepalive" comment
// while nothing changes, so that proxies do not cut an idle stream. An error
// before the first event is an ordinary JSON error with its HTTP status.
// SSE rather than chunked JSON because it is a standard framing that
// browsers (EventSource), curl -N and proxies know: each event is delimited,
// typed and flushed on its own, and proxies that recognise text/event-stream
// do not buffer it. The call itself is the same gRPC call as a gRPC client's
// WatchJob, made in process as gRPC-Web through the transcoder, carrying the
// request's headers, address and TLS state.
//
// It is for the HTTP port of a courier Node (package courier) and servers
// like it. It is not a client (callers use curl or any HTTP library), and not
// the dashboard.
package httpjson

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/vanguard"
	"google.golang.org/genproto/googleapis/api/annotations"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/courierq/courier/backend"
	courierv1 "github.com/courierq/courier/proto/courier/v1"
)

// Prefix is the path prefix of every route this package serves; mount the
// Handler there.
const Prefix = "/v1/"

// Resolver finds message types by name and URL: the payload and result
// types inside google.protobuf.Any fields, and error details.
type Resolver interface {
	protoregistry.MessageTypeResolver
	protoregistry.ExtensionTypeResolver
}

// Config configures a Handler.
type Config struct {
	// Server is the gRPC server whose services are served. Required. Of its
	// services, those whose descriptors are in protoregistry.GlobalFiles
	// (generated code) are served; their routes should start with Prefix.
	Server *backend.Server
	// MaxMessageBytes bounds a request or response body. 0 means 32 MiB:
	// room for a payload at Pub/Sub's 10 MB limit written as JSON (base64
	// grows bytes by a third). Larger bodies are refused.
	MaxMessageBytes int
	// KeepAlive is how often a watch stream with nothing to report sends a
	// comment line. 0 means 15s.
	KeepAlive time.Duration
	// Resolver resolves the types inside Any fields. Nil means
	// protoregistry.GlobalTypes (every type compiled into the program).
	Resolver Resolver
	// Logger receives this package's own log (the RPC log is the gRPC
	// server's). Nil means slog.Default().
	Logger *slog.Logger
}

// Handler serves HTTP/JSON onto a backend.Server. Make one with New.
type Handler struct {
	transcoder *vanguard.Transcoder
	json       protojson.MarshalOptions
	resolver   Resolver
	keepAlive  time.Duration
	log        *slog.Logger
	hasJobs    bool
}

const (
	watchMethod = "/courier.v1.JobService/WatchJob"
	// listByLabelsPath is an internal route of ListJobs whose body is the
	// labels map: GET /v1/jobs with labels[K]=V parameters is served through
	// it, because query parameters cannot fill a map field in Vanguard.
	listByLabelsPath = "/v1/jobs:listByLabels"
)

// New builds the transcoder for cfg.Server's services. It does no I/O.
func New(cfg Config) (*Handler, error) {
	if cfg.Server == nil {
		return nil, errors.New("httpjson: Config.Server is nil; pass the backend.Server whose services to serve")
	}
	if cfg.MaxMessageBytes < 0 {
		return nil, fmt.Errorf("httpjson: MaxMessageBytes %d is negative; use 0 for 32 MiB", cfg.MaxMessageBytes)
	}
	if cfg.MaxMessageBytes == 0 {
		cfg.MaxMessageBytes = 32 << 20
	}
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = 15 * time.Second
	}
	if cfg.Resolver == nil {
		cfg.Resolver = protoregistry.GlobalTypes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	h := &Handler{
		json:      protojson.MarshalOptions{Resolver: cfg.Resolver, EmitUnpopulated: true},
		resolver:  cfg.Resolver,
		keepAlive: cfg.KeepAlive,
		log:       cfg.Logger,
	}
	grpcHandler := recordStatus(cfg.Server.GRPCHandler())
	var services []*vanguard.Service
	for _, name := range cfg.Server.Services() {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name))
		if err != nil {
			// A service registered with a hand-written descriptor: gRPC only.
			h.log.Debug("httpjson: no descriptor for service; not served over HTTP/JSON", "service", name)
			continue
		}
		sd, ok := d.(protoreflect.ServiceDescriptor)
		if !ok {
			continue
		}
		if string(sd.FullName()) == courierv1.JobService_ServiceDesc.ServiceName {
			h.hasJobs = true
		}
		services = append(services, vanguard.NewServiceWithSchema(sd, grpcHandler,
			vanguard.WithTargetProtocols(vanguard.ProtocolGRPC),
			vanguard.WithTargetCodecs(vanguard.CodecProto),
			vanguard.WithTypeResolver(cfg.Resolver),
			vanguard.WithMaxMessageBufferBytes(uint32(cfg.MaxMessageBytes)),
		))
	}
	opts := []vanguard.TranscoderOption{
		vanguard.WithCodec(func(res vanguard.TypeResolver) vanguard.Codec {
			// Strict: a misspelt field is an error, not a silently empty one.
			return strictJSON{vanguard.JSONCodec{
				MarshalOptions:   protojson.MarshalOptions{Resolver: res, EmitUnpopulated: true},
				UnmarshalOptions: protojson.UnmarshalOptions{Resolver: res},
			}}
		}),
		vanguard.WithUnknownHandler(http.HandlerFunc(h.notFound)),
	}
	if h.hasJobs {
		opts = append(opts, vanguard.WithRules(&annotations.HttpRule{
			Selector: "courier.v1.JobService.ListJobs",
			Pattern:  &annotations.HttpRule_Post{Post: listByLabelsPath},
			Body:     "labels",
		}))
	}
	t, err := vanguard.NewTranscoder(services, opts...)
	if err != nil {
		return nil, fmt.Errorf("httpjson: %w", err)
	}
	h.transcoder = t
	return h, nil
}

// ServeHTTP serves one HTTP/JSON request.
func (h *Handler) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	call := new(serverCode)
	call.Store(-1)
	r = r.WithContext(context.WithValue(r.Context(), callKey{}, call))
	w := &errorWriter{ResponseWriter: rw, call: call, json: h.json, method: r.Method, path: r.URL.Path}
	defer w.finish()
	if h.hasJobs {
		if id, ok := watchID(r.URL); ok {
			if r.Method != http.MethodGet {
				w.Header().Set("Allow", http.MethodGet)
				h.writeStatus(w, status.Newf(codes.Unimplemented, "httpjson: %s is not served for %s; use GET", r.URL.Path, r.Method))
				return
			}
			h.watch(w, r, id)
			return
		}
		switch r.URL.Path {
		case listByLabelsPath:
			h.notFound(w, r)
			return
		case "/v1/jobs":
			if r.Method == http.MethodGet {
				lr, err := listByLabels(r)
				if err != nil {
					h.writeStatus(w, status.New(codes.InvalidArgument, err.Error()))
					return
				}
				r = lr
			}
		}
	}
	switch ct := r.Header.Get("Content-Type"); {
	case ct == "" && r.ContentLength != 0, strings.HasPrefix(ct, "application/x-www-form-urlencoded"):
		// curl -d sends its default form type: the body is JSON all the same.
		r = r.Clone(r.Context())
		r.Header.Set("Content-Type", "application/json")
	}
	h.transcoder.ServeHTTP(w, r)
}

func (h *Handler) notFound(w http.ResponseWriter, r *http.Request) {
	h.writeStatus(w, status.Newf(codes.NotFound, "httpjson: no route for %s %s; the routes are those of the google.api.http options in courier's protos (POST /v1/jobs, GET /v1/jobs/{id}, ...)", r.Method, r.URL.Path))
}

// watchID returns ID of a /v1/jobs/ID:watch path.
func watchID(u *url.URL) (string, bool) {
	rest, ok := strings.CutPrefix(u.EscapedPath(), "/v1/jobs/")
	if !ok {
		return "", false
	}
	esc, ok := strings.CutSuffix(rest, ":watch")
	if !ok || esc == "" || strings.Contains(esc, "/") {
		return "", false
	}
	id, err := url.PathUnescape(esc)
	if err != nil {
		return "", false
	}
	return id, true
}

// listByLabels turns GET /v1/jobs?...&labels[K]=V into the internal
// ListJobs route whose body is the labels map, leaving the other query
// parameters to the transcoder. Without labels parameters it returns r.
func listByLabels(r *http.Request) (*http.Request, error) {
	q := r.URL.Query()
	labels := map[string]string{}
	for key, vals := range q {
		k, ok := strings.CutPrefix(key, "labels[")
		if !ok {
			continue
		}
		k, ok = strings.CutSuffix(k, "]")
		if !ok || k == "" {
			return nil, fmt.Errorf("httpjson: query parameter %q: write a label filter as labels[KEY]=VALUE", key)
		}
		if len(vals) > 1 {
			return nil, fmt.Errorf("httpjson: query parameter %q is given %d times; a label has one value", key, len(vals))
		}
		labels[k] = vals[0]
		q.Del(key)
	}
	if len(labels) == 0 {
		return r, nil
	}
	body, err := json.Marshal(labels)
	if err != nil {
		return nil, err
	}
	lr := r.Clone(r.Context())
	lr.Method = http.MethodPost
	lr.URL.Path, lr.URL.RawPath = listByLabelsPath, ""
	lr.URL.RawQuery = q.Encode()
	lr.RequestURI = ""
	lr.Header.Set("Content-Type", "application/json")
	lr.Header.Del("Content-Encoding")
	lr.Body = io.NopCloser(bytes.NewReader(body))
	lr.ContentLength = int64(len(body))
	return lr, nil
}

// watch serves WatchJob for id as server-sent events.
func (h *Handler) watch(w http.ResponseWriter, r *http.Request, id string) {
	rc := http.NewResponseController(w)
	var (
		mu      sync.Mutex
		started bool
	)
	write := func(event string, data []byte) error {
		mu.Lock()
		defer mu.Unlock()
		if !started {
			hd := w.Header()
			hd.Set("Content-Type", "text/event-stream")
			hd.Set("Cache-Control", "no-cache")
			hd.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
			w.WriteHeader(http.StatusOK)
			started = true
		}
		var err error
		if event == "" {
			_, err = io.WriteString(w, ": keepalive\n\n")
		} else {
			_, err = fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, data)
		}
		if err != nil {
			return err
		}
		return rc.Flush()
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(h.keepAlive)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				mu.Lock()
				s := started
				mu.Unlock()
				if s {
					_ = write("", nil)
				}
			}
		}
	})
	st := h.invoke(r, watchMethod, &courierv1.WatchJobRequest{Id: id}, func(b []byte) error {
		job := new(courierv1.Job)
		if err := (proto.UnmarshalOptions{Resolver: h.resolver}).Unmarshal(b, job); err != nil {
			return fmt.Errorf("httpjson: decoding a Job from the gRPC server: %w", err)
		}
		data, err := h.json.Marshal(job)
		if err != nil {
			return fmt.Errorf("httpjson: writing job %s as JSON: %w", job.GetId(), err)
		}
		return write("job", data)
	})
	close(stop)
	wg.Wait()
	if st.Code() == codes.OK {
		return
	}
	if !started {
		h.writeStatus(w, st)
		return
	}
	if r.Context().Err() != nil {
		return // the client left
	}
	data, err := h.json.Marshal(st.Proto())
	if err != nil {
		data = []byte(`{"code":13,"message":"httpjson: the error could not be written as JSON"}`)
	}
	_ = write("error", data)
}

// writeStatus writes st as google.rpc.Status JSON with its HTTP status.
func (h *Handler) writeStatus(w http.ResponseWriter, st *status.Status) {
	data, err := h.json.Marshal(st.Proto())
	if err != nil {
		data = []byte(`{"code":13,"message":"httpjson: the error could not be written as JSON"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(HTTPStatus(st.Code()))
	_, _ = w.Write(data)
}

// HTTPStatus is the HTTP status of a gRPC code, as Google's APIs (and
// grpc-gateway, and Vanguard) map them.
func HTTPStatus(c codes.Code) int {
	switch c {
	case codes.OK:
		return http.StatusOK
	case codes.Canceled:
		return 499 // client closed request
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		return http.StatusBadRequest
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case codes.NotFound:
		return http.StatusNotFound
	case codes.AlreadyExists, codes.Aborted:
		return http.StatusConflict
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Unimplemented:
		return http.StatusNotImplemented
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	}
	return http.StatusInternalServerError
}

// callKey holds, in a request's context, the *serverCode of its call.
type callKey struct{}

// serverCode is the gRPC status code that the gRPC server answered a call
// with, or -1 while it has not answered.
type serverCode struct{ atomic.Int32 }

// recordStatus wraps the gRPC server's handler so that the status it
// answers each call with is recorded in the request's context.
func recordStatus(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r)
		sc, ok := r.Context().Value(callKey{}).(*serverCode)
		if !ok {
			return
		}
		h := w.Header()
		v := h.Get("Grpc-Status")
		if v == "" {
			v = h.Get(http.TrailerPrefix + "Grpc-Status")
		}
		if c, err := strconv.Atoi(v); err == nil {
			sc.Store(int32(c))
		}
	})
}

// errorWriter puts the transcoder's own errors into the form of the
// server's. Vanguard answers a request that does not fit the request
// message (an unknown query parameter, a body where the route has none)
// with Unknown (500), and a method that the route does not serve with plain
// text; errorWriter makes every error a google.rpc.Status JSON, and an
// Unknown that the gRPC server did not answer InvalidArgument (400). Every
// 401 gets the Bearer challenge that RFC 9110 asks for.
type errorWriter struct {
	http.ResponseWriter
	call         *serverCode
	json         protojson.MarshalOptions
	method, path string

	held bool // an error response, written by finish
	code int
	body bytes.Buffer
}

func (e *errorWriter) WriteHeader(code int) {
	if e.held {
		return
	}
	if code >= 400 {
		e.held, e.code = true, code
		return
	}
	e.ResponseWriter.WriteHeader(code)
}

func (e *errorWriter) Write(p []byte) (int, error) {
	if e.held {
		return e.body.Write(p)
	}
	return e.ResponseWriter.Write(p)
}

func (e *errorWriter) Flush() {
	if e.held {
		return
	}
	if f, ok := e.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (e *errorWriter) Unwrap() http.ResponseWriter { return e.ResponseWriter }

// finish writes a held error response.
func (e *errorWriter) finish() {
	if !e.held {
		return
	}
	code, data := e.code, e.body.Bytes()
	p := new(spb.Status)
	// The transcoder writes its errors as JSON, whatever Content-Type the
	// gRPC server left in the header.
	rewrite := protojson.Unmarshal(data, p) != nil || p.Code == 0
	if rewrite {
		p = &spb.Status{Code: int32(codeOfHTTP(code)), Message: fmt.Sprintf("httpjson: %s %s: %s", e.method, e.path, strings.TrimSpace(e.body.String()))}
		if allow := e.Header().Get("Allow"); allow != "" {
			p.Message += "; this route serves " + allow
		}
	}
	if codes.Code(p.Code) == codes.Unknown && e.call.Load() != int32(codes.Unknown) {
		p.Code, code, rewrite = int32(codes.InvalidArgument), http.StatusBadRequest, true
	}
	if rewrite {
		var err error
		if data, err = e.json.Marshal(p); err != nil {
			data = []byte(`{"code":13,"message":"httpjson: the error could not be written as JSON"}`)
		}
	}
	h := e.Header()
	for _, k := range []string{"Content-Encoding", "Content-Length", "Trailer", "Grpc-Status", "Grpc-Message", "Grpc-Status-Details-Bin"} {
		h.Del(k)
	}
	h.Set("Content-Type", "application/json")
	if code == http.StatusUnauthorized && h.Get("WWW-Authenticate") == "" {
		h.Set("WWW-Authenticate", `Bearer realm="courier"`)
	}
	e.ResponseWriter.WriteHeader(code)
	_, _ = e.ResponseWriter.Write(data)
}

// codeOfHTTP is the gRPC code of a transcoder's HTTP error status.
func codeOfHTTP(status int) codes.Code {
	switch status {
	case http.StatusNotFound:
		return codes.NotFound
	case http.StatusMethodNotAllowed, http.StatusNotImplemented:
		return codes.Unimplemented
	case http.StatusUnauthorized:
		return codes.Unauthenticated
	case http.StatusForbidden:
		return codes.PermissionDenied
	case http.StatusTooManyRequests, http.StatusRequestEntityTooLarge:
		return codes.ResourceExhausted
	case http.StatusServiceUnavailable:
		return codes.Unavailable
	case http.StatusInternalServerError:
		return codes.Internal
	}
	if status >= 400 && status < 500 {
		return codes.InvalidArgument
	}
	return codes.Unknown
}

// strictJSON is Vanguard's JSON codec refusing unknown fields, whose
// decoding errors are InvalidArgument.
type strictJSON struct{ vanguard.JSONCodec }

func (c strictJSON) Unmarshal(data []byte, msg proto.Message) error {
	if err := c.JSONCodec.Unmarshal(data, msg); err != nil {
		return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("httpjson: the request body is not a %s in JSON: %w", msg.ProtoReflect().Descriptor().FullName(), err))
	}
	return nil
}

func (c strictJSON) UnmarshalField(data []byte, msg proto.Message, field protoreflect.FieldDescriptor) error {
	if err := c.JSONCodec.UnmarshalField(data, msg, field); err != nil {
		return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("httpjson: the request body is not a %s in JSON: %w", field.FullName(), err))
	}
	return nil
}
