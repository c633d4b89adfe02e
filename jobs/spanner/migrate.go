package spanner

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	gs "cloud.google.com/go/spanner"
	database "cloud.google.com/go/spanner/admin/database/apiv1"
	"cloud.google.com/go/spanner/admin/database/apiv1/databasepb"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"

	"github.com/courierq/courier/jobs/internal/storekit"
)

// migrationLease is how long a process may take to apply one migration
// before another one takes it over (DDL on a large database can take
// minutes; the statements are idempotent, so a takeover is safe).
const migrationLease = 10 * time.Minute

const createMigrations = `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    INT64 NOT NULL,
	name       STRING(MAX) NOT NULL,
	owner      STRING(MAX) NOT NULL,
	lease      TIMESTAMP NOT NULL,
	applied_at TIMESTAMP
) PRIMARY KEY (version)`

// migrate applies the embedded migrations that the database lacks. Each is
// taken by one process at a time through its schema_migrations row (owner,
// lease); the others wait until it is applied.
func migrate(ctx context.Context, cfg Config, client *gs.Client) error {
	ms, err := storekit.Migrations(pkg, migrationsFS, "migrations")
	if err != nil {
		return err
	}
	latest := ms[len(ms)-1].Version
	// A database that is up to date needs no schema change (nor the right
	// to make one): the common start.
	have, err := appliedVersion(ctx, client)
	if err != nil {
		return fmt.Errorf("%s: read the schema version of %s: %w", pkg, cfg.Database, err)
	}
	if have == latest {
		return nil
	}
	if have > latest {
		return fmt.Errorf("%s: database %s is at schema version %d, newer than this build knows (%d): run a newer courier", pkg, cfg.Database, have, latest)
	}
	admin, err := database.NewDatabaseAdminClient(ctx, cfg.ClientOptions...)
	if err != nil {
		return fmt.Errorf("%s: connect the database admin API: %w", pkg, err)
	}
	defer admin.Close()
	if err := ddl(ctx, admin, cfg.Database, []string{createMigrations}); err != nil {
		return fmt.Errorf("%s: create schema_migrations in %s (the first start needs the right to change the schema, e.g. roles/spanner.databaseAdmin): %w", pkg, cfg.Database, err)
	}
	host, _ := os.Hostname()
	owner := fmt.Sprintf("%s/%d/%s", host, os.Getpid(), uuid.NewString())
	for _, m := range ms {
		if m.Version <= have {
			continue
		}
		if err := applyOnce(ctx, admin, client, cfg.Database, owner, m); err != nil {
			return err
		}
	}
	return nil
}

// appliedVersion is the highest applied migration (0: none, or no
// schema_migrations table yet).
func appliedVersion(ctx context.Context, client *gs.Client) (int, error) {
	var tables int64
	err := client.Single().Query(ctx, gs.Statement{SQL: `SELECT COUNT(*) FROM information_schema.tables
		WHERE table_schema = '' AND table_name = 'schema_migrations'`}).Do(func(r *gs.Row) error { return r.Columns(&tables) })
	if err != nil || tables == 0 {
		return 0, err
	}
	var v gs.NullInt64
	err = client.Single().Query(ctx, gs.Statement{SQL: `SELECT MAX(version) FROM schema_migrations WHERE applied_at IS NOT NULL`}).
		Do(func(r *gs.Row) error { return r.Columns(&v) })
	return int(v.Int64), err
}

// applyOnce applies m unless another process has, or holds its lease (then
// it waits for that one).
func applyOnce(ctx context.Context, admin *database.DatabaseAdminClient, client *gs.Client, db, owner string, m storekit.Migration) error {
	for {
		var mine, done bool
		_, err := rw(ctx, client, func(ctx context.Context, tx *gs.ReadWriteTransaction) error {
			mine, done = false, false
			row, err := tx.ReadRow(ctx, "schema_migrations", gs.Key{int64(m.Version)}, []string{"owner", "lease", "applied_at"})
			if err != nil && gs.ErrCode(err) != codes.NotFound {
				return err
			}
			now := time.Now()
			if err == nil {
				var (
					o       string
					lease   time.Time
					applied gs.NullTime
				)
				if err := row.Columns(&o, &lease, &applied); err != nil {
					return err
				}
				if applied.Valid {
					done = true
					return nil
				}
				if o != owner && lease.After(now) {
					return nil // another process applies it: wait
				}
			}
			mine = true
			return tx.BufferWrite([]*gs.Mutation{gs.InsertOrUpdate("schema_migrations",
				[]string{"version", "name", "owner", "lease"},
				[]any{int64(m.Version), m.Name, owner, now.Add(migrationLease)})})
		})
		if err != nil {
			return fmt.Errorf("%s: take migration %s of %s: %w", pkg, m.Name, db, err)
		}
		if done {
			return nil
		}
		if !mine {
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s: wait for another process to apply migration %s to %s: %w", pkg, m.Name, db, ctx.Err())
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		if err := ddl(ctx, admin, db, statements(m.SQL)); err != nil {
			return fmt.Errorf("%s: apply migration %s to %s: %w", pkg, m.Name, db, err)
		}
		_, err = apply(ctx, client, gs.Update("schema_migrations",
			[]string{"version", "applied_at"}, []any{int64(m.Version), time.Now()}))
		if err != nil {
			return fmt.Errorf("%s: record migration %s of %s: %w", pkg, m.Name, db, err)
		}
		return nil
	}
}

// ddl runs statements as one schema change and waits for it. The emulator
// (and Spanner, for some changes) refuses a schema change while another
// runs: those are retried.
func ddl(ctx context.Context, admin *database.DatabaseAdminClient, db string, stmts []string) error {
	backoff := 100 * time.Millisecond
	for {
		op, err := admin.UpdateDatabaseDdl(ctx, &databasepb.UpdateDatabaseDdlRequest{Database: db, Statements: stmts})
		if err == nil {
			err = op.Wait(ctx)
		}
		if err == nil {
			return nil
		}
		switch gs.ErrCode(err) {
		case codes.Aborted, codes.FailedPrecondition, codes.Unavailable:
			if ctx.Err() != nil {
				return err
			}
		default:
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// statements splits a migration file into its DDL statements: separated by
// ';' at the end of a line, with '--' comment lines dropped.
func statements(sql string) []string {
	var (
		out []string
		cur strings.Builder
	)
	for _, line := range strings.Split(sql, "\n") {
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "--") {
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
		if strings.HasSuffix(t, ";") {
			out = append(out, strings.TrimSuffix(strings.TrimSpace(cur.String()), ";"))
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		out = append(out, s)
	}
	return out
}
