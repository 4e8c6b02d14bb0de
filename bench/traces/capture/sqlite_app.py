#!/usr/bin/env python3
"""An app-like SQLite workload (Python's sqlite3 module, WAL mode):
  load DB         users (2M rows, ~300 B) and orders (6M rows, ~100 B,
                  indexed by user and by time), made by SQL in big batches;
  run DB SECONDS  transactions of 50 statements, until SECONDS have passed:
                  60% user by id, 15% a user's 20 latest orders, 15% a new
                  order, 9% a user's balance update, 1% a sum over 1% of
                  the orders by time. Users are picked skewed (rank =
                  n * u^4, ranks scattered over the ids). Seeded: the same
                  statements every run (timing decides where it stops).
"""
import random
import sqlite3
import sys
import time

USERS = 2_000_000
ORDERS = 6_000_000


def load(path):
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript("""
      CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT, email TEXT,
                         balance INTEGER, profile BLOB);
      CREATE TABLE orders(id INTEGER PRIMARY KEY, user_id INTEGER,
                          created INTEGER, amount INTEGER, note TEXT);
    """)
    step = 200_000
    for lo in range(0, USERS, step):
        db.execute("""
          WITH RECURSIVE n(i) AS (SELECT ? UNION ALL SELECT i + 1 FROM n
                                  WHERE i + 1 < ?)
          INSERT INTO users SELECT i, 'user' || i, 'u' || i || '@example.org',
                 i % 1000, randomblob(240) FROM n""", (lo, lo + step))
        db.commit()
    for lo in range(0, ORDERS, step):
        db.execute("""
          WITH RECURSIVE n(i) AS (SELECT ? UNION ALL SELECT i + 1 FROM n
                                  WHERE i + 1 < ?)
          INSERT INTO orders SELECT i, abs(random()) % ?, i, i % 977,
                 hex(randomblob(30)) FROM n""", (lo, lo + step, USERS))
        db.commit()
    db.executescript("""
      CREATE INDEX orders_user ON orders(user_id, created);
      CREATE INDEX orders_created ON orders(created);
    """)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def run(path, seconds):
    rng = random.Random(17)
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")

    def user():
        rank = int(USERS * rng.random() ** 4)
        return (rank * 2654435761) % USERS

    next_order = ORDERS
    end = time.monotonic() + seconds
    txns = 0
    while time.monotonic() < end:
        for _ in range(50):
            r = rng.random()
            if r < 0.60:
                db.execute("SELECT * FROM users WHERE id = ?",
                           (user(),)).fetchall()
            elif r < 0.75:
                db.execute("SELECT * FROM orders WHERE user_id = ? "
                           "ORDER BY created DESC LIMIT 20",
                           (user(),)).fetchall()
            elif r < 0.90:
                db.execute("INSERT INTO orders VALUES(?, ?, ?, ?, ?)",
                           (next_order, user(), next_order,
                            rng.randrange(1000), "%030x" % rng.getrandbits(120)))
                next_order += 1
            elif r < 0.99:
                db.execute("UPDATE users SET balance = balance + 1 "
                           "WHERE id = ?", (user(),))
            else:
                lo = rng.randrange(next_order)
                db.execute("SELECT sum(amount) FROM orders WHERE created "
                           "BETWEEN ? AND ?", (lo, lo + ORDERS // 100)).fetchall()
        db.commit()
        txns += 1
    db.close()
    print(f"sqlite_app: {txns} transactions in {seconds} s", file=sys.stderr)


if __name__ == "__main__":
    if sys.argv[1] == "load":
        load(sys.argv[2])
    else:
        run(sys.argv[2], float(sys.argv[3]))
