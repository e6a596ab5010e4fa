INSERT INTO prop (id, tenant_id, connection_id, provider, kind, occurred_at, received_at, external_id, summary, priority, participants, tags, related, url, payload)
SELECT (lpad(to_hex((1672531200000000 + g::bigint*1000000)), 16, '0') || substr(encode(sha256(g::text::bytea),'hex'),1,16))::uuid, '0190f5a2-0000-7000-8000-00000000b3c4', '0190f5a2-0000-7000-8000-00000000c001', 'bench_issues',
 CASE WHEN g%3=0 THEN 'issue_closed' ELSE 'issue_updated' END, '2023-01-01'::timestamptz + g*interval '1 second', now(), g::text,
 'Issue title number ' || g || ' (by @user' || (g%50) || ')', NULL, ('["user' || (g%50) || '"]')::text::jsonb, '["bug","p2"]'::text::jsonb, '[]'::text::jsonb,
 'https://github.com/o/r/issues/' || g, ('{"number":' || g || ',"state":"open","title":"Issue title number ' || g || '","created_at":"2023-01-01T00:00:00Z"}')::text::jsonb
FROM generate_series(:lo, :hi) g ON CONFLICT (tenant_id, id) DO NOTHING;
