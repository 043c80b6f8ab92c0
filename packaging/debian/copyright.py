#!/usr/bin/env python3
"""Writes the Debian copyright file (DEP-5) of the wikiwire package: wikiwire's own licence, then
every crate linked into the binary (what `cargo tree` resolves for the `wikiwire` package on this
platform: normal dependencies, without build scripts' and proc macros', which are not linked),
grouped by licence, and the C code the crates bundle."""

import collections
import subprocess
import sys

# C code compiled into the binary by crates, which their Cargo licence does not name.
BUNDLED = [
    ("SQLite (bundled by libsqlite3-sys)", "public-domain",
     "The SQLite authors have dedicated the code to the public domain."),
    ("AWS-LC (bundled by aws-lc-sys)", "ISC AND (Apache-2.0 OR ISC) AND OpenSSL",
     "Copyright Amazon.com, Inc. or its affiliates; parts from BoringSSL (ISC) and OpenSSL."),
]


def linked_crates():
    """(name, version, licence) of every crate linked into the binary, the workspace's own left out."""
    tree = subprocess.run(
        ["cargo", "tree", "-p", "wikiwire", "--edges", "normal,no-proc-macro", "--prefix", "none",
         "--format", "{p}|{l}", "--locked"],
        check=True, capture_output=True, text=True).stdout
    crates = set()
    for line in tree.splitlines():
        package, _, licence = line.removesuffix(" (*)").partition("|")
        name, version, *source = package.split(" ")
        if not source:  # from crates.io; a path after the version is a crate of this workspace
            crates.add((name, version, licence))
    return crates


def main():
    by_licence = collections.defaultdict(list)
    for name, version, licence in linked_crates():
        licence = " ".join((licence or "see the crate's license file").replace("/", " OR ").split())
        by_licence[licence].append(f"{name} {version}")
    out = sys.stdout
    out.write("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n")
    out.write("Upstream-Name: wikiwire\n\n")
    out.write("Files: *\nCopyright: the wikiwire developers\nLicense: Apache-2.0\n\n")
    out.write("Comment: The wikiwire binary links these Rust crates statically, grouped by licence.\n"
              " Each crate's own copyright notice and licence text are in its source on crates.io.\n\n")
    for licence in sorted(by_licence):
        crates = sorted(by_licence[licence])
        out.write(f"Files: (linked crates) {', '.join(crates)}\nCopyright: their authors\nLicense: {licence}\n\n")
    for name, licence, note in BUNDLED:
        out.write(f"Files: (bundled C code) {name}\nCopyright: {note}\nLicense: {licence}\n\n")
    out.write("License: Apache-2.0\n On Debian systems the full text of the Apache License 2.0 is in\n"
              " /usr/share/common-licenses/Apache-2.0.\n")


if __name__ == "__main__":
    main()
