# The SQLite half of the signal index-layout experiment (see pg_layout.sh):
# the current layout against the proposed one, 90,000 rows, WAL,
# synchronous=FULL, 100-row statements, 1,500 rows a transaction.
#   python3 benches/layout/sqlite_layout.py
import sqlite3, os, time, uuid, hashlib, json, tempfile
T=uuid.UUID('0190f5a2-0000-7000-8000-00000000b3c4').bytes
C=uuid.UUID('0190f5a2-0000-7000-8000-00000000c001').bytes
N=90000
def rows(prop):
    out=[]
    for g in range(1,N+1):
        occ=f"2023-01-{1+g//86400:02d}T{(g//3600)%24:02d}:{(g//60)%60:02d}:{g%60:02d}.000000+00:00"
        h=hashlib.sha256(str(g).encode()).digest()
        us=1672531200000000+g*1000000
        pid=us.to_bytes(8,'big')+h[:8]
        kind='issue_closed' if g%3==0 else 'issue_updated'
        common=[C,'bench_issues',kind,occ,'2026-12-03T00:00:00.000000+00:00',str(g),f'Issue title number {g} (by @user{g%50})',None,
          json.dumps([f'user{g%50}']),'["bug","p2"]','[]',f'https://github.com/o/r/issues/{g}',
          json.dumps({"number":g,"state":"open","title":f"Issue title number {g}","created_at":"2023-01-01T00:00:00Z"})]
        if prop: out.append([T,pid]+common)
        else: out.append([(1764720000000+g).to_bytes(6,"big")+os.urandom(10),T]+common+[h.hex()])
    return out
CUR="""CREATE TABLE signals (id blob primary key, tenant_id blob not null, connection_id blob not null, provider text not null, kind text not null,
 occurred_at text not null, received_at text not null, external_id text not null, summary text not null, priority text,
 participants text not null, tags text not null, related text not null, url text, payload text not null, dedupe_key text not null);
CREATE INDEX i1 ON signals (tenant_id, occurred_at desc, id desc);
CREATE UNIQUE INDEX i2 ON signals (tenant_id, occurred_at, dedupe_key);
CREATE INDEX i3 ON signals (tenant_id, provider, occurred_at, id);
CREATE INDEX i4 ON signals (tenant_id, provider, kind, occurred_at, id);
CREATE INDEX i5 ON signals (tenant_id, kind, occurred_at, id);
CREATE INDEX i6 ON signals (tenant_id, connection_id, occurred_at, id);
CREATE INDEX i7 ON signals (tenant_id);"""
PROP="""CREATE TABLE signals (tenant_id blob not null, id blob not null, connection_id blob not null, provider text not null, kind text not null,
 occurred_at text not null, received_at text not null, external_id text not null, summary text not null, priority text,
 participants text not null, tags text not null, related text not null, url text, payload text not null, primary key (tenant_id, id));
CREATE INDEX i3 ON signals (tenant_id, provider, id);
CREATE INDEX i4 ON signals (tenant_id, provider, kind, id);
CREATE INDEX i5 ON signals (tenant_id, kind, id);
CREATE INDEX i6 ON signals (tenant_id, connection_id, id);
CREATE INDEX i7 ON signals (tenant_id);"""
def run(prop):
    with tempfile.TemporaryDirectory() as d:
        return timed(os.path.join(d, 't.db'), prop)
def timed(path, prop):
    db=sqlite3.connect(path, isolation_level=None)
    db.execute('pragma journal_mode=wal'); db.execute('pragma synchronous=full')
    db.executescript(PROP if prop else CUR)
    rs=rows(prop)
    ncol=len(rs[0]); q=f"INSERT INTO signals VALUES ({','.join('?'*ncol)}) ON CONFLICT DO NOTHING"
    t=time.perf_counter()
    for i in range(0,N,1500):
        db.execute('BEGIN IMMEDIATE')
        for j in range(i,min(i+1500,N),100):
            db.executemany(q, rs[j:j+100])
        db.execute('COMMIT')
    elapsed=time.perf_counter()-t
    db.close()
    return elapsed
for r in range(3):
    print('cur %.3f'%run(False), 'prop %.3f'%run(True), flush=True)
