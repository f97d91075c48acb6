"""One line for a bad config value: the key and the problem, out of jsonargparse's report.

jsonargparse reports a wrong value inside a ``class_path``/``init_args`` block as a tree:
"Does not validate against any of the Union subtypes", the subtypes, the errors of each
alternative (one of which is always "Expected a <class 'NoneType'>" for an optional
argument) and the whole given value. :func:`summarize` finds the key and the error that
matter and says them in one line, e.g.
``model.init_args.lr (ImageClassifier): expected float, got 'fast'``.
"""

from __future__ import annotations

import re

__all__ = ["summarize"]

_KEY = re.compile(r'^(?:- )?Parser key "([^"]+)":?\s*(.*)$')
_CLASS = re.compile(r"^(?:- )?Problem with given class_path '([^']+)':\s*(.*)$")
_NOISE = (
    "Does not validate against any of the Union subtypes",
    "Subtypes:",
    "Errors:",
    "Given value type:",
    "Given value:",
    "Expected a <class 'NoneType'>",
    "Expected a None",
)
_GIVEN = re.compile(r"^Given value: (.{1,80})$")


def _tidy(text: str) -> str:
    text = re.sub(r"<class '(?:[\w.]+\.)?(\w+)'>", r"\1", text.strip())
    text = re.sub(r"\.? Got value: (.*)$", r", got '\1'", text)
    text = re.sub(r"^Expected an? ", "expected ", text)
    return text[:1].lower() + text[1:] if text[:2] != text[:2].upper() else text


def summarize(message: str) -> str:
    """The first line to print for jsonargparse's error ``message``: ``key: problem``.

    Args:
        message: the text jsonargparse passes to ``ArgumentParser.error``.
    """
    stack: list[tuple[int, str]] = []  # (indent, key part) of the enclosing blocks
    leaf: tuple[list[str], str] | None = None
    given = ""
    for raw in message.splitlines():
        text = raw.strip()
        if not text:
            continue
        indent = len(raw) - len(raw.lstrip(" -"))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if leaf is not None:
            match = _GIVEN.match(text)
            if match and not given:
                given = match.group(1)
            continue
        if match := _KEY.match(text):
            stack.append((indent, match.group(1)))
            rest = match.group(2)
            if rest and not rest.startswith(_NOISE):
                leaf = ([key for _, key in stack], rest)
            continue
        if match := _CLASS.match(text):
            name = match.group(1).rsplit(".", 1)[-1]
            stack.append((indent, f"init_args ({name})"))
            rest = match.group(2)
            if rest and not rest.startswith(_NOISE):
                leaf = ([key for _, key in stack], rest)
            continue
        bare = text[2:] if text.startswith("- ") else text
        if bare.startswith(_NOISE):
            continue
        leaf = ([key for _, key in stack], bare)
    if leaf is None:
        return message.strip().splitlines()[0] if message.strip() else "invalid arguments"
    keys, problem = leaf
    problem = _tidy(problem)
    if given and problem.startswith("expected") and "got '" not in problem:
        problem += f", got {given!r}"
    if not keys:
        return problem
    # "model", "init_args (ImageClassifier)", "lr" -> "model.init_args.lr (ImageClassifier)"
    names = [key.split(" ", 1)[0] for key in keys]
    classes = [key.split(" ", 1)[1] for key in keys if " " in key]
    where = ".".join(names) + (f" {classes[-1]}" if classes else "")
    return f"{where}: {problem}"
