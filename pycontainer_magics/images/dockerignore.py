"""`.dockerignore`: which files of a build context COPY and ADD leave out, with Docker's rules.

One pattern per line, `#` comments; paths relative to the context (a leading `/` and `./` dropped); `*`
and `?` do not cross `/`, `**` matches any number of directories; a pattern that matches a directory
excludes everything below it; `!pattern` takes a path back in. The last matching line wins.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass


def _regex(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):  # `**/` also matches no directory at all
                out.append("(?:.*/)?")
                i += 1
            else:
                out.append(".*")
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = pattern.find("]", i + 1)
            if j < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1:j].replace("\\", "\\\\")
                out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
                i = j
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z")


@dataclass(frozen=True)
class DockerIgnore:
    rules: tuple[tuple[bool, re.Pattern[str]], ...] = ()  # (exclude?, pattern), in file order

    @classmethod
    def parse(cls, text: str) -> DockerIgnore:
        rules = []
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            keep = line.startswith("!")
            pat = os.path.normpath(line[1:].strip() if keep else line).lstrip("/")
            if pat in ("", "."):
                continue
            rules.append((not keep, _regex(pat)))
        return cls(tuple(rules))

    @classmethod
    def of_context(cls, context: str) -> DockerIgnore:
        try:
            with open(os.path.join(context, ".dockerignore"), encoding="utf-8") as f:
                return cls.parse(f.read())
        except FileNotFoundError:
            return cls()

    def excluded(self, rel: str) -> bool:
        """Whether context path `rel` is left out (a directory's exclusion covers what is under it)."""
        if not self.rules:
            return False
        rel = os.path.normpath(rel).lstrip("/")
        parts = rel.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        verdict = False
        for exclude, rx in self.rules:
            if any(rx.match(p) for p in prefixes):
                verdict = exclude
        return verdict


__all__ = ["DockerIgnore"]
