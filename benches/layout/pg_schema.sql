-- The two layouts of pg_layout.sh (`cur`: today's, `prop`: proposed).
DROP TABLE IF EXISTS cur; DROP TABLE IF EXISTS prop;
CREATE TABLE cur (id uuid primary key, tenant_id uuid not null, connection_id uuid not null, provider text not null, kind text not null,
 occurred_at timestamptz not null, received_at timestamptz not null, external_id text not null, summary text not null, priority text,
 participants jsonb not null, tags jsonb not null, related jsonb not null, url text, payload jsonb not null, dedupe_key text not null,
 arrival_xid xid8 not null default pg_current_xact_id());
CREATE INDEX ON cur (tenant_id, occurred_at desc, id desc);
CREATE UNIQUE INDEX ON cur (tenant_id, occurred_at, dedupe_key);
CREATE INDEX ON cur (tenant_id, provider, occurred_at, id);
CREATE INDEX ON cur (tenant_id, provider, kind, occurred_at, id);
CREATE INDEX ON cur (tenant_id, kind, occurred_at, id);
CREATE INDEX ON cur (tenant_id, connection_id, occurred_at, id);
CREATE INDEX ON cur (tenant_id, arrival_xid, id);
CREATE TABLE prop (tenant_id uuid not null, id uuid not null, connection_id uuid not null, provider text not null, kind text not null,
 occurred_at timestamptz not null, received_at timestamptz not null, external_id text not null, summary text not null, priority text,
 participants jsonb not null, tags jsonb not null, related jsonb not null, url text, payload jsonb not null,
 arrival_xid xid8 not null default pg_current_xact_id(), primary key (tenant_id, id));
CREATE INDEX ON prop (tenant_id, provider, id);
CREATE INDEX ON prop (tenant_id, provider, kind, id);
CREATE INDEX ON prop (tenant_id, kind, id);
CREATE INDEX ON prop (tenant_id, connection_id, id);
CREATE INDEX ON prop (tenant_id, arrival_xid, id);
