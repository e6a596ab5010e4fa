-- The staging rows of the COPY experiment: 90,000 issue-shaped Signals with
-- time-ordered derived ids, one tenant and connection (synthetic, like
-- benches/layout: the same shape as the peer harness records after mapping).
DROP TABLE IF EXISTS src;
CREATE TABLE src AS SELECT g, (lpad(to_hex((1672531200000000 + g::bigint*1000000)), 16, '0') || substr(encode(sha256(g::text::bytea),'hex'),1,16))::uuid AS id, '0190f5a2-0000-7000-8000-00000000b3c4'::uuid AS tenant_id, '0190f5a2-0000-7000-8000-00000000c001'::uuid AS connection_id, 'bench_issues'::text AS provider,
 CASE WHEN g%3=0 THEN 'issue_closed' ELSE 'issue_updated' END AS kind, '2023-01-01'::timestamptz + g*interval '1 second' AS occurred_at, now() AS received_at, g::text AS external_id,
 'Issue title number ' || g || ' (by @user' || (g%50) || ')' AS summary, NULL::text AS priority, ('["user' || (g%50) || '"]')::json AS participants, '["bug","p2"]'::json AS tags, '[]'::json AS related,
 'https://github.com/o/r/issues/' || g AS url, ('{"number":' || g || ',"state":"open","title":"Issue title number ' || g || '","created_at":"2023-01-01T00:00:00Z"}')::json AS payload
FROM generate_series(1, 90000) g; CREATE INDEX ON src (g); ANALYZE src;
