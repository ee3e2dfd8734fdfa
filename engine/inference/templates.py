"""Prompt templates: TOML files that turn a few named fields into a prompt (zero- or few-shot).

Built-ins live in assets/templates/; a user's own in `<config dir>/templates/`, where a file
whose template name matches a built-in's overrides it (built-ins are never edited in place).
"""

from __future__ import annotations

import difflib
import string
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from engine.errors import TemplateError
from engine.files import write_atomic
from engine.core.tokenizer import GPT2Tokenizer
from engine.inference.settings import SamplingSettings

KINDS = ("generate", "choose")
# What [sampling] may set: every sampling setting but max_new_tokens, which is a key of its own
SAMPLING_KEYS = tuple(name for name in SamplingSettings.SCALARS if name != "max_new_tokens")
KEYS = ("name", "description", "kind", "prompt", "variables", "example", "examples", "stop", "max_new_tokens",
        "sampling", "options", "options_variable")
VARIABLE_KEYS = ("name", "label", "multiline", "example")


@dataclass(frozen=True)
class Variable:
    name: str
    label: str
    multiline: bool = False
    example: str = ""


@dataclass(frozen=True)
class Template:
    name: str
    description: str
    kind: str
    prompt: str
    variables: tuple[Variable, ...]
    example: str = ""  # how one few-shot example is written
    examples: tuple[dict, ...] = ()
    stop: tuple[str, ...] = ()
    max_new_tokens: int = 128
    sampling: dict = field(default_factory=dict)
    options: tuple[str, ...] = ()
    options_variable: str | None = None
    source: str = ""  # the file it came from
    builtin: bool = False

    def example_values(self) -> dict[str, str]:
        return {v.name: v.example for v in self.variables}


@dataclass(frozen=True)
class RenderedPrompt:
    text: str
    stop: tuple[str, ...]
    options: tuple[str, ...] = ()
    cut_tokens: int = 0  # tokens removed from the start of `cut_field` to fit the model's window
    cut_field: str | None = None


def _placeholders(text: str, where: str) -> set[str]:
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError as exc:
        raise TemplateError(f"{where}: {exc} (write a literal brace as {{{{ or }}}}).") from None
    bad = [n for n in names if not n.isidentifier()]
    if bad:
        raise TemplateError(f"{where}: placeholder {{{bad[0]}}} is not a valid variable name.")
    return names


def _check_keys(table: dict, known: tuple[str, ...], where: str, what: str) -> None:
    """A key the template format does not have (a typing slip, most often) is named, not silently ignored."""
    unknown = [key for key in table if key not in known]
    if unknown:
        place = "" if what == "a template" else f" in {what}"
        close = difflib.get_close_matches(unknown[0], known, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"{what} takes {', '.join(known)}."
        raise TemplateError(f"{where}: unknown key '{unknown[0]}'{place}; {hint}")


def parse_template(data: dict, source: str = "", builtin: bool = False) -> Template:
    """Check a template's fields; every key must be one the format has, every placeholder a declared variable."""
    where = source or data.get("name", "template")
    _check_keys(data, KEYS, where, "a template")

    def need(key: str, kind: type):
        value = data.get(key)
        if not isinstance(value, kind):
            raise TemplateError(f"{where}: '{key}' is missing or not a {kind.__name__}.")
        return value

    name, prompt = need("name", str).strip(), need("prompt", str)
    kind = data.get("kind", "generate")
    if kind not in KINDS:
        raise TemplateError(f"{where}: 'kind' must be 'generate' or 'choose', not {kind!r}.")
    variables = []
    for raw in data.get("variables", []):
        if not isinstance(raw, dict) or not str(raw.get("name", "")).isidentifier():
            raise TemplateError(f"{where}: every [[variables]] entry needs a 'name' that is a valid identifier.")
        _check_keys(raw, VARIABLE_KEYS, where, "[[variables]]")
        variables.append(Variable(raw["name"], str(raw.get("label", raw["name"])), bool(raw.get("multiline", False)),
                                  str(raw.get("example", ""))))
    declared = {v.name for v in variables}
    examples = tuple(data.get("examples", []))
    example = data.get("example", "")
    known_in_examples = declared | {k for ex in examples for k in ex}
    for text, label, known in ((prompt, "prompt", declared), (example, "example", known_in_examples)):
        unknown = sorted(_placeholders(text, f"{where} ({label})") - known)
        if unknown:
            raise TemplateError(f"{where}: the {label} uses {{{unknown[0]}}}, which is not a declared variable.")
    options = tuple(data.get("options", ()))
    options_variable = data.get("options_variable")
    if kind == "choose" and not options and options_variable not in declared:
        raise TemplateError(f"{where}: a 'choose' template needs 'options' or an 'options_variable' it declares.")
    sampling = data.get("sampling", {})
    if not isinstance(sampling, dict):
        raise TemplateError(f"{where}: [sampling] should be a table of {', '.join(SAMPLING_KEYS)}.")
    _check_keys(sampling, SAMPLING_KEYS, where, "[sampling]")
    return Template(
        name=name, description=str(data.get("description", "")), kind=kind, prompt=prompt,
        variables=tuple(variables), example=example, examples=examples, stop=tuple(data.get("stop", ())),
        max_new_tokens=int(data.get("max_new_tokens", 128)), sampling=sampling, options=options,
        options_variable=options_variable, source=source, builtin=builtin,
    )


def read_template(path: Path, builtin: bool = False) -> Template:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError(f"Cannot read template {path}: {exc}.") from None
    except tomllib.TOMLDecodeError as exc:
        raise TemplateError(f"{path.name} is not valid TOML: {exc}.") from None
    return parse_template(data, source=str(path), builtin=builtin)


def builtin_templates() -> list[Template]:
    folder = resources.files("assets") / "templates"
    return [read_template(Path(str(p)), builtin=True) for p in sorted(folder.iterdir(), key=lambda p: p.name)
            if p.name.endswith(".toml")]


def all_templates(user_folder: Path | None = None, problems: list[str] | None = None) -> dict[str, Template]:
    """Built-ins, then the user's templates (a same-named user template wins). Broken user files are skipped;
    what is wrong with each is added to `problems`, when given."""
    templates = {t.name: t for t in builtin_templates()}
    if user_folder and user_folder.is_dir():
        for path in sorted(user_folder.glob("*.toml")):
            try:
                template = read_template(path)
            except TemplateError as exc:
                if problems is not None:
                    problems.append(str(exc))
                continue
            templates[template.name] = template
    return templates


def find_template(name: str, user_folder: Path | None = None) -> Template:
    templates = all_templates(user_folder)
    for key, template in templates.items():
        if key.lower() == name.lower() or Path(template.source).stem == name:
            return template
    raise TemplateError(f"No template named {name!r}; available: {', '.join(sorted(templates))}.")


def _fill(text: str, values: dict[str, str]) -> str:
    return text.format_map(values)


def render(template: Template, values: dict[str, str], tokenizer: GPT2Tokenizer | None = None,
           budget: int | None = None) -> RenderedPrompt:
    """The prompt for `values`. With a tokenizer and a token budget, an over-long prompt is shortened
    from the start of its longest multi-line field, and the result says how many tokens were cut."""
    missing = [v.name for v in template.variables if v.name not in values]
    if missing:
        raise TemplateError(f"Template '{template.name}' needs a value for '{missing[0]}'.")
    unknown = sorted(set(values) - {v.name for v in template.variables})
    if unknown:
        raise TemplateError(f"Template '{template.name}' has no variable '{unknown[0]}'.")
    values = {k: str(v) for k, v in values.items()}
    options = template.options
    if template.options_variable:
        options = tuple(" " + line.strip() for line in values[template.options_variable].splitlines() if line.strip())
        if not options:
            raise TemplateError(f"Give at least one option in '{template.options_variable}', one per line.")

    def build(vals: dict[str, str]) -> str:
        shots = "".join(_fill(template.example, {**vals, **{k: str(v) for k, v in ex.items()}})
                        for ex in template.examples)
        return shots + _fill(template.prompt, vals)

    text = build(values)
    cut, cut_field = 0, None
    if tokenizer is not None and budget is not None:
        longest_option = max((len(tokenizer.encode(o)) for o in options), default=0)
        limit = budget - longest_option
        excess = len(tokenizer.encode(text)) - limit
        if excess > 0:
            free = [v.name for v in template.variables if v.multiline and v.name != template.options_variable]
            if not free:
                raise TemplateError(f"The prompt is {excess} tokens too long for the model and has no long field to shorten.")
            cut_field = max(free, key=lambda n: len(values[n]))
            field_ids = tokenizer.encode(values[cut_field])
            while excess > 0 and cut < len(field_ids):
                cut = min(len(field_ids), cut + excess)
                values = {**values, cut_field: tokenizer.decode(field_ids[cut:]).lstrip()}
                text = build(values)
                excess = len(tokenizer.encode(text)) - limit
            if excess > 0:
                raise TemplateError(
                    f"The prompt does not fit the model's window even with '{cut_field}' emptied; shorten the other fields."
                )
    return RenderedPrompt(text, template.stop, options, cut, cut_field)


def template_slug(name: str) -> str:
    slug = "".join(ch.lower() if ch.isalnum() else "-" for ch in name).strip("-")
    return "-".join(filter(None, slug.split("-"))) or "template"


def save_user_template(source_text: str, folder: Path, previous: Path | None = None) -> Template:
    """Check TOML text and write it into the user's template folder (named after the template).

    Built-ins are never written: saving an edited built-in makes a user template that overrides it.
    """
    try:
        data = tomllib.loads(source_text)
    except tomllib.TOMLDecodeError as exc:
        raise TemplateError(f"Not valid TOML: {exc}.") from None
    template = parse_template(data)
    render(template, template.example_values())  # every declared variable renders
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{template_slug(template.name)}.toml"
    write_atomic(path, source_text)
    if previous is not None and previous != path and previous.parent == folder and previous.exists():
        previous.unlink()
    return parse_template(data, source=str(path))


NEW_TEMPLATE = '''name = "My template"
description = "What it is for."
kind = "generate"  # or "choose"
prompt = "{text}\\n\\nTL;DR:"
stop = ["\\n\\n"]
max_new_tokens = 100

[[variables]]
name = "text"
label = "Text"
multiline = true
example = "A short example value."

[sampling]
temperature = 0.7
'''
