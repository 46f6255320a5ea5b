#!/usr/bin/python3
"""Pre-start step of the examples: creates the SQLite database at $APP_DB (default app.db)
with an `items` table and its seed rows. Idempotent: running it again changes nothing.
Exits 1 with one line on stderr naming the database if it cannot be written."""
import os
import sqlite3
import sys

SEED_ITEMS = [(1, "apple"), (2, "banana"), (3, "cherry")]


def migrate(path: str) -> int:
    with sqlite3.connect(path) as connection:
        connection.execute(
            "CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        connection.executemany("INSERT OR IGNORE INTO items (id, name) VALUES (?, ?)", SEED_ITEMS)
        return connection.execute("SELECT COUNT(*) FROM items").fetchone()[0]


def main() -> int:
    path = os.environ.get("APP_DB", "app.db")
    try:
        count = migrate(path)
    except sqlite3.Error as error:
        print(f"migrate: cannot write the database {path!r}: {error}", file=sys.stderr)
        return 1
    print(f"migrate: {path} has {count} items")
    return 0


if __name__ == "__main__":
    sys.exit(main())
