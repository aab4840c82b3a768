"""A constitution: the written principles an AI judge applies (Bai et al. 2022b, "Constitutional
AI"; Lee et al. 2023, "RLAIF").

Each judgement draws one principle (with probability ∝ its weight) and asks the judge which of
two responses is better under it. A principle also says who answers queries drawn under it:
the AI judge (`by: ai`) or a person (`by: human`: the synthetic annotator) — Bai et al. took
harmlessness labels from the AI and helpfulness labels from people.

Two file formats:

YAML — a list of principles, or a mapping with a `principles:` list::

    principles:
      - id: positive                     # unique name, recorded with every label
        text: Which review is more positive?
        by: ai                           # ai (default) or human
        weight: 1.0                      # sampling weight, > 0 (default 1)
        prompts: task                    # task (default) or red-team: the prompts its queries
                                         # are asked on (Bai et al.: harmlessness comparisons
                                         # on red-team prompts)

Markdown (`.md`) — every `- text` or `1. text` line is one AI principle (ids p1, p2, …); other
lines are ignored.

Errors name the file and line: `constitution.yaml:7: principle 2: field 'text' must be a
non-empty string`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from rlhflab.text.task import JUDGE_PRINCIPLE


class ConstitutionError(ValueError):
    """A constitution file that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class Principle:
    id: str
    text: str
    by: str = "ai"  # ai | human
    weight: float = 1.0
    prompts: str = "task"  # task | red-team: the prompts its queries are asked on


# The built-in reviews task's constitution (examples/text/constitution.yaml holds the same two):
# each principle covers one of the gold reward's two terms, so no single one is the gold.
DEFAULT_PRINCIPLES = (
    Principle("positive", "Which review is more positive about the film?"),
    Principle(
        "fluent",
        "Which review is more fluent and grammatical, without repeated words, and ends with a "
        "full stop?",
    ),
)
# The reviews-insults task's harmlessness principle (examples/text/constitution_harmless.yaml):
# its rule is the task's gold detector, so the scripted judge and critic know it too.
HARMLESS = Principle("harmless", JUDGE_PRINCIPLE)  # the question of the corpus's judge examples
KNOWN_PRINCIPLES = (*DEFAULT_PRINCIPLES, HARMLESS)
FIELDS = {"id", "text", "by", "weight", "prompts"}
PROMPTS = ("task", "red-team")


def load_constitution(path: str | Path | None) -> list[Principle]:
    """The principles of a YAML or markdown constitution file (None: the built-in ones)."""
    if path is None:
        return list(DEFAULT_PRINCIPLES)
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConstitutionError(f"{path}: cannot read constitution: {exc.strerror}") from None
    principles = _from_markdown(path, text) if path.suffix in (".md", ".markdown") else None
    if principles is None:
        principles = _from_yaml(path, text)
    if not principles:
        raise ConstitutionError(f"{path}: the constitution has no principles")
    return principles


def _from_markdown(path: Path, text: str) -> list[Principle]:
    out: list[Principle] = []
    for line in text.splitlines():
        m = re.match(r"\s*(?:[-*+]|\d+[.)])\s+(.*\S)", line)
        if m:
            out.append(Principle(f"p{len(out) + 1}", m.group(1)))
    return out


def _from_yaml(path: Path, text: str) -> list[Principle]:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConstitutionError(f"{where}: constitution does not parse: {exc}") from None
    if isinstance(root, yaml.MappingNode):
        found = [v for k, v in root.value if k.value == "principles"]
        extra = [k for k, _ in root.value if k.value != "principles"]
        if extra:
            raise _error(path, extra[0], f"unknown key '{extra[0].value}' (expected 'principles')")
        if not found:
            raise _error(path, root, "expected a 'principles:' list")
        root = found[0]
    if not isinstance(root, yaml.SequenceNode):
        raise ConstitutionError(f"{path}: a constitution is a list of principles")
    principles = [_principle(path, node, i + 1) for i, node in enumerate(root.value)]
    ids = [p.id for p in principles]
    for i, node in enumerate(root.value):
        if ids.index(ids[i]) != i:
            raise _error(path, node, f"principle {i + 1}: id '{ids[i]}' is used twice")
    return principles


def _principle(path: Path, node: yaml.Node, n: int) -> Principle:
    """One principle from its YAML node (a mapping of scalars, or a bare string)."""
    if isinstance(node, yaml.ScalarNode):
        fields = {"text": node}
    elif isinstance(node, yaml.MappingNode):
        fields = {k.value: v for k, v in node.value}
    else:
        raise _error(path, node, f"principle {n}: expected a mapping with id and text")
    for key, value in fields.items():
        if key not in FIELDS:
            raise _error(
                path, value, f"principle {n}: unknown field '{key}' (use {sorted(FIELDS)})"
            )
        if not isinstance(value, yaml.ScalarNode):
            raise _error(path, value, f"principle {n}: field '{key}' must be a single value")
    values = {k: v.value.strip() for k, v in fields.items()}
    if not values.get("text"):
        raise _error(
            path,
            fields.get("text", node),
            f"principle {n}: field 'text' must be a non-empty string",
        )
    if values.get("by", "ai") not in ("ai", "human"):
        raise _error(path, fields["by"], f"principle {n}: field 'by' must be ai or human")
    if values.get("prompts", "task") not in PROMPTS:
        raise _error(
            path, fields["prompts"], f"principle {n}: field 'prompts' must be task or red-team"
        )
    try:
        weight = float(values.get("weight", 1.0))
    except ValueError:
        weight = -1.0
    if not weight > 0:
        raise _error(path, fields["weight"], f"principle {n}: field 'weight' must be a number > 0")
    return Principle(
        values.get("id") or f"p{n}",
        values["text"],
        values.get("by", "ai"),
        weight,
        values.get("prompts", "task"),
    )


def _error(path: Path, node: yaml.Node, message: str) -> ConstitutionError:
    return ConstitutionError(f"{path}:{node.start_mark.line + 1}: {message}")
