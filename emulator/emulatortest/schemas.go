package emulatortest

import (
	"slices"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The schemas the suite uses, and messages that do and do not conform,
// in both encodings. Binary messages are written out by hand, so that
// they do not depend on the library the emulator uses.
const (
	avroOrder   = `{"type":"record","name":"Order","fields":[{"name":"id","type":"string"},{"name":"qty","type":"int"}]}`
	avroOrderV2 = `{"type":"record","name":"Order","fields":[{"name":"id","type":"string"},{"name":"qty","type":"int"},{"name":"note","type":"string"}]}`
	protoOrder  = "syntax = \"proto3\";\n\nmessage Order {\n  string id = 1;\n  int32 qty = 2;\n}\n"
)

type schemaCase struct {
	name      string
	typ       pubsubpb.Schema_Type
	def       string
	enc       pubsubpb.Encoding
	good, bad []byte
}

var schemaCases = []schemaCase{
	{"AvroJSON", pubsubpb.Schema_AVRO, avroOrder, pubsubpb.Encoding_JSON,
		[]byte(`{"id":"a1","qty":2}`), []byte(`{"id":"a1","qty":"two"}`)},
	// Avro binary: string "a1" (zigzag length 4/2=2, then the bytes),
	// int 2 (zigzag 4); the bad one stops inside the string.
	{"AvroBinary", pubsubpb.Schema_AVRO, avroOrder, pubsubpb.Encoding_BINARY,
		[]byte{0x04, 'a', '1', 0x04}, []byte{0x04, 'a'}},
	{"ProtoJSON", pubsubpb.Schema_PROTOCOL_BUFFER, protoOrder, pubsubpb.Encoding_JSON,
		[]byte(`{"id":"a1","qty":2}`), []byte(`{"id":"a1","qty":"two"}`)},
	// Protobuf binary: field 1 (tag 0x0a) length 2 "a1", field 2 (tag
	// 0x10) varint 2; the bad one claims 5 bytes it does not have.
	{"ProtoBinary", pubsubpb.Schema_PROTOCOL_BUFFER, protoOrder, pubsubpb.Encoding_BINARY,
		[]byte{0x0a, 0x02, 'a', '1', 0x10, 0x02}, []byte{0x0a, 0x05, 'a'}},
}

func (e *env) schemaSupported(t *testing.T, typ pubsubpb.Schema_Type) {
	t.Helper()
	e.skipUnless(t, e.f.Schemas, "SchemaService is not implemented")
	if typ == pubsubpb.Schema_PROTOCOL_BUFFER && !e.f.ProtoSchemas {
		_, err := e.raw.Sch.CreateSchema(e.ctx, &pubsubpb.CreateSchemaRequest{Parent: "projects/" + Project, SchemaId: id(Name("schemas", "p")),
			Schema: &pubsubpb.Schema{Type: typ, Definition: protoOrder}})
		wantCode(t, "CreateSchema of a protocol buffer schema (departing from the real service)", err, codes.Unimplemented)
		t.Skipf("%s departs from the real service: protocol buffer schemas answer Unimplemented: %v", e.f.Name, err)
	}
}

// id is the last part of a resource name.
func id(name string) string { return name[strings.LastIndexByte(name, '/')+1:] }

func (e *env) schema(t *testing.T, typ pubsubpb.Schema_Type, def string) *pubsubpb.Schema {
	t.Helper()
	sc, err := e.raw.Sch.CreateSchema(e.ctx, &pubsubpb.CreateSchemaRequest{Parent: "projects/" + Project, SchemaId: id(Name("schemas", "s")),
		Schema: &pubsubpb.Schema{Type: typ, Definition: def}})
	if err != nil {
		t.Fatalf("CreateSchema(%v): %v", typ, err)
	}
	return sc
}

func testSchemaCRUD(t *testing.T, e *env) {
	_, err := e.raw.Sch.ListSchemas(e.ctx, &pubsubpb.ListSchemasRequest{Parent: "projects/" + Project})
	if !e.f.Schemas {
		wantCode(t, "ListSchemas", err, codes.Unimplemented)
		return
	}
	parent := "projects/" + Project
	sid := id(Name("schemas", "crud"))
	name := parent + "/schemas/" + sid
	created, err := e.raw.Sch.CreateSchema(e.ctx, &pubsubpb.CreateSchemaRequest{Parent: parent, SchemaId: sid,
		Schema: &pubsubpb.Schema{Type: pubsubpb.Schema_AVRO, Definition: avroOrder}})
	if err != nil {
		t.Fatal(err)
	}
	if created.Name != name || created.Type != pubsubpb.Schema_AVRO || created.Definition != avroOrder || created.RevisionId == "" || created.RevisionCreateTime == nil {
		t.Fatalf("CreateSchema returned %v: want name %s, the definition, a revision ID and its time", created, name)
	}
	_, err = e.raw.Sch.CreateSchema(e.ctx, &pubsubpb.CreateSchemaRequest{Parent: parent, SchemaId: sid, Schema: &pubsubpb.Schema{Type: pubsubpb.Schema_AVRO, Definition: avroOrder}})
	wantCode(t, "CreateSchema twice", err, codes.AlreadyExists)
	for _, bad := range []*pubsubpb.Schema{
		{Type: pubsubpb.Schema_AVRO, Definition: `{"type":"record"}`},
		{Type: pubsubpb.Schema_AVRO, Definition: `{"type":`},
		{Definition: avroOrder}, // no type
	} {
		_, err = e.raw.Sch.CreateSchema(e.ctx, &pubsubpb.CreateSchemaRequest{Parent: parent, SchemaId: id(Name("schemas", "bad")), Schema: bad})
		wantCode(t, "CreateSchema of "+bad.String(), err, codes.InvalidArgument)
		_, err = e.raw.Sch.ValidateSchema(e.ctx, &pubsubpb.ValidateSchemaRequest{Parent: parent, Schema: bad})
		wantCode(t, "ValidateSchema of "+bad.String(), err, codes.InvalidArgument)
	}
	if _, err := e.raw.Sch.ValidateSchema(e.ctx, &pubsubpb.ValidateSchemaRequest{Parent: parent, Schema: &pubsubpb.Schema{Type: pubsubpb.Schema_AVRO, Definition: avroOrderV2}}); err != nil {
		t.Fatalf("ValidateSchema of a valid schema: %v", err)
	}

	full, err := e.raw.Sch.GetSchema(e.ctx, &pubsubpb.GetSchemaRequest{Name: name})
	if err != nil || full.Definition != avroOrder || full.RevisionId != created.RevisionId {
		t.Fatalf("GetSchema (default view: FULL): %v, %v", full, err)
	}
	basic, err := e.raw.Sch.GetSchema(e.ctx, &pubsubpb.GetSchemaRequest{Name: name, View: pubsubpb.SchemaView_BASIC})
	if err != nil || basic.Definition != "" || basic.Type != pubsubpb.Schema_AVRO {
		t.Fatalf("GetSchema BASIC: %v, %v; want the type without the definition", basic, err)
	}
	list, err := e.raw.Sch.ListSchemas(e.ctx, &pubsubpb.ListSchemasRequest{Parent: parent, View: pubsubpb.SchemaView_FULL, PageSize: 1000})
	if err != nil || !slices.ContainsFunc(list.Schemas, func(s *pubsubpb.Schema) bool { return s.Name == name && s.Definition == avroOrder }) {
		t.Fatalf("ListSchemas FULL does not list %s with its definition: %v", name, err)
	}
	if _, err := e.raw.Sch.DeleteSchema(e.ctx, &pubsubpb.DeleteSchemaRequest{Name: name}); err != nil {
		t.Fatal(err)
	}
	_, err = e.raw.Sch.GetSchema(e.ctx, &pubsubpb.GetSchemaRequest{Name: name})
	wantCode(t, "GetSchema after DeleteSchema", err, codes.NotFound)
	_, err = e.raw.Sch.DeleteSchema(e.ctx, &pubsubpb.DeleteSchemaRequest{Name: name})
	wantCode(t, "DeleteSchema twice", err, codes.NotFound)
}

func testSchemaRevisions(t *testing.T, e *env) {
	e.skipUnless(t, e.f.Schemas, "SchemaService is not implemented")
	v1 := e.schema(t, pubsubpb.Schema_AVRO, avroOrder)
	v2, err := e.raw.Sch.CommitSchema(e.ctx, &pubsubpb.CommitSchemaRequest{Name: v1.Name, Schema: &pubsubpb.Schema{Type: pubsubpb.Schema_AVRO, Definition: avroOrderV2}})
	if err != nil {
		t.Fatalf("CommitSchema: %v", err)
	}
	if v2.RevisionId == "" || v2.RevisionId == v1.RevisionId || v2.Definition != avroOrderV2 {
		t.Fatalf("CommitSchema returned %v: want a new revision ID with the new definition", v2)
	}
	_, err = e.raw.Sch.CommitSchema(e.ctx, &pubsubpb.CommitSchemaRequest{Name: v1.Name, Schema: &pubsubpb.Schema{Type: pubsubpb.Schema_AVRO, Definition: `{"type":`}})
	wantCode(t, "CommitSchema of an invalid definition", err, codes.InvalidArgument)
	latest, err := e.raw.Sch.GetSchema(e.ctx, &pubsubpb.GetSchemaRequest{Name: v1.Name})
	if err != nil || latest.RevisionId != v2.RevisionId {
		t.Fatalf("GetSchema after a commit: %v, %v; want revision %s", latest, err, v2.RevisionId)
	}
	old, err := e.raw.Sch.GetSchema(e.ctx, &pubsubpb.GetSchemaRequest{Name: v1.Name + "@" + v1.RevisionId})
	if err != nil || old.Definition != avroOrder {
		t.Fatalf("GetSchema NAME@REVISION: %v, %v; want the first definition", old, err)
	}
	revs := func() []string {
		t.Helper()
		res, err := e.raw.Sch.ListSchemaRevisions(e.ctx, &pubsubpb.ListSchemaRevisionsRequest{Name: v1.Name, View: pubsubpb.SchemaView_FULL})
		if err != nil {
			t.Fatalf("ListSchemaRevisions: %v", err)
		}
		var ids []string
		for _, r := range res.Schemas {
			ids = append(ids, r.RevisionId)
		}
		return sorted(ids)
	}
	if got, want := revs(), sorted([]string{v1.RevisionId, v2.RevisionId}); !slices.Equal(got, want) {
		t.Fatalf("ListSchemaRevisions: %v, want %v", got, want)
	}
	back, err := e.raw.Sch.RollbackSchema(e.ctx, &pubsubpb.RollbackSchemaRequest{Name: v1.Name, RevisionId: v1.RevisionId})
	if err != nil {
		t.Fatalf("RollbackSchema: %v", err)
	}
	if back.Definition != avroOrder || back.RevisionId == v1.RevisionId || back.RevisionId == v2.RevisionId {
		t.Fatalf("RollbackSchema returned %v: want a new revision with the first definition", back)
	}
	_, err = e.raw.Sch.RollbackSchema(e.ctx, &pubsubpb.RollbackSchemaRequest{Name: v1.Name, RevisionId: "deadbeef"})
	wantCode(t, "RollbackSchema to an unknown revision", err, codes.NotFound)
	if _, err := e.raw.Sch.DeleteSchemaRevision(e.ctx, &pubsubpb.DeleteSchemaRevisionRequest{Name: v1.Name + "@" + v2.RevisionId}); err != nil {
		t.Fatalf("DeleteSchemaRevision: %v", err)
	}
	if got, want := revs(), sorted([]string{v1.RevisionId, back.RevisionId}); !slices.Equal(got, want) {
		t.Fatalf("ListSchemaRevisions after deleting %s: %v, want %v", v2.RevisionId, got, want)
	}
}

// testSchemaTopics publishes to a topic with schema settings, for each
// kind and encoding: conforming messages arrive with the attributes the
// service adds, others are refused with InvalidArgument.
func testSchemaTopics(t *testing.T, e *env) {
	for _, c := range schemaCases {
		t.Run(c.name, func(t *testing.T) {
			e.schemaSupported(t, c.typ)
			sc := e.schema(t, c.typ, c.def)
			topic := Name("topics", "schema")
			_, err := e.raw.Pub.CreateTopic(e.ctx, &pubsubpb.Topic{Name: topic, SchemaSettings: &pubsubpb.SchemaSettings{Schema: sc.Name, Encoding: c.enc}})
			if err != nil {
				t.Fatalf("CreateTopic with schema settings: %v", err)
			}
			sub := e.sub(t, &pubsubpb.Subscription{Topic: topic})
			id := e.publish(t, topic, &pubsubpb.PubsubMessage{Data: c.good, Attributes: map[string]string{"k": "v"}})[0]
			_, err = e.raw.Pub.Publish(e.ctx, &pubsubpb.PublishRequest{Topic: topic, Messages: []*pubsubpb.PubsubMessage{{Data: c.bad}}})
			wantCode(t, "Publish of a message that does not conform", err, codes.InvalidArgument)
			// All or nothing: a good message beside a bad one is refused too.
			_, err = e.raw.Pub.Publish(e.ctx, &pubsubpb.PublishRequest{Topic: topic, Messages: []*pubsubpb.PubsubMessage{{Data: c.good}, {Data: c.bad}}})
			wantCode(t, "Publish of a good and a bad message", err, codes.InvalidArgument)
			got := e.pull(t, sub, 1)[0]
			if got.Message.MessageId != id || string(got.Message.Data) != string(c.good) {
				t.Fatalf("received %s %q, want %s %q", got.Message.MessageId, got.Message.Data, id, c.good)
			}
			want := map[string]string{"k": "v", "googclient_schemaname": sc.Name, "googclient_schemaencoding": c.enc.String(), "googclient_schemarevisionid": sc.RevisionId}
			for k, v := range want {
				if got.Message.Attributes[k] != v {
					t.Errorf("attribute %s = %q, want %q (all: %v)", k, got.Message.Attributes[k], v, got.Message.Attributes)
				}
			}
			e.ack(t, sub, got)
			e.pullNone(t, sub, 300*time.Millisecond)

			// ValidateMessage, by name and by definition.
			for _, spec := range []*pubsubpb.ValidateMessageRequest{
				{SchemaSpec: &pubsubpb.ValidateMessageRequest_Name{Name: sc.Name}},
				{SchemaSpec: &pubsubpb.ValidateMessageRequest_Schema{Schema: &pubsubpb.Schema{Type: c.typ, Definition: c.def}}},
			} {
				spec.Parent, spec.Encoding = "projects/"+Project, c.enc
				spec.Message = c.good
				if _, err := e.raw.Sch.ValidateMessage(e.ctx, spec); err != nil {
					t.Errorf("ValidateMessage of a conforming message: %v", err)
				}
				spec.Message = c.bad
				_, err := e.raw.Sch.ValidateMessage(e.ctx, spec)
				wantCode(t, "ValidateMessage of a message that does not conform", err, codes.InvalidArgument)
			}
		})
	}
}

func testSchemaSettings(t *testing.T, e *env) {
	e.skipUnless(t, e.f.Schemas, "SchemaService is not implemented")
	sc := e.schema(t, pubsubpb.Schema_AVRO, avroOrder)
	_, err := e.raw.Pub.CreateTopic(e.ctx, &pubsubpb.Topic{Name: Name("topics", "noenc"), SchemaSettings: &pubsubpb.SchemaSettings{Schema: sc.Name}})
	wantCode(t, "CreateTopic with schema settings and no encoding", err, codes.InvalidArgument)
	_, err = e.raw.Pub.CreateTopic(e.ctx, &pubsubpb.Topic{Name: Name("topics", "nosc"), SchemaSettings: &pubsubpb.SchemaSettings{Schema: Name("schemas", "missing"), Encoding: pubsubpb.Encoding_JSON}})
	wantCode(t, "CreateTopic with a missing schema", err, codes.NotFound)
	_, err = e.raw.Pub.CreateTopic(e.ctx, &pubsubpb.Topic{Name: Name("topics", "norev"), SchemaSettings: &pubsubpb.SchemaSettings{Schema: sc.Name, Encoding: pubsubpb.Encoding_JSON, FirstRevisionId: "deadbeef"}})
	wantCode(t, "CreateTopic with a missing first revision", err, codes.NotFound)

	// Revisions: v1 (id, qty) then v2 (id, qty, note). A topic limited to
	// v2 refuses a v1 message; one open to both takes either and names the
	// revision each conformed to.
	v2, err := e.raw.Sch.CommitSchema(e.ctx, &pubsubpb.CommitSchemaRequest{Name: sc.Name, Schema: &pubsubpb.Schema{Type: pubsubpb.Schema_AVRO, Definition: avroOrderV2}})
	if err != nil {
		t.Fatal(err)
	}
	msgV1, msgV2 := []byte(`{"id":"a","qty":1}`), []byte(`{"id":"a","qty":1,"note":"n"}`)
	onlyV2 := Name("topics", "v2")
	if _, err := e.raw.Pub.CreateTopic(e.ctx, &pubsubpb.Topic{Name: onlyV2, SchemaSettings: &pubsubpb.SchemaSettings{Schema: sc.Name, Encoding: pubsubpb.Encoding_JSON, FirstRevisionId: v2.RevisionId}}); err != nil {
		t.Fatal(err)
	}
	e.publish(t, onlyV2, &pubsubpb.PubsubMessage{Data: msgV2})
	_, err = e.raw.Pub.Publish(e.ctx, &pubsubpb.PublishRequest{Topic: onlyV2, Messages: []*pubsubpb.PubsubMessage{{Data: msgV1}}})
	wantCode(t, "Publish of a v1 message to a topic whose first revision is v2", err, codes.InvalidArgument)
	both := Name("topics", "both")
	if _, err := e.raw.Pub.CreateTopic(e.ctx, &pubsubpb.Topic{Name: both, SchemaSettings: &pubsubpb.SchemaSettings{Schema: sc.Name, Encoding: pubsubpb.Encoding_JSON}}); err != nil {
		t.Fatal(err)
	}
	sub := e.sub(t, &pubsubpb.Subscription{Topic: both})
	e.publish(t, both, &pubsubpb.PubsubMessage{Data: msgV1}, &pubsubpb.PubsubMessage{Data: msgV2})
	revOf := map[string]string{}
	for _, rm := range e.pull(t, sub, 2) {
		revOf[string(rm.Message.Data)] = rm.Message.Attributes["googclient_schemarevisionid"]
	}
	if revOf[string(msgV1)] != sc.RevisionId || revOf[string(msgV2)] != v2.RevisionId {
		t.Errorf("googclient_schemarevisionid: v1 message %q, v2 message %q; want %s and %s", revOf[string(msgV1)], revOf[string(msgV2)], sc.RevisionId, v2.RevisionId)
	}

	// Deleting the schema leaves the topic, marked, and publishing fails.
	if _, err := e.raw.Sch.DeleteSchema(e.ctx, &pubsubpb.DeleteSchemaRequest{Name: sc.Name}); err != nil {
		t.Fatal(err)
	}
	got, err := e.raw.Pub.GetTopic(e.ctx, &pubsubpb.GetTopicRequest{Topic: both})
	if err != nil || got.GetSchemaSettings().GetSchema() != "_deleted-schema_" {
		t.Fatalf("topic after its schema was deleted: %v, %v; want schema_settings.schema _deleted-schema_", got, err)
	}
	_, err = e.raw.Pub.Publish(e.ctx, &pubsubpb.PublishRequest{Topic: both, Messages: []*pubsubpb.PubsubMessage{{Data: msgV1}}})
	if err == nil {
		t.Fatal("Publish to a topic whose schema was deleted succeeded")
	}
	t.Logf("Publish to a topic whose schema was deleted: %v (%v)", status.Code(err), err)
}
