"""A small FastAPI app for the deployctl examples.

Routes: GET / (which replica answered), GET /healthz (the health probe), GET /items (the rows
of the SQLite database at $APP_DB). migrate.py, a pre-start step, creates that database; the
app refuses to start without it, so a deployment whose migration did not run fails fast.
"""
import os
import sqlite3

from fastapi import FastAPI

app = FastAPI(title="deployctl example")


def database_path() -> str:
    return os.environ.get("APP_DB", "app.db")


@app.on_event("startup")
def require_database() -> None:
    path = database_path()
    if not os.path.exists(path):
        raise RuntimeError(f"database {path} does not exist: run migrate.py first")


@app.get("/")
def root() -> dict:
    """The replica that answered, as deployctl names it (web.2), and its pid."""
    service = os.environ.get("DEPLOYCTL_SERVICE", "?")
    index = os.environ.get("DEPLOYCTL_REPLICA", "?")
    return {"app": "deployctl-example", "replica": f"{service}.{index}", "pid": os.getpid()}


@app.get("/healthz")
def healthz() -> dict:
    return {"status": "ok"}


@app.get("/items")
def items() -> list:
    with sqlite3.connect(f"file:{database_path()}?mode=ro", uri=True) as connection:
        rows = connection.execute("SELECT id, name FROM items ORDER BY id").fetchall()
    return [{"id": row_id, "name": name} for row_id, name in rows]
