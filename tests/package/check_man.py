#!/usr/bin/env python3
"""The man pages against the programs they describe (ctest package.man).

    check_man.py --edgekvd PATH --kvcli PATH --version V --out DIR
    check_man.py --pages DIR --edgekvd PATH --kvcli PATH     (pages already generated)

Generates the pages with man/gen-man.py into DIR (unless --pages names generated ones),
then fails when:
  - an option of `edgekvd --help` has no entry in edgekv.conf(5) (or, for the
    command-line-only ones, in edgekvd(8));
  - a command of `kvcli --help` has no entry in the COMMANDS section of kvcli(1) or is
    missing from its SYNOPSIS, a flag of `kvcli COMMAND --help` has no entry of its own
    in that command's entry, or a global flag none in GLOBAL FLAGS;
  - an exit status of kvcli --help is missing from EXIT STATUS;
  - mandoc -Tlint or man --warnings reports anything.
"""

import argparse
import os
import pathlib
import re
import shutil
import subprocess
import sys

TOP = pathlib.Path(__file__).resolve().parents[2]

failures = []


def fail(message):
    failures.append(message)
    print(f"FAIL: {message}")


def run(args, **kwargs):
    result = subprocess.run(args, capture_output=True, text=True, check=False, **kwargs)
    if result.returncode != 0:
        sys.exit(f"{' '.join(map(str, args))} exited {result.returncode}: {result.stderr}")
    return result.stdout


def plain(roff_line):
    """A roff source line as text: font escapes dropped, \\- and \\e unescaped."""
    text = re.sub(r"\\f[BIRP]", "", roff_line)
    text = text.replace("\\-", "-").replace("\\e", "\\").replace("\\&", "")
    text = re.sub(r"^\.(B|I|BR|RB|BI|IB|IR|RI)\s+", "", text)
    return text.replace('"', "")


def sections(page_text):
    """{SECTION NAME: [source lines]}."""
    out, current = {}, None
    for line in page_text.splitlines():
        if line.startswith(".SH "):
            current = line[4:].strip().strip('"')
            out[current] = []
        elif current:
            out[current].append(line)
    return out


def entries(lines):
    """Top-level .TP entries of a section: [(tag, body text, nested tags)]; the nested
    tags are those of the .TP paragraphs inside the entry's .RS/.RE block."""
    result, depth, i = [], 0, 0
    while i < len(lines):
        line = lines[i]
        if line.startswith(".RS"):
            depth += 1
        elif line.startswith(".RE"):
            depth -= 1
        elif line.startswith(".TP") and i + 1 < len(lines):
            if depth == 0:
                result.append([plain(lines[i + 1]), [], []])
            elif result:
                result[-1][2].append(plain(lines[i + 1]))
                result[-1][1].append(plain(lines[i + 1]))
            i += 2
            continue
        if result:
            result[-1][1].append(plain(line))
        i += 1
    return [(tag, "\n".join(body), nested) for tag, body, nested in result]


def help_blocks(text):
    """{heading: [lines]} of a help text's 'Heading:' blocks."""
    blocks, current = {}, None
    for line in text.splitlines():
        if re.match(r"^[A-Z][A-Za-z ()]*:$", line):
            current = line[:-1]
            blocks[current] = []
        elif not line.strip():
            current = None if current and blocks[current] else current
        elif current:
            blocks[current].append(line)
    return blocks


def first_column(lines):
    """The entries of a two-column help block: rows indented by exactly two spaces."""
    return [line.split("   ")[0].strip() for line in lines if re.match(r"^  \S", line)]


def flag_names(rows):
    """The flag names of help rows such as '-h, --help' or '--ttl SECONDS'."""
    names = []
    for row in rows:
        names += re.findall(r"(?:^|[ ,])(--?[a-z][a-z0-9-]*)", row)
    return names


def check_edgekvd(edgekvd, pages):
    help_text = run([edgekvd, "--help"])
    conf = sections((pages / "edgekv.conf.5").read_text())
    daemon = sections((pages / "edgekvd.8").read_text())
    settings = {tag.split(" ")[0] for tag, _, _ in entries(conf.get("SETTINGS", []))}
    daemon_options = {tag.split(" ")[0] for tag, _, _ in entries(daemon.get("OPTIONS", []))}
    in_options = False
    count = 0
    for line in help_text.splitlines():
        if line == "Options:":
            in_options = True
            continue
        match = re.match(r"^  --([a-z0-9-]+)", line)
        if not match:
            continue
        count += 1
        name = match.group(1)
        if in_options:
            if name not in settings:
                fail(f"edgekvd option --{name} has no entry in edgekv.conf(5) SETTINGS")
            default = re.search(r"\(default: (.*)\)$", line).group(1)
            entry = [tag for tag, _, _ in entries(conf["SETTINGS"]) if tag.split(" ")[0] == name]
            if entry and f"(default: {default})" not in entry[0]:
                fail(f"edgekv.conf(5) gives {name} another default than {default}")
        elif f"--{name}" not in daemon_options:
            fail(f"edgekvd option --{name} has no entry in edgekvd(8) OPTIONS")
    if count < 5:
        fail(f"edgekvd --help listed only {count} options: is its format still understood?")
    print(f"edgekvd: {count} options checked against edgekvd(8) and edgekv.conf(5)")


def check_kvcli(kvcli, pages):
    usage = run([kvcli, "--help"])
    blocks = help_blocks(usage)
    page = sections((pages / "kvcli.1").read_text())
    commands = {tag.split(" ")[0]: nested for tag, _, nested in entries(page.get("COMMANDS", []))}
    globals_ = flag_names(tag for tag, _, _ in entries(page.get("GLOBAL FLAGS", [])))
    exits = {tag.strip() for tag, _, _ in entries(page.get("EXIT STATUS", []))}
    synopsis = "\n".join(plain(line) for line in page.get("SYNOPSIS", []))

    names = [row.split(" ")[0] for row in first_column(blocks.get("Commands", []))]
    if len(names) < 3:
        fail(f"kvcli --help listed only {names} as commands: is its format still understood?")
    for name in names:
        if name not in commands:
            fail(f"kvcli command '{name}' has no entry in kvcli(1) COMMANDS")
            continue
        if f"kvcli {name}" not in synopsis:
            fail(f"kvcli command '{name}' is missing from kvcli(1) SYNOPSIS")
        described = flag_names(commands[name])
        command_help = help_blocks(run([kvcli, name, "--help"]))
        for flag in flag_names(first_column(command_help.get("Flags", []))):
            # Described: a tag of its own (.TP) inside the command's entry.
            if flag not in described:
                fail(f"flag {flag} of 'kvcli {name}' is not described in its kvcli(1) entry")
    global_flags = flag_names(first_column(blocks.get("Flags (before or after the command)", [])))
    if not global_flags:
        fail("kvcli --help listed no global flags: is its format still understood?")
    for flag in global_flags:
        if flag not in globals_:
            fail(f"global flag {flag} of kvcli has no entry in kvcli(1) GLOBAL FLAGS")
    for row in first_column(blocks.get("Exit status", [])):
        code = row.split(" ")[0]
        if code not in exits:
            fail(f"kvcli exit status {code} is missing from kvcli(1) EXIT STATUS")
    print(f"kvcli: {len(names)} commands, {len(global_flags)} global flags checked against kvcli(1)")


def lint(pages):
    env = dict(os.environ, LC_ALL="C.UTF-8", MANWIDTH="80")
    for page in sorted(pages.iterdir()):
        if shutil.which("mandoc"):
            out = subprocess.run(["mandoc", "-Tlint", "-W", "warning", str(page)],
                                 capture_output=True, text=True, check=False)
            if out.stdout.strip() or out.stderr.strip():
                fail(f"mandoc -Tlint {page.name}:\n{out.stdout}{out.stderr}")
        else:
            fail("mandoc is missing: run scripts/install-deps.sh")
        out = subprocess.run(["man", "--warnings", "-E", "UTF-8", "-l", str(page)],
                             capture_output=True, text=True, check=False, env=env)
        if out.returncode != 0 or out.stderr.strip():
            fail(f"man --warnings -l {page.name}:\n{out.stderr}")
    print(f"lint: {', '.join(p.name for p in sorted(pages.iterdir()))} clean")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--edgekvd", required=True)
    parser.add_argument("--kvcli", required=True)
    parser.add_argument("--version")
    parser.add_argument("--out", type=pathlib.Path)
    parser.add_argument("--pages", type=pathlib.Path)
    args = parser.parse_args()

    pages = args.pages
    if pages is None:
        if not args.out or not args.version:
            parser.error("--out and --version, or --pages")
        shutil.rmtree(args.out, ignore_errors=True)
        run([sys.executable, TOP / "man" / "gen-man.py", "--edgekvd", args.edgekvd,
             "--version", args.version, "--out", args.out])
        pages = args.out
    check_edgekvd(args.edgekvd, pages)
    check_kvcli(args.kvcli, pages)
    lint(pages)
    if failures:
        sys.exit(f"{len(failures)} problem(s) in the man pages")
    print("man pages: OK")


if __name__ == "__main__":
    main()
