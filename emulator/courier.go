package emulator

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
)

// Config configures courier's emulator (Start). The zero value is valid: an
// in-memory emulator on a free port of 127.0.0.1.
type Config struct {
	// Host to listen on. "" means 127.0.0.1. Ignored with InProcess.
	Host string
	// Port to listen on. 0 means a free port; read the result from
	// Server.Addr. Ignored with InProcess.
	Port int
	// InProcess serves the emulator over an in-memory connection instead
	// of a TCP port: nothing listens, so nothing outside this process can
	// reach it. Clients connect through Server.ClientOptions or
	// Server.Dial; Server.Addr is "". false (the default) listens on
	// Host:Port.
	InProcess bool
	// DataDir, when set, makes topics, subscriptions, snapshots, schemas,
	// unacked messages and delivery counts survive a restart (including
	// kill -9): every change is appended to DataDir/pubsub.log before it
	// takes effect and before the RPC that made it returns, and the log is
	// compacted on start and while running. "" keeps everything in memory.
	DataDir string
	// CompactBytes is how much the data log may grow past its last
	// compacted size before it is compacted again while running; it is
	// also compacted whenever it has doubled. 0 means 64 MiB; -1 compacts
	// only on start.
	CompactBytes int64
	// MaxMessagesPerResponse caps the messages in one StreamingPull
	// response. 0 means 1000.
	MaxMessagesPerResponse int
	// Now is the wall clock: publish times, snapshot and subscription
	// expiry, message retention. nil means time.Now. Tests pass a clock
	// they can move forward to see expiry without waiting days; ack
	// deadlines and retry backoff always run on real timers.
	Now func() time.Time
}

// defaultCompactBytes is Config.CompactBytes's default.
const defaultCompactBytes = 64 << 20

// maxRecvBytes is the largest request the server reads. The client
// libraries send requests of up to 20 MiB, so that the service, not the
// transport, judges them; a publish request over the service's 10 MiB
// limit gets the service's InvalidArgument, not gRPC's ResourceExhausted.
const maxRecvBytes = 20 << 20

// Start runs courier's emulator in this process and returns once it accepts
// gRPC connections. Pass at most one Config; none means the zero Config.
// ctx bounds only the start. Close the Server to stop it.
func Start(ctx context.Context, cfgs ...Config) (*Server, error) {
	if len(cfgs) > 1 {
		return nil, fmt.Errorf("emulator: Start takes at most one Config, got %d; merge them into one", len(cfgs))
	}
	var cfg Config
	if len(cfgs) == 1 {
		cfg = cfgs[0]
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		return nil, fmt.Errorf("emulator: Config.Port %d is out of range; use 0 for a free port or 1..65535", cfg.Port)
	}
	if cfg.MaxMessagesPerResponse < 0 {
		return nil, fmt.Errorf("emulator: Config.MaxMessagesPerResponse %d is negative; use 0 for the default (1000)", cfg.MaxMessagesPerResponse)
	}
	if cfg.MaxMessagesPerResponse == 0 {
		cfg.MaxMessagesPerResponse = 1000
	}
	if cfg.CompactBytes < -1 {
		return nil, fmt.Errorf("emulator: Config.CompactBytes %d is invalid; use 0 for the default (64 MiB), -1 to compact only on start, or a size in bytes", cfg.CompactBytes)
	}
	if cfg.CompactBytes == 0 {
		cfg.CompactBytes = defaultCompactBytes
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	e := newEngine(cfg)
	if cfg.DataDir != "" {
		if err := e.openLog(cfg.DataDir); err != nil {
			e.shutdown() // replay may have started push workers
			return nil, err
		}
	}
	srv := &Server{Kind: KindCourier, keys: e.keys, eng: e}
	var grpcLis net.Listener
	var httpSrv *http.Server
	if cfg.InProcess {
		bl := bufconn.Listen(1 << 20)
		grpcLis = bl
		srv.dial = bl.DialContext
	} else {
		lis, err := net.Listen("tcp", net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)))
		if err != nil {
			e.shutdown()
			_ = e.closeLog()
			return nil, fmt.Errorf("emulator: listening on %s:%d: %w; pick another --port or stop what holds it", cfg.Host, cfg.Port, err)
		}
		// One port serves both: gRPC (HTTP/2) and, over HTTP/1.1, the
		// public keys of the push subscriptions' OIDC tokens.
		mux := newConnMux(lis)
		grpcLis = mux.grpc
		srv.Addr = lis.Addr().String()
		srv.JWKSURL = "http://" + srv.Addr + JWKSPath
		hm := http.NewServeMux()
		hm.HandleFunc("GET "+JWKSPath, e.keys.serveJWKS)
		httpSrv = &http.Server{Handler: hm, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = httpSrv.Serve(mux.http) }()
		go mux.run()
	}
	gs := grpc.NewServer(grpc.MaxRecvMsgSize(maxRecvBytes), grpc.MaxSendMsgSize(64<<20))
	pubsubpb.RegisterPublisherServer(gs, &publisherService{e: e})
	pubsubpb.RegisterSubscriberServer(gs, &subscriberService{e: e})
	pubsubpb.RegisterSchemaServiceServer(gs, &schemaService{e: e})
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = gs.Serve(grpcLis)
	}()
	e.startSweeper()
	srv.close = func() error {
		e.shutdown() // ends streams and pushers first, so Stop does not wait on them
		gs.Stop()
		<-served
		if httpSrv != nil {
			_ = httpSrv.Close()
		}
		return e.closeLog()
	}
	return srv, nil
}

// engine holds all state behind one mutex. Deliveries are driven by events
// (publish, ack, nack, new stream) and by one timer per subscription for
// ack deadlines and retry backoff; nothing polls.
type engine struct {
	cfg  Config
	now  func() time.Time // the wall clock (Config.Now)
	keys *signer          // signs push subscriptions' OIDC tokens

	mu        sync.Mutex
	closed    bool
	topics    map[string]*topic
	subs      map[string]*subscription
	snapshots map[string]*snapshot
	schemas   map[string]*schema
	seq       uint64 // last message sequence number; message IDs are its decimal form
	ackSeq    uint64 // last ack ID number
	ackPrefix string // distinguishes ack IDs of different runs
	log       *opLog

	stop chan struct{}  // closed by shutdown: ends the sweeper
	wg   sync.WaitGroup // pushers and the sweeper
}

func newEngine(cfg Config) *engine {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &engine{
		cfg:       cfg,
		now:       cfg.Now,
		keys:      newSigner(cfg.DataDir),
		topics:    make(map[string]*topic),
		subs:      make(map[string]*subscription),
		snapshots: make(map[string]*snapshot),
		schemas:   make(map[string]*schema),
		ackPrefix: strconv.FormatInt(time.Now().UnixNano()&(1<<50-1), 36) + "-",
		stop:      make(chan struct{}),
	}
}

// shutdown ends all streams, pulls, pushers, timers and the sweeper.
func (e *engine) shutdown() {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return
	}
	e.closed = true
	close(e.stop)
	for _, s := range e.subs {
		s.stopLocked(status.Error(codes.Unavailable, "the emulator is shutting down"))
	}
	e.mu.Unlock()
	e.wg.Wait()
}

func (e *engine) nextAckID() string {
	e.ackSeq++
	return e.ackPrefix + strconv.FormatUint(e.ackSeq, 36)
}
