"""Prompt templates: exact built-in prompts, clear errors, fitting the window, choose scoring."""

import json

import pytest
import torch

from engine.inference.scoring import choose
from engine.inference.templates import TemplateError, all_templates, builtin_templates, find_template, parse_template, render
from tests.helpers import cli

EXPECTED = {
    "Continue text": "The old lighthouse keeper climbed the stairs one last time",
    "Summarise": "The town council voted on Tuesday to close the old bridge for repairs. Cars will use the new road "
                 "for six months.\n\nTL;DR:",
    "Translate": "English: Good morning.\nFrench: Bonjour.\n\n"
                 "English: I would like a cup of coffee, please.\nFrench: Je voudrais une tasse de café, s'il vous plaît.\n\n"
                 "English: The cat is sleeping on the chair.\nFrench: Le chat dort sur la chaise.\n\n"
                 "English: Where is the library?\nFrench:",
    "Answer from a passage": "Tom had three red apples and gave one to his sister Mary.\n\n"
                             "Q: How many apples did Tom give away?\nA:",
    "Conversational reading comprehension": "Anna lived in a small house near the river with her dog, Max.\n\n"
                                            "Q: Where did Anna live?\nA: In a small house near the river.\n"
                                            "Q: What was her dog called?\nA:",
    "Few-shot classify": "Review: A dull, slow film with no story.\nSentiment: negative\n\n"
                         "Review: Wonderful acting and a beautiful ending.\nSentiment: positive\n\n"
                         "Review: I loved every minute of it.\nSentiment:",
    "Multiple choice": "The glass fell off the table and",
    "Fill the last word": "She opened the door and her little dog ran to greet her, wagging its",
}


def test_every_builtin_renders_its_example_exactly():
    templates = {t.name: t for t in builtin_templates()}
    assert set(templates) == set(EXPECTED)
    for name, expected in EXPECTED.items():
        assert render(templates[name], templates[name].example_values()).text == expected, name


def test_builtin_stops_and_options():
    t = {t.name: t for t in builtin_templates()}
    assert t["Summarise"].stop == ("\n\n",)
    assert "\nQ:" in t["Answer from a passage"].stop
    assert render(t["Few-shot classify"], t["Few-shot classify"].example_values()).options == (" positive", " negative")
    mc = render(t["Multiple choice"], t["Multiple choice"].example_values())
    assert mc.options == (" shattered on the floor.", " flew up to the moon.")


def test_missing_variable_is_named():
    with pytest.raises(TemplateError, match="'article'"):
        render(find_template("Summarise"), {})


def test_unexpected_variable_is_named():
    with pytest.raises(TemplateError, match="'colour'"):
        render(find_template("Summarise"), {"article": "x", "colour": "red"})


def test_unknown_placeholder_is_named():
    with pytest.raises(TemplateError, match=r"\{topic\}"):
        parse_template({"name": "t", "prompt": "Write about {topic}", "variables": [{"name": "text"}]})


def test_malformed_template_is_refused(tmp_path):
    from engine.inference.templates import read_template

    (tmp_path / "bad.toml").write_text("name = 'x'\nprompt = ")
    with pytest.raises(TemplateError, match="not valid TOML"):
        read_template(tmp_path / "bad.toml")
    with pytest.raises(TemplateError, match="kind"):
        parse_template({"name": "t", "prompt": "x", "kind": "dance"})
    with pytest.raises(TemplateError, match="brace"):
        parse_template({"name": "t", "prompt": "a { b"})


def test_over_long_prompt_is_cut_from_the_start_of_the_longest_field(tiny):
    template = find_template("Answer from a passage")
    passage = " ".join(f"word{i}" for i in range(300))
    rendered = render(template, {"passage": passage, "question": "What?"}, tiny.tokenizer, budget=100)
    assert len(tiny.tokenizer.encode(rendered.text)) <= 100
    assert rendered.cut_field == "passage" and rendered.cut_tokens > 0
    assert rendered.text.endswith("word299\n\nQ: What?\nA:")
    assert "word0 " not in rendered.text


def test_user_template_overrides_builtin(tmp_path):
    (tmp_path / "mine.toml").write_text('name = "Summarise"\nprompt = "{article}\\nIn short:"\n'
                                        '[[variables]]\nname = "article"\n')
    (tmp_path / "broken.toml").write_text("not toml at all [")
    templates = all_templates(tmp_path)
    assert templates["Summarise"].prompt.endswith("In short:") and not templates["Summarise"].builtin
    assert templates["Translate"].builtin


def test_choose_log_likelihoods_match_transformers(tiny, tiny_hf):
    context, options = "The glass fell off the table and", [" shattered.", " flew to the moon.", " broke"]
    scores, best = choose(tiny, context, options)
    ctx = tiny.tokenizer.encode(context)
    expected = []
    for option in options:
        opt = tiny.tokenizer.encode(option)
        with torch.no_grad():
            logp = torch.log_softmax(tiny_hf(torch.tensor([ctx + opt])).logits[0], -1)
        expected.append(sum(float(logp[len(ctx) - 1 + i, t]) for i, t in enumerate(opt)))
    assert [s.logprob for s in scores] == pytest.approx(expected, abs=1e-4)
    assert best == max(range(3), key=lambda i: expected[i])
    assert sum(s.prob for s in scores) == pytest.approx(1.0)
    normalised, best_n = choose(tiny, context, options, normalise=True)
    per_token = [e / s.tokens for e, s in zip(expected, scores)]
    assert best_n == max(range(3), key=lambda i: per_token[i])


def test_cli_generate_with_template_and_choose(tiny_model_dir):
    result = cli("generate", "--model", str(tiny_model_dir), "--template", "summarise", "--var",
                 "article=The fox ran away.", "--max-new-tokens", "5", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["prompt_tokens"] > 5
    result = cli("choose", "--model", str(tiny_model_dir), "--template", "classify", "--var", "text=Great!", "--json")
    out = json.loads(result.stdout)
    assert [o["text"] for o in out["options"]] == [" positive", " negative"] and out["best"] in (0, 1)
    missing = cli("generate", "--model", str(tiny_model_dir), "--template", "summarise")
    assert missing.returncode == 2 and "'article'" in missing.stderr
    listing = cli("templates", "list")
    assert listing.returncode == 0 and "Translate" in listing.stdout


# unknown keys are named, built-ins cannot be deleted (issue 18)

@pytest.mark.parametrize("data,said", [
    ({"name": "t", "promt": "x"}, "unknown key 'promt'; did you mean 'prompt'?"),
    ({"name": "t", "prompt": "x", "max_tokens": 9}, "unknown key 'max_tokens'; did you mean 'max_new_tokens'?"),
    ({"name": "t", "prompt": "x", "colour": "red"}, "unknown key 'colour'; a template takes name, description"),
    ({"name": "t", "prompt": "{a}", "variables": [{"name": "a", "mutliline": True}]},
     "unknown key 'mutliline' in [[variables]]; did you mean 'multiline'?"),
    ({"name": "t", "prompt": "x", "sampling": {"temprature": 0.5}},
     "unknown key 'temprature' in [sampling]; did you mean 'temperature'?"),
])
def test_an_unknown_key_is_named_not_ignored(data, said):
    with pytest.raises(TemplateError) as caught:
        parse_template(data)
    assert said in str(caught.value)


def test_sampling_takes_every_sampling_setting():
    template = parse_template({"name": "t", "prompt": "x", "sampling": {"min_p": 0.1, "temperature": 0.5}})
    assert template.sampling == {"min_p": 0.1, "temperature": 0.5}


def test_the_template_editor_refuses_an_unknown_key_and_saves_nothing(qtbot, tmp_path):
    from app.tasks.template_editor import TemplateEditor
    from engine.inference.templates import NEW_TEMPLATE

    editor = TemplateEditor(NEW_TEMPLATE.replace("max_new_tokens", "max_tokens"), tmp_path / "templates", None,
                            None, 0)
    qtbot.addWidget(editor)
    assert "unknown key 'max_tokens'; did you mean 'max_new_tokens'?" in editor.status.text()
    assert editor.status.property("error")
    editor.save()
    assert editor.saved is None and not (tmp_path / "templates").exists()
    editor.source.setPlainText(NEW_TEMPLATE)
    editor.save()
    assert editor.saved is not None and editor.saved.name == "My template"


def test_delete_is_offered_only_for_your_own_templates_and_a_broken_one_is_named(qtbot, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    from app.tasks.view import TasksView

    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "mine.toml").write_text('name = "Mine"\nprompt = "{text}"\n[[variables]]\nname = "text"\n')
    (folder / "slip.toml").write_text('name = "Slip"\npromt = "x"\n')
    view = TasksView(folder)
    qtbot.addWidget(view)
    assert "slip.toml: unknown key 'promt'; did you mean 'prompt'?" in view.message.text()
    view.select_by_name("Summarise")
    assert view.template.builtin and not view.delete_button.isEnabled()
    view.select_by_name("Mine")
    assert not view.template.builtin and view.delete_button.isEnabled()
    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *args: asked.append(args) or QMessageBox.No)
    view.delete_button.click()
    assert (folder / "mine.toml").exists() and asked[0][-1] == QMessageBox.No  # asked, the safe choice the default
    monkeypatch.setattr(QMessageBox, "question", lambda *args: QMessageBox.Yes)
    view.delete_button.click()
    assert not (folder / "mine.toml").exists() and "Mine" not in view.templates
