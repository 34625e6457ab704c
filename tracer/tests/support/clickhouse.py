"""Runs docs/deploy.md's ClickHouse statements in the real ClickHouse engine (chdb):
the table, the load of a file of tracer's lines as the doc's shell command does it (its
grep, then its INSERT), and every query of "What the records answer there". Prints one
JSON object: the rows loaded and, for each query, its first comment line and its rows.

Usage: python clickhouse.py DEPLOY_MD TRACER_LINES
"""

import json
import re
import sys

from chdb import session


def section(doc, heading):
    """The text under `heading`, up to the next heading of its level."""
    return doc.split(heading + "\n", 1)[1].split("\n### ", 1)[0]


def statements(block):
    """The SQL statements of a fenced block, each with its leading comments."""
    return [s.strip() for s in block.split(";") if s.strip()]


def query(db, sql):
    return json.loads(db.query(sql, "JSON").bytes() or b'{"data": []}')["data"]


def main(deploy_md, lines_path):
    doc = open(deploy_md, encoding="utf-8").read()
    table = section(doc, "### A ClickHouse table")
    create = re.findall(r"```sql\n(.*?)```", table, re.S)[0]
    load = re.search(r"```sh\n(.*?)\n```", table, re.S).group(1)
    pattern = re.match(r"grep '([^']*)' \S+ \| clickhouse-client --query \"(.*)\"$", load)
    if pattern is None:
        sys.exit(f"the load command is not `grep '...' FILE | clickhouse-client --query \"...\"`: {load}")
    wanted, insert = pattern.groups()

    db = session.Session()
    db.query("SET output_format_json_quote_64bit_integers = 0")
    for statement in statements(create):
        db.query(statement)
    with open(lines_path, encoding="utf-8") as lines:
        rows = "".join(line for line in lines if wanted in line)
    db.query(insert + "\n" + rows)
    table_name = re.search(r"INSERT INTO (\S+)", insert).group(1)
    loaded = query(db, f"SELECT count() AS rows FROM {table_name}")[0]["rows"]

    answers = []
    queries = section(doc, "### What the records answer there")
    for statement in statements(re.findall(r"```sql\n(.*?)```", queries, re.S)[0]):
        comment = next(
            (l[3:] for l in statement.splitlines() if l.startswith("-- ")), statement
        )
        answers.append({"comment": comment, "rows": query(db, statement)})
    print(json.dumps({"loaded": loaded, "queries": answers}))


if __name__ == "__main__":
    main(*sys.argv[1:])
