// Package pgtx enqueues courier jobs in an application's own PostgreSQL
// transaction, for applications that share courier's database: the job is
// committed together with the application's writes, or not at all (the
// transactional outbox, like River's InsertTx). It is the typed face of
// jobs/postgres.EnqueueTx: it takes a protobuf message and
// client.EnqueueOptions, as client.Jobs.Enqueue does.
//
// It is not a client of the gRPC API: nothing checks that a handler is
// registered for the message's type, or bounds max attempts and the timeout
// by the type's config, as EnqueueJob does; pass types and limits your
// courier deployment handles.
package pgtx

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"

	"github.com/courierq/courier/client"
	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/jobs/postgres"
	"github.com/courierq/courier/publisher"
)

// Enqueue records a job whose payload is msg in tx, on the courier tables
// in schema (the store.schema of the courier deployment; "" means
// "public"), and returns its ID; duplicate is true when opts'
// IdempotencyKey is held by another job, whose ID it returns. Any courier
// replica's relay publishes it once tx commits.
func Enqueue(ctx context.Context, tx pgx.Tx, schema string, msg proto.Message, opts client.EnqueueOptions) (id string, duplicate bool, err error) {
	if msg == nil {
		return "", false, errors.New("pgtx: msg is nil: pass the job's protobuf message")
	}
	typ := string(msg.ProtoReflect().Descriptor().FullName())
	data, err := proto.Marshal(msg)
	if err != nil {
		return "", false, fmt.Errorf("pgtx: encoding the %s payload: %w", typ, err)
	}
	if err := publisher.CheckSize(typ, data, opts.Labels); err != nil {
		return "", false, fmt.Errorf("pgtx: %w", err)
	}
	switch {
	case opts.MaxAttempts < 0:
		return "", false, fmt.Errorf("pgtx: EnqueueOptions.MaxAttempts is %d: use 0 for the type's or a positive count", opts.MaxAttempts)
	case opts.Timeout < 0:
		return "", false, fmt.Errorf("pgtx: EnqueueOptions.Timeout is %v: use 0 for the type's or a positive duration", opts.Timeout)
	case opts.UniqueFor < 0:
		return "", false, fmt.Errorf("pgtx: EnqueueOptions.UniqueFor is %v: use 0 (the key is held while the job is kept) or a positive duration", opts.UniqueFor)
	}
	p := jobs.EnqueueParams{
		Job: jobs.Job{
			Type: typ, Payload: data, Labels: opts.Labels, IdempotencyKey: opts.IdempotencyKey, RunAfter: opts.RunAfter,
			MaxAttempts: opts.MaxAttempts, Timeout: opts.Timeout, OrderingKey: opts.OrderingKey,
		},
		UniqueFor: opts.UniqueFor, UniqueWhileActive: opts.UniqueWhileActive,
	}
	j, dup, err := postgres.EnqueueTx(ctx, tx, schema, p)
	if err != nil {
		return "", false, fmt.Errorf("pgtx: %w", err)
	}
	return j.ID, dup, nil
}
