package emulator

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
)

// schema is a SchemaService schema: its revisions, oldest first. Each
// revision's Schema message carries the schema's name, its revision ID and
// creation time.
type schema struct {
	name string
	revs []*schemaRev
}

type schemaRev struct {
	pb    *pubsubpb.Schema
	codec codec
}

func (sc *schema) latest() *schemaRev { return sc.revs[len(sc.revs)-1] }

// rev finds a revision by ID, or returns -1.
func (sc *schema) rev(id string) int {
	return slices.IndexFunc(sc.revs, func(r *schemaRev) bool { return r.pb.RevisionId == id })
}

func (sc *schema) record() *logRecord {
	r := &logRecord{Op: opSchemaPut, Name: sc.name}
	for _, rev := range sc.revs {
		r.Revs = append(r.Revs, mustMarshal(rev.pb))
	}
	return r
}

// schemaFromLog rebuilds a schema from its log record.
func schemaFromLog(name string, revs [][]byte) (*schema, error) {
	if len(revs) == 0 {
		return nil, fmt.Errorf("schema %s has no revisions", name)
	}
	sc := &schema{name: name}
	for _, b := range revs {
		pb := &pubsubpb.Schema{}
		if err := proto.Unmarshal(b, pb); err != nil {
			return nil, err
		}
		c, err := compileSchema(pb)
		if err != nil {
			return nil, fmt.Errorf("schema %s revision %s: %v", name, pb.RevisionId, err)
		}
		sc.revs = append(sc.revs, &schemaRev{pb: pb, codec: c})
	}
	return sc, nil
}

// deletedSchema is what a topic's schema_settings.schema reads after its
// schema is deleted.
const deletedSchema = "_deleted-schema_"

func (e *engine) deleteSchemaLocked(name string) {
	delete(e.schemas, name)
	for _, t := range e.topics {
		if ss := t.pb.GetSchemaSettings(); ss != nil && ss.Schema == name {
			pb := clone(t.pb)
			pb.SchemaSettings.Schema = deletedSchema
			t.pb = pb
		}
	}
}

type schemaService struct {
	pubsubpb.UnimplementedSchemaServiceServer
	e *engine
}

func errSchemaNotFound(name string) error {
	return status.Errorf(codes.NotFound, "Schema not found (resource=%s).", name)
}

// parseSchemaRef splits projects/{p}/schemas/{id}[@{revision}].
func parseSchemaRef(ref string) (name, rev string, err error) {
	name, rev, _ = strings.Cut(ref, "@")
	if _, _, err := parseName(name, "schemas"); err != nil {
		return "", "", err
	}
	return name, rev, nil
}

// newRevisionLocked returns a revision of pb (type and definition) for
// sc's name, with a fresh ID.
func (e *engine) newRevisionLocked(name string, sc *schema, pb *pubsubpb.Schema, c codec) *schemaRev {
	var id string
	for id == "" || (sc != nil && sc.rev(id) >= 0) {
		id = fmt.Sprintf("%08x", rand.Uint32())
	}
	rp := clone(pb)
	rp.Name = name
	rp.RevisionId = id
	rp.RevisionCreateTime = ts(e.now())
	return &schemaRev{pb: rp, codec: c}
}

func invalidSchema(err error) error {
	return status.Errorf(codes.InvalidArgument, "Invalid schema definition: %v.", err)
}

func (s *schemaService) CreateSchema(ctx context.Context, req *pubsubpb.CreateSchemaRequest) (*pubsubpb.Schema, error) {
	if _, err := parseProject(req.Parent); err != nil {
		return nil, err
	}
	if req.Schema == nil {
		return nil, status.Error(codes.InvalidArgument, "The schema field in the CreateSchemaRequest must be set.")
	}
	name := req.Parent + "/schemas/" + req.SchemaId
	if _, _, err := parseName(name, "schemas"); err != nil {
		return nil, err
	}
	c, err := compileSchema(req.Schema)
	if err != nil {
		return nil, invalidSchema(err)
	}
	e := s.e
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.schemas[name] != nil {
		return nil, status.Errorf(codes.AlreadyExists, "Schema already exists (resource=%s).", name)
	}
	sc := &schema{name: name}
	sc.revs = []*schemaRev{e.newRevisionLocked(name, nil, req.Schema, c)}
	if err := e.record(sc.record()); err != nil {
		return nil, err
	}
	e.schemas[name] = sc
	return clone(sc.latest().pb), nil
}

// view returns pb as the view asks: BASIC (the default of the List
// methods; GetSchema's is FULL) drops the definition.
func view(pb *pubsubpb.Schema, v pubsubpb.SchemaView) *pubsubpb.Schema {
	out := clone(pb)
	if v != pubsubpb.SchemaView_FULL {
		out.Definition = ""
		out.Configuration = nil
	}
	return out
}

// lockSchema validates ref (a name, with or without @revision), locks the
// engine and finds the schema and the revision ref names (the latest, when
// it names none).
func (e *engine) lockSchema(ref string) (*schema, *schemaRev, func(), error) {
	name, revID, err := parseSchemaRef(ref)
	if err != nil {
		return nil, nil, nil, err
	}
	e.mu.Lock()
	sc := e.schemas[name]
	if sc == nil {
		e.mu.Unlock()
		return nil, nil, nil, errSchemaNotFound(name)
	}
	rev := sc.latest()
	if revID != "" {
		i := sc.rev(revID)
		if i < 0 {
			e.mu.Unlock()
			return nil, nil, nil, status.Errorf(codes.NotFound, "Revision %s of schema %s not found.", revID, name)
		}
		rev = sc.revs[i]
	}
	return sc, rev, e.mu.Unlock, nil
}

func (s *schemaService) GetSchema(ctx context.Context, req *pubsubpb.GetSchemaRequest) (*pubsubpb.Schema, error) {
	_, rev, unlock, err := s.e.lockSchema(req.Name)
	if err != nil {
		return nil, err
	}
	defer unlock()
	v := req.View
	if v == pubsubpb.SchemaView_SCHEMA_VIEW_UNSPECIFIED {
		v = pubsubpb.SchemaView_FULL // GetSchema's default
	}
	return view(rev.pb, v), nil
}

func (s *schemaService) ListSchemas(ctx context.Context, req *pubsubpb.ListSchemasRequest) (*pubsubpb.ListSchemasResponse, error) {
	if _, err := parseProject(req.Parent); err != nil {
		return nil, err
	}
	e := s.e
	e.mu.Lock()
	defer e.mu.Unlock()
	var names []string
	prefix := req.Parent + "/schemas/"
	for n := range e.schemas {
		if strings.HasPrefix(n, prefix) {
			names = append(names, n)
		}
	}
	names, next := page(names, req.PageSize, req.PageToken)
	res := &pubsubpb.ListSchemasResponse{NextPageToken: next}
	for _, n := range names {
		res.Schemas = append(res.Schemas, view(e.schemas[n].latest().pb, req.View))
	}
	return res, nil
}

// ListSchemaRevisions lists the revisions newest first; the page token is
// the last revision ID of the page before.
func (s *schemaService) ListSchemaRevisions(ctx context.Context, req *pubsubpb.ListSchemaRevisionsRequest) (*pubsubpb.ListSchemaRevisionsResponse, error) {
	sc, _, unlock, err := s.e.lockSchema(req.Name)
	if err != nil {
		return nil, err
	}
	defer unlock()
	revs := slices.Clone(sc.revs)
	slices.Reverse(revs)
	if req.PageToken != "" {
		i := slices.IndexFunc(revs, func(r *schemaRev) bool { return r.pb.RevisionId == req.PageToken })
		if i < 0 {
			return nil, status.Errorf(codes.InvalidArgument, "Invalid page_token %q: it is no revision of %s.", req.PageToken, sc.name)
		}
		revs = revs[i+1:]
	}
	size := int(req.PageSize)
	if size <= 0 || size > 1000 {
		size = 1000
	}
	res := &pubsubpb.ListSchemaRevisionsResponse{}
	if len(revs) > size {
		revs = revs[:size]
		res.NextPageToken = revs[size-1].pb.RevisionId
	}
	for _, r := range revs {
		res.Schemas = append(res.Schemas, view(r.pb, req.View))
	}
	return res, nil
}

func (s *schemaService) CommitSchema(ctx context.Context, req *pubsubpb.CommitSchemaRequest) (*pubsubpb.Schema, error) {
	if req.Schema == nil {
		return nil, status.Error(codes.InvalidArgument, "The schema field in the CommitSchemaRequest must be set.")
	}
	name, revID, err := parseSchemaRef(req.Name)
	if err != nil {
		return nil, err
	}
	if revID != "" {
		return nil, status.Errorf(codes.InvalidArgument, "CommitSchema takes a schema name without a revision, got %s.", req.Name)
	}
	c, err := compileSchema(req.Schema)
	if err != nil {
		return nil, invalidSchema(err)
	}
	sc, _, unlock, err := s.e.lockSchema(name)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if t := sc.latest().pb.Type; req.Schema.Type != t {
		return nil, status.Errorf(codes.InvalidArgument, "Schema %s is of type %v; a new revision must be of the same type, not %v.", name, t, req.Schema.Type)
	}
	return s.e.addRevisionLocked(sc, s.e.newRevisionLocked(name, sc, req.Schema, c))
}

// addRevisionLocked records and adds a new revision.
func (e *engine) addRevisionLocked(sc *schema, rev *schemaRev) (*pubsubpb.Schema, error) {
	next := &schema{name: sc.name, revs: append(slices.Clone(sc.revs), rev)}
	if err := e.record(next.record()); err != nil {
		return nil, err
	}
	sc.revs = next.revs
	return clone(rev.pb), nil
}

func (s *schemaService) RollbackSchema(ctx context.Context, req *pubsubpb.RollbackSchemaRequest) (*pubsubpb.Schema, error) {
	if req.RevisionId == "" {
		return nil, status.Error(codes.InvalidArgument, "The revision_id field in the RollbackSchemaRequest must be set.")
	}
	sc, _, unlock, err := s.e.lockSchema(req.Name)
	if err != nil {
		return nil, err
	}
	defer unlock()
	i := sc.rev(req.RevisionId)
	if i < 0 {
		return nil, status.Errorf(codes.NotFound, "Revision %s of schema %s not found.", req.RevisionId, sc.name)
	}
	old := sc.revs[i]
	return s.e.addRevisionLocked(sc, s.e.newRevisionLocked(sc.name, sc, old.pb, old.codec))
}

func (s *schemaService) DeleteSchemaRevision(ctx context.Context, req *pubsubpb.DeleteSchemaRevisionRequest) (*pubsubpb.Schema, error) {
	ref := req.Name
	//lint:ignore SA1019 still honoured by the service
	if id := req.GetRevisionId(); id != "" && !strings.Contains(ref, "@") {
		ref += "@" + id
	}
	if !strings.Contains(ref, "@") {
		return nil, status.Errorf(codes.InvalidArgument, "DeleteSchemaRevision needs a revision: name it as %s@REVISION_ID.", req.Name)
	}
	sc, rev, unlock, err := s.e.lockSchema(ref)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if len(sc.revs) == 1 {
		return nil, status.Errorf(codes.FailedPrecondition, "Revision %s is the only revision of schema %s; delete the schema instead.", rev.pb.RevisionId, sc.name)
	}
	next := &schema{name: sc.name, revs: slices.DeleteFunc(slices.Clone(sc.revs), func(r *schemaRev) bool { return r == rev })}
	if err := s.e.record(next.record()); err != nil {
		return nil, err
	}
	sc.revs = next.revs
	return clone(rev.pb), nil
}

func (s *schemaService) DeleteSchema(ctx context.Context, req *pubsubpb.DeleteSchemaRequest) (*emptypb.Empty, error) {
	if _, _, err := parseName(req.Name, "schemas"); err != nil {
		return nil, err
	}
	e := s.e
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.schemas[req.Name] == nil {
		return nil, errSchemaNotFound(req.Name)
	}
	if err := e.record(&logRecord{Op: opSchemaDel, Name: req.Name}); err != nil {
		return nil, err
	}
	e.deleteSchemaLocked(req.Name)
	return &emptypb.Empty{}, nil
}

func (s *schemaService) ValidateSchema(ctx context.Context, req *pubsubpb.ValidateSchemaRequest) (*pubsubpb.ValidateSchemaResponse, error) {
	if _, err := parseProject(req.Parent); err != nil {
		return nil, err
	}
	if req.Schema == nil {
		return nil, status.Error(codes.InvalidArgument, "The schema field in the ValidateSchemaRequest must be set.")
	}
	if _, err := compileSchema(req.Schema); err != nil {
		return nil, invalidSchema(err)
	}
	return &pubsubpb.ValidateSchemaResponse{}, nil
}

func (s *schemaService) ValidateMessage(ctx context.Context, req *pubsubpb.ValidateMessageRequest) (*pubsubpb.ValidateMessageResponse, error) {
	if _, err := parseProject(req.Parent); err != nil {
		return nil, err
	}
	if req.Encoding != pubsubpb.Encoding_JSON && req.Encoding != pubsubpb.Encoding_BINARY {
		return nil, status.Errorf(codes.InvalidArgument, "Invalid encoding %v: use JSON or BINARY.", req.Encoding)
	}
	var c codec
	what := "the given schema"
	switch {
	case req.GetSchema() != nil:
		var err error
		if c, err = compileSchema(req.GetSchema()); err != nil {
			return nil, invalidSchema(err)
		}
	case req.GetName() != "":
		_, rev, unlock, err := s.e.lockSchema(req.GetName())
		if err != nil {
			return nil, err
		}
		c = rev.codec
		what = fmt.Sprintf("schema %s revision %s", rev.pb.Name, rev.pb.RevisionId)
		unlock()
	default:
		return nil, status.Error(codes.InvalidArgument, "The ValidateMessageRequest must set name or schema.")
	}
	if err := c.check(req.Message, req.Encoding); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "Invalid message: it does not conform to %s in %v encoding: %v.", what, req.Encoding, err)
	}
	return &pubsubpb.ValidateMessageResponse{}, nil
}

// checkSchemaSettingsLocked validates a topic's schema_settings against the
// schemas there are.
func (e *engine) checkSchemaSettingsLocked(ss *pubsubpb.SchemaSettings) error {
	if ss == nil {
		return nil
	}
	if _, _, err := parseName(ss.Schema, "schemas"); err != nil {
		return status.Errorf(codes.InvalidArgument, "Invalid schema_settings.schema: %s", status.Convert(err).Message())
	}
	if ss.Encoding != pubsubpb.Encoding_JSON && ss.Encoding != pubsubpb.Encoding_BINARY {
		return status.Errorf(codes.InvalidArgument, "Invalid schema_settings.encoding %v: use JSON or BINARY.", ss.Encoding)
	}
	sc := e.schemas[ss.Schema]
	if sc == nil {
		return status.Errorf(codes.NotFound, "Schema could not be found (resource=%s).", ss.Schema)
	}
	first, last := 0, len(sc.revs)-1
	if ss.FirstRevisionId != "" {
		if first = sc.rev(ss.FirstRevisionId); first < 0 {
			return status.Errorf(codes.NotFound, "First revision %s of schema %s could not be found.", ss.FirstRevisionId, ss.Schema)
		}
	}
	if ss.LastRevisionId != "" {
		if last = sc.rev(ss.LastRevisionId); last < 0 {
			return status.Errorf(codes.NotFound, "Last revision %s of schema %s could not be found.", ss.LastRevisionId, ss.Schema)
		}
	}
	if first > last {
		return status.Errorf(codes.InvalidArgument, "Invalid schema_settings: first_revision_id %s was created after last_revision_id %s.", ss.FirstRevisionId, ss.LastRevisionId)
	}
	return nil
}

// conformLocked checks a message published to a topic with schema settings
// against the allowed revisions, newest first, and returns the attributes
// the service adds: googclient_schemaname, googclient_schemaencoding and
// googclient_schemarevisionid (the revision it conformed to).
func (e *engine) conformLocked(ss *pubsubpb.SchemaSettings, i int, data []byte) (name, revID string, err error) {
	sc := e.schemas[ss.Schema]
	if sc == nil {
		return "", "", status.Errorf(codes.NotFound, "The schema of this topic was deleted (schema_settings.schema is %s); publishing needs it, or no schema_settings.", ss.Schema)
	}
	first, last := 0, len(sc.revs)-1
	if ss.FirstRevisionId != "" {
		first = max(sc.rev(ss.FirstRevisionId), 0)
	}
	if ss.LastRevisionId != "" {
		if l := sc.rev(ss.LastRevisionId); l >= 0 {
			last = l
		}
	}
	var firstErr error
	for j := last; j >= first; j-- {
		err := sc.revs[j].codec.check(data, ss.Encoding)
		if err == nil {
			return sc.name, sc.revs[j].pb.RevisionId, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	revs := sc.revs[last].pb.RevisionId
	if first != last {
		revs = sc.revs[first].pb.RevisionId + " to " + revs
	}
	return "", "", status.Errorf(codes.InvalidArgument, "Invalid data in message %d of the request: it does not conform to schema %s (revision %s) in %v encoding: %v.", i, sc.name, revs, ss.Encoding, firstErr)
}
