"""The memory agent's prompts (MemTrain, Appendix A), as named templates.

Three calls make up an episode: memory *update* (one per chunk), the final *answer* from memory alone, and the
intermediate memory *recall* probe. The update and answer prompts take the task's problem text: MemTrain's
masked-entity question by default, a downstream task's own question otherwise.

The paper prints the answer template with an empty ``<section>`` slot and ``boxed{}`` without its backslash;
memtrain drops the empty slot and writes ``\\boxed{}``, which is what the paper means (docs/method.md §1).
"""

from __future__ import annotations

from collections.abc import Mapping
from string import Formatter

from ..errors import ConfigError

MEMTRAIN_PROBLEM = "Based on the entire article, which entity is represented by the [MASK] placeholder?"
INITIAL_MEMORY = "No previous memory"

UPDATE_TEMPLATE = (
    "You are presented with a problem, a section of an article that may contain the answer to the problem, "
    "and a previous memory. Please read the provided section carefully and update the memory with the new "
    "information that helps to answer the problem. Be sure to retain all relevant details from the previous "
    "memory while adding any new, useful information.\n"
    "<problem> {problem} </problem>\n"
    "<memory> {memory} </memory>\n"
    "<section> {chunk} </section>\n"
    "\n"
    "Updated memory:"
)

ANSWER_TEMPLATE = (
    "You are presented with a problem and a previous memory. Please answer the problem based on the previous "
    "memory and put the answer in \\boxed{{}}.\n"
    "<problem> {problem} </problem>\n"
    "<memory> {memory} </memory>"
)

RECALL_TEMPLATE = (
    "You are presented with a memory from previously read sections, and a section containing placeholder "
    "[TARGET]. Based on the memory, please predict the entity marked by [TARGET] and put the answer in "
    "\\boxed{{}}.\n"
    "<memory> {memory} </memory>\n"
    "<section> {chunk} </section>"
)

# The single-call baselines of evaluation (whole document, or the document cut to one call's budget) read
# the problem and the document in one prompt. The paper prints no such prompt; this follows the agent's words.
CONTEXT_TEMPLATE = (
    "You are presented with a problem and an article that may contain the answer to the problem. Please read "
    "the article carefully and answer the problem, putting the answer in \\boxed{{}}.\n"
    "<problem> {problem} </problem>\n"
    "<article> {chunk} </article>"
)

TEMPLATES: dict[str, str] = {
    "update": UPDATE_TEMPLATE,
    "answer": ANSWER_TEMPLATE,
    "recall": RECALL_TEMPLATE,
    "context": CONTEXT_TEMPLATE,
}

# MemAgent's own evaluation prompts (its RULER-HotpotQA scripts), for runs that must match its numbers: the
# same instructions as above with the problem, memory and section on their own lines, "Your answer:" after
# the answer prompt, and its zero-shot full-context prompt. MemAgent has no recall probe; memtrain's is kept.
MEMAGENT_TEMPLATES: dict[str, str] = {
    "update": (
        "You are presented with a problem, a section of an article that may contain the answer to the "
        "problem, and a previous memory. Please read the provided section carefully and update the memory "
        "with the new information that helps to answer the problem. Be sure to retain all relevant details "
        "from the previous memory while adding any new, useful information.\n\n"
        "<problem> \n{problem}\n</problem>\n\n"
        "<memory>\n{memory}\n</memory>\n\n"
        "<section>\n{chunk}\n</section>\n\n"
        "Updated memory:\n"
    ),
    "answer": (
        "You are presented with a problem and a previous memory. Please answer the problem based on the "
        "previous memory and put the answer in \\boxed{{}}.\n\n"
        "<problem> \n{problem}\n</problem>\n\n"
        "<memory>\n{memory}\n</memory>\n\n"
        "Your answer:\n"
    ),
    "recall": RECALL_TEMPLATE,
    "context": (
        "Please read the following text and answer the question below.\n\n<text>\n{chunk}\n</text>\n\n"
        "{problem}\n\nPut the answer in \\boxed{{}}."
    ),
}

# Named template sets: memtrain's (the paper's prompts) and MemAgent's evaluation prompts.
TEMPLATE_SETS: dict[str, dict[str, str]] = {"memtrain": TEMPLATES, "memagent": MEMAGENT_TEMPLATES}

# The placeholders each template must contain: a custom template missing one would silently drop that input.
REQUIRED_FIELDS: dict[str, frozenset[str]] = {
    "update": frozenset({"problem", "memory", "chunk"}),
    "answer": frozenset({"problem", "memory"}),
    "recall": frozenset({"memory", "chunk"}),
    "context": frozenset({"problem", "chunk"}),
}


def template_fields(template: str) -> set[str]:
    """The ``{name}`` placeholders of a ``str.format`` template."""
    return {name for _, name, _, _ in Formatter().parse(template) if name}


def check_templates(templates: Mapping[str, str]) -> dict[str, str]:
    """Complete `templates` with the defaults and check each has exactly the placeholders its call fills."""
    unknown = sorted(set(templates) - set(TEMPLATES))
    if unknown:
        raise ConfigError(f"unknown prompt template(s) {', '.join(unknown)}; known: {', '.join(TEMPLATES)}")
    merged = {**TEMPLATES, **templates}
    for name, template in merged.items():
        try:
            fields = template_fields(template)
        except ValueError as exc:
            raise ConfigError(f"prompt template {name!r} is not a valid format string: {exc}") from None
        if fields != REQUIRED_FIELDS[name]:
            raise ConfigError(
                f"prompt template {name!r} has placeholders {sorted(fields)}; "
                f"it must have exactly {sorted(REQUIRED_FIELDS[name])} (write literal braces as {{{{ }}}})"
            )
    return merged


def render_update(problem: str, memory: str, chunk: str, template: str = UPDATE_TEMPLATE) -> str:
    """Turn t: the problem, memory_{t-1} and chunk_t."""
    return template.format(problem=problem, memory=memory, chunk=chunk)


def render_answer(problem: str, memory: str, template: str = ANSWER_TEMPLATE) -> str:
    """The final turn: the problem and the last memory, no chunk; the answer goes in \\boxed{}."""
    return template.format(problem=problem, memory=memory)


def render_recall(memory: str, masked_chunk: str, template: str = RECALL_TEMPLATE) -> str:
    """The recall probe: memory_k and chunk l (< k) with one entity replaced by [TARGET]."""
    return template.format(memory=memory, chunk=masked_chunk)


def render_context(problem: str, document: str, template: str = CONTEXT_TEMPLATE) -> str:
    """A single-call baseline: the problem and the (possibly cut) document in one prompt."""
    return template.format(problem=problem, chunk=document)
