# Writes the four variants of benches/layout/pg_copy/run.sh as SQL files into the
# scratch directory: 900 statements of 100 rows each, a transaction per 60.
import sys
d, cols = sys.argv[1], sys.argv[2]
def w(name, stmt):
    with open(f"{d}/{name}.sql", "w") as f:
        for i in range(900):
            if i % 60 == 0: f.write("BEGIN;\n")
            f.write(stmt(i) + "\n")
            if i % 60 == 59: f.write("COMMIT;\n")
lo = lambda i: i*100+1
w("A", lambda i: f"INSERT INTO prop ({cols}) SELECT {cols} FROM src WHERE g BETWEEN {lo(i)} AND {lo(i)+99} ON CONFLICT (tenant_id, id) DO NOTHING;")
w("B", lambda i: f"INSERT INTO prop ({cols}) SELECT {cols} FROM src WHERE g BETWEEN {lo(i)} AND {lo(i)+99};")
w("C", lambda i: f"COPY prop ({cols}) FROM '{d}/chunks/{i}.bin' (FORMAT binary);")
w("D", lambda i: f"SAVEPOINT s; COPY prop ({cols}) FROM '{d}/chunks/{i}.bin' (FORMAT binary); RELEASE s;")
