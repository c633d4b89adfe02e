package emulator

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// Config configures courier's emulator (Start). The zero value is valid: an
// in-memory emulator on a free port of 127.0.0.1.
type Config struct {
	// Host to listen on. "" means 127.0.0.1.
	Host string
	// Port to listen on. 0 means a free port; read the result from Server.Addr.
	Port int
	// DataDir, when set, makes topics, subscriptions, snapshots and unacked
	// messages survive a restart (including kill -9): every change is
	// appended to DataDir/pubsub.log before the RPC that made it returns,
	// and the log is compacted on start. "" keeps everything in memory.
	DataDir string
	// MaxMessagesPerResponse caps the messages in one StreamingPull
	// response. 0 means 1000.
	MaxMessagesPerResponse int
}

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
	lis, err := net.Listen("tcp", net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)))
	if err != nil {
		e.shutdown()
		_ = e.closeLog()
		return nil, fmt.Errorf("emulator: listening on %s:%d: %w; pick another --port or stop what holds it", cfg.Host, cfg.Port, err)
	}
	gs := grpc.NewServer(grpc.MaxRecvMsgSize(20<<20), grpc.MaxSendMsgSize(64<<20))
	pubsubpb.RegisterPublisherServer(gs, &publisherService{e: e})
	pubsubpb.RegisterSubscriberServer(gs, &subscriberService{e: e})
	pubsubpb.RegisterSchemaServiceServer(gs, schemaService{})
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = gs.Serve(lis)
	}()
	stop := func() error {
		e.shutdown() // ends streams and pushers first, so Stop does not wait on them
		gs.Stop()
		<-served
		return e.closeLog()
	}
	return &Server{Addr: lis.Addr().String(), Kind: KindCourier, close: stop}, nil
}

// schemaService answers every SchemaService RPC with Unimplemented.
type schemaService struct {
	pubsubpb.UnimplementedSchemaServiceServer
}

func (schemaService) CreateSchema(context.Context, *pubsubpb.CreateSchemaRequest) (*pubsubpb.Schema, error) {
	return nil, errNoSchemas
}
func (schemaService) GetSchema(context.Context, *pubsubpb.GetSchemaRequest) (*pubsubpb.Schema, error) {
	return nil, errNoSchemas
}
func (schemaService) ListSchemas(context.Context, *pubsubpb.ListSchemasRequest) (*pubsubpb.ListSchemasResponse, error) {
	return nil, errNoSchemas
}
func (schemaService) DeleteSchema(context.Context, *pubsubpb.DeleteSchemaRequest) (*emptypb.Empty, error) {
	return nil, errNoSchemas
}
func (schemaService) ValidateSchema(context.Context, *pubsubpb.ValidateSchemaRequest) (*pubsubpb.ValidateSchemaResponse, error) {
	return nil, errNoSchemas
}
func (schemaService) ValidateMessage(context.Context, *pubsubpb.ValidateMessageRequest) (*pubsubpb.ValidateMessageResponse, error) {
	return nil, errNoSchemas
}

var errNoSchemas = status.Error(codes.Unimplemented, "courier's Pub/Sub emulator does not implement SchemaService yet; schemas and message validation are not supported")

// engine holds all state behind one mutex. Deliveries are driven by events
// (publish, ack, nack, new stream) and by one timer per subscription for
// ack deadlines and retry backoff; nothing polls.
type engine struct {
	cfg Config

	mu        sync.Mutex
	closed    bool
	topics    map[string]*topic
	subs      map[string]*subscription
	snapshots map[string]*snapshot
	seq       uint64 // last message sequence number; message IDs are its decimal form
	ackSeq    uint64 // last ack ID number
	ackPrefix string // distinguishes ack IDs of different runs
	log       *opLog

	wg sync.WaitGroup // pushers
}

func newEngine(cfg Config) *engine {
	return &engine{
		cfg:       cfg,
		topics:    make(map[string]*topic),
		subs:      make(map[string]*subscription),
		snapshots: make(map[string]*snapshot),
		ackPrefix: strconv.FormatInt(time.Now().UnixNano()&(1<<50-1), 36) + "-",
	}
}

// shutdown ends all streams, pulls, pushers and timers.
func (e *engine) shutdown() {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return
	}
	e.closed = true
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
