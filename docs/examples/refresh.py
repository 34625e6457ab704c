# Refreshes docs/events.md's examples after a deliberate change to the output: every
# `connection` line is replaced by what this build's `tracer replay` prints for the same
# connection (same `sock` and `start`) of the two recorded traces, and the flow graph by
# what `--format pretty` draws for it. Event lines are the traces' own and do not change.
# Then `replay::the_docs_examples_are_what_tracer_prints` passes again.
#   python3 docs/examples/refresh.py target/debug/tracer
import json, re, subprocess, sys
from pathlib import Path

root = Path(__file__).resolve().parents[2]
tracer = sys.argv[1] if len(sys.argv) > 1 else str(root / "target/debug/tracer")
traces = [root / "docs/examples/trace.jsonl", root / "docs/examples/tls-trace.jsonl",
          root / "tracer/tests/golden/trace.jsonl"]


def replay(trace, *args):
    return subprocess.run([tracer, "replay", str(trace), *args], check=True,
                          capture_output=True, text=True).stdout


records = {}
for trace in traces:
    for line in replay(trace).splitlines():
        record = json.loads(line)
        if record.get("event") == "connection":
            records[(record["sock"], record["start"])] = line

doc = root / "docs/events.md"
lines = []
for line in doc.read_text().split("\n"):
    if line.startswith("{") and '"event":"connection"' in line:
        record = json.loads(line)
        line = records[(record["sock"], record["start"])]
    lines.append(line)
text = "\n".join(lines)

# The flow graph: the same connection as drawn now (its first two lines name it).
start = text.index("```\nconnection ")
end = text.index("```", start + 4)
head = text[start + 4:end].split("\n")[:2]
pretty = replay(traces[0], "--format", "pretty")
graphs = re.split(r"\n(?=connection \d+:)", pretty)
graph = next(g for g in graphs if g.split("\n")[:2] == head).rstrip("\n")
text = text[:start] + "```\n" + graph + "\n" + text[end:]
doc.write_text(text)
