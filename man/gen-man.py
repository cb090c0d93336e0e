#!/usr/bin/env python3
"""Generates edgekv's man pages from the templates in this folder.

    gen-man.py --edgekvd PATH --version VERSION --out DIR [--date YYYY-MM-DD]

Writes DIR/edgekvd.8, DIR/kvcli.1 and DIR/edgekv.conf.5. Every page gets the version and
the date (--date, else $SOURCE_DATE_EPOCH, else today, UTC). edgekv.conf(5) also gets its
SETTINGS section, one entry per option of `edgekvd --help` (the daemon's option table),
so the page lists exactly the options the daemon accepts, with their defaults and help.
"""

import argparse
import datetime
import os
import pathlib
import re
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
PAGES = ("edgekvd.8", "kvcli.1", "edgekv.conf.5")

OPTION_RE = re.compile(r"^  --([a-z0-9][a-z0-9-]*) \(default: (.*)\)$")


def fail(message):
    sys.exit(f"gen-man.py: {message}")


def parse_options(help_text):
    """[(name, default, help)] of the options after the 'Options:' line of --help."""
    lines = help_text.splitlines()
    try:
        start = lines.index("Options:") + 1
    except ValueError:
        fail("no 'Options:' line in edgekvd --help")
    options = []
    for line in lines[start:]:
        match = OPTION_RE.match(line)
        if match:
            options.append([match.group(1), match.group(2), []])
        elif line.startswith("      ") and options:
            options[-1][2].append(line.strip())
        elif line.strip():
            fail(f"unexpected line in edgekvd --help: {line!r}")
    if not options:
        fail("edgekvd --help lists no options")
    return [(name, default, " ".join(text)) for name, default, text in options]


def roff_text(text):
    """Plain text as roff: backslashes and hyphens escaped, never a control line."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    if text.startswith((".", "'")):
        text = "\\&" + text
    return text


def settings_section(options):
    out = []
    for name, default, text in options:
        if not text:
            fail(f"option {name} has no help text")
        out.append(".TP")
        out.append(f"\\fB{roff_text(name)}\\fR (default: \\fI{roff_text(default)}\\fR)")
        out.append(roff_text(text))
    return "\n".join(out)


def page_date(given):
    if given:
        return given
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    moment = (datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc)
              if epoch else datetime.datetime.now(datetime.timezone.utc))
    return moment.strftime("%Y-%m-%d")


def main():
    parser = argparse.ArgumentParser(description="Generate edgekv's man pages.")
    parser.add_argument("--edgekvd", required=True, help="the edgekvd binary to ask --help")
    parser.add_argument("--version", required=True)
    parser.add_argument("--out", required=True, type=pathlib.Path)
    parser.add_argument("--date")
    args = parser.parse_args()

    run = subprocess.run([args.edgekvd, "--help"], capture_output=True, text=True,
                         check=False)
    if run.returncode != 0:
        fail(f"{args.edgekvd} --help exited {run.returncode}: {run.stderr.strip()}")
    values = {
        "@VERSION@": args.version,
        "@DATE@": page_date(args.date),
        "@OPTIONS@": settings_section(parse_options(run.stdout)),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    for page in PAGES:
        text = (HERE / f"{page}.in").read_text(encoding="utf-8")
        for key, value in values.items():
            text = text.replace(key, value)
        leftover = re.search(r"@[A-Z_]+@", text)
        if leftover:
            fail(f"{page}.in: unknown placeholder {leftover.group(0)}")
        (args.out / page).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
