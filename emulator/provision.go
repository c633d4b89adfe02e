package emulator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"
)

// Resources are the schemas, topics and subscriptions an emulator is
// given at start (Server.Provision; `pubsub-emulator --config FILE`), so
// that test suites in any language and docker-compose files need no
// setup script. ParseResources reads them from YAML or JSON:
//
//	project: demo                # the project of names given without one
//	schemas:
//	  - name: order              # or projects/demo/schemas/order
//	    type: AVRO               # or PROTOCOL_BUFFER
//	    definitionFile: order.avsc   # relative to the file; or definition: '...'
//	topics:
//	  - name: orders
//	    schemaSettings: {schema: order, encoding: JSON}
//	    subscriptions:
//	      - name: orders-worker
//	        ackDeadlineSeconds: 30
//	        deadLetterPolicy: {deadLetterTopic: orders-dead, maxDeliveryAttempts: 5}
//	  - name: orders-dead
//	    subscriptions: [{name: orders-dead-watch}]
//
// A topic takes every field of google.pubsub.v1.Topic and a subscription
// every field of google.pubsub.v1.Subscription, in their JSON form
// (camelCase or snake_case names, durations as "30s"); a subscription's
// topic is the one it is listed under.
type Resources struct {
	Schemas       []*pubsubpb.Schema
	Topics        []*pubsubpb.Topic
	Subscriptions []*pubsubpb.Subscription
}

// protoPos matches protojson's "proto: (line L:C): " prefix; protobuf-go
// writes its spaces as either a space or a non-breaking space, at random,
// so that nobody depends on its error text.
var protoPos = regexp.MustCompile(`proto:[ \x{00a0}]+(\(line \d+:\d+\):[ \x{00a0}]+)?`)

// ErrConfig is wrapped by every error of ParseResources.
var ErrConfig = errors.New("emulator: invalid resources config")

// ParseResources reads Resources from YAML or JSON. file names the source
// in errors and locates definitionFile paths; it is not read.
func ParseResources(data []byte, file string) (*Resources, error) {
	fail := func(where, format string, args ...any) error {
		// protojson's positions are in JSON made from the YAML: no help.
		msg := protoPos.ReplaceAllString(fmt.Sprintf(format, args...), "")
		return fmt.Errorf("%w: %s: %s: %s", ErrConfig, file, where, msg)
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrConfig, file, err)
	}
	var doc struct {
		Project string                       `json:"project"`
		Schemas []map[string]json.RawMessage `json:"schemas"`
		Topics  []map[string]json.RawMessage `json:"topics"`
	}
	dec := json.NewDecoder(strings.NewReader(string(js)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("%w: %s: %v (the top level takes project, schemas and topics)", ErrConfig, file, err)
	}
	full := func(kind, name string) (string, error) {
		if name == "" || strings.HasPrefix(name, "projects/") {
			return name, nil
		}
		if doc.Project == "" {
			return "", fmt.Errorf("%s %q has no project: give its full name (projects/P/%s/%s) or set project at the top", strings.TrimSuffix(kind, "s"), name, kind, name)
		}
		return "projects/" + doc.Project + "/" + kind + "/" + name, nil
	}
	opts := protojson.UnmarshalOptions{}
	r := &Resources{}
	for i, m := range doc.Schemas {
		where := fmt.Sprintf("schemas[%d]", i)
		if raw, ok := m["definitionFile"]; ok {
			var p string
			if err := json.Unmarshal(raw, &p); err != nil {
				return nil, fail(where, "definitionFile must be a path: %v", err)
			}
			if !filepath.IsAbs(p) {
				p = filepath.Join(filepath.Dir(file), p)
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return nil, fail(where, "reading definitionFile: %v", err)
			}
			m["definition"], _ = json.Marshal(string(b))
			delete(m, "definitionFile")
		}
		b, _ := json.Marshal(m)
		sc := &pubsubpb.Schema{}
		if err := opts.Unmarshal(b, sc); err != nil {
			return nil, fail(where, "%v", err)
		}
		if sc.Name, err = full("schemas", sc.Name); err != nil || sc.Name == "" {
			return nil, fail(where, "%v", orMissing(err, "name"))
		}
		r.Schemas = append(r.Schemas, sc)
	}
	for i, m := range doc.Topics {
		where := fmt.Sprintf("topics[%d]", i)
		subsRaw := m["subscriptions"]
		delete(m, "subscriptions")
		b, _ := json.Marshal(m)
		t := &pubsubpb.Topic{}
		if err := opts.Unmarshal(b, t); err != nil {
			return nil, fail(where, "%v (a topic also takes subscriptions)", err)
		}
		if t.Name, err = full("topics", t.Name); err != nil || t.Name == "" {
			return nil, fail(where, "%v", orMissing(err, "name"))
		}
		where += " (" + t.Name + ")"
		if ss := t.SchemaSettings; ss != nil {
			if ss.Schema, err = full("schemas", ss.Schema); err != nil {
				return nil, fail(where, "schemaSettings: %v", err)
			}
		}
		r.Topics = append(r.Topics, t)
		var subs []json.RawMessage
		if subsRaw != nil {
			if err := json.Unmarshal(subsRaw, &subs); err != nil {
				return nil, fail(where, "subscriptions must be a list: %v", err)
			}
		}
		for j, raw := range subs {
			where := fmt.Sprintf("%s.subscriptions[%d]", where, j)
			s := &pubsubpb.Subscription{}
			if err := opts.Unmarshal(raw, s); err != nil {
				return nil, fail(where, "%v", err)
			}
			if s.Name, err = full("subscriptions", s.Name); err != nil || s.Name == "" {
				return nil, fail(where, "%v", orMissing(err, "name"))
			}
			if s.Topic != "" && s.Topic != t.Name {
				return nil, fail(where, "topic %q differs from the topic it is listed under; leave it out", s.Topic)
			}
			s.Topic = t.Name
			if dlp := s.DeadLetterPolicy; dlp != nil {
				if dlp.DeadLetterTopic, err = full("topics", dlp.DeadLetterTopic); err != nil {
					return nil, fail(where, "deadLetterPolicy: %v", err)
				}
			}
			r.Subscriptions = append(r.Subscriptions, s)
		}
	}
	return r, nil
}

func orMissing(err error, field string) error {
	if err != nil {
		return err
	}
	return fmt.Errorf("%s is missing", field)
}

// LoadResources reads Resources from a YAML or JSON file.
func LoadResources(path string) (*Resources, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	return ParseResources(b, path)
}

// Provision creates r's schemas, then topics, then subscriptions on s
// (through its gRPC API, so any emulator takes them and each is validated
// as a client's would be). What exists already is kept as it is: with a
// data dir, a restart provisions nothing twice. It returns one line per
// resource saying which it did.
func (s *Server) Provision(ctx context.Context, r *Resources) ([]string, error) {
	conn, err := s.Dial()
	if err != nil {
		return nil, fmt.Errorf("emulator: provisioning: %w", err)
	}
	defer conn.Close()
	sch, pub, sub := pubsubpb.NewSchemaServiceClient(conn), pubsubpb.NewPublisherClient(conn), pubsubpb.NewSubscriberClient(conn)
	var report []string
	did := func(kind, name string, err error) error {
		switch status.Code(err) {
		case codes.OK:
			report = append(report, "created "+kind+" "+name)
		case codes.AlreadyExists:
			report = append(report, "kept "+kind+" "+name+" (it exists)")
		default:
			return fmt.Errorf("emulator: provisioning %s %s: %w", kind, name, err)
		}
		return nil
	}
	for _, sc := range r.Schemas {
		parent, id, _ := strings.Cut(strings.TrimPrefix(sc.Name, "projects/"), "/schemas/")
		_, err := sch.CreateSchema(ctx, &pubsubpb.CreateSchemaRequest{Parent: "projects/" + parent, SchemaId: id, Schema: sc})
		if err := did("schema", sc.Name, err); err != nil {
			return report, err
		}
	}
	for _, t := range r.Topics {
		_, err := pub.CreateTopic(ctx, t)
		if err := did("topic", t.Name, err); err != nil {
			return report, err
		}
	}
	for _, x := range r.Subscriptions {
		_, err := sub.CreateSubscription(ctx, x)
		if err := did("subscription", x.Name, err); err != nil {
			return report, err
		}
	}
	return report, nil
}
