#!/usr/bin/env python3
"""Runs the README's Python snippet, as printed there, against a running server.

Reads the first ```python block under "### Python" in README.md, checks that its
`# pip install` line names only packages of tests/python/requirements.txt, runs its
`# python -m grpc_tools.protoc …` line (from a fresh temporary directory holding a link
to the repository's proto/), and executes the snippet with that directory on sys.path.
The one change made to the snippet's text is its address, "127.0.0.1:50051", replaced
by --server; the token reaches it as CONVMSG_TOKEN, which it reads.

    python3 tests/python/readme_test.py --server 127.0.0.1:50051 --token TOKEN

What the snippet prints goes to standard output as it is; the last line is
`python readme: N passed, M failed`.
"""

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
README = REPO_ROOT / "README.md"
REQUIREMENTS = REPO_ROOT / "tests/python/requirements.txt"
ADDRESS = '"127.0.0.1:50051"'


def snippet():
    text = README.read_text()
    section = text.split("\n### Python\n", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "no ```python block under ### Python in README.md"
    return match.group(1)


def requirement_names():
    names = set()
    for line in REQUIREMENTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(re.split(r"[=<>!~\[ ]", line, 1)[0].lower())
    return names


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", required=True, help="HOST:PORT of the server")
    parser.add_argument("--token", required=True, help="bearer token (send and read scopes)")
    args = parser.parse_args()
    try:
        run(args)
    except Exception:  # noqa: BLE001 - report every kind of failure
        import traceback

        traceback.print_exc(file=sys.stdout)
        print("python readme: 0 passed, 1 failed", flush=True)
        return 1
    print("python readme: 1 passed, 0 failed", flush=True)
    return 0


def run(args):
    code = snippet()
    lines = code.splitlines()
    pip = next((l for l in lines if l.startswith("# pip install ")), None)
    protoc = next((l for l in lines if l.startswith("# python -m grpc_tools.protoc ")), None)
    assert pip and protoc, "the snippet starts with its `# pip install` and `# python -m grpc_tools.protoc` lines"
    unknown = set(pip[len("# pip install "):].split()) - requirement_names()
    assert not unknown, f"the README installs {sorted(unknown)}, which tests/python/requirements.txt does not pin"
    assert code.count(ADDRESS) == 1, f"the snippet names the address {ADDRESS} exactly once"

    with tempfile.TemporaryDirectory(prefix="convmsg_readme_") as work:
        os.symlink(REPO_ROOT / "proto", Path(work, "proto"))
        command = protoc[len("# "):].replace("python ", f"{shlex.quote(sys.executable)} ", 1)
        subprocess.run(command, shell=True, cwd=work, check=True)
        sys.path.insert(0, work)
        os.environ["CONVMSG_TOKEN"] = args.token
        exec(compile(code.replace(ADDRESS, repr(args.server)), "README.md (### Python)", "exec"), {})
        sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
