-- The `signals` layout since migration 13, as the table `prop`.
DROP TABLE IF EXISTS prop;
CREATE TABLE prop (tenant_id uuid not null, id uuid not null, connection_id uuid not null, provider text not null, kind text not null,
 occurred_at timestamptz not null, received_at timestamptz not null, external_id text not null, summary text not null, priority text,
 participants json not null, tags json not null, related json not null, url text, payload json not null,
 arrival_xid xid8 not null default pg_current_xact_id(), primary key (tenant_id, id));
CREATE INDEX ON prop (tenant_id, provider, id);
CREATE INDEX ON prop (tenant_id, provider, kind, id);
CREATE INDEX ON prop (tenant_id, kind, id);
CREATE INDEX ON prop (tenant_id, connection_id, id);
CREATE INDEX ON prop (tenant_id, arrival_xid, id);
