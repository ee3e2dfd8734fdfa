from engine.inference.chat import ChatPrompt, Turn, chat_style, format_chat


def test_transcript_style_for_plain_gpt2():
    turns = [Turn("user", "Hello there"), Turn("assistant", "Hi!"), Turn("user", " What is a fox? ")]
    prompt = format_chat(turns, chat_style("gpt2-medium"))
    assert prompt.text.endswith("User: Hello there\nAssistant: Hi!\nUser: What is a fox?\nAssistant:")
    assert "\nUser:" in prompt.stop


def test_system_turn_replaces_the_intro():
    prompt = format_chat([Turn("system", "You are a pirate."), Turn("user", "Ahoy")], "transcript")
    assert prompt.text == "You are a pirate.\n\nUser: Ahoy\nAssistant:"


def test_dialogpt_turns_are_endoftext_separated():
    turns = [Turn("user", "Hello"), Turn("assistant", "Hi"), Turn("user", "How are you?")]
    assert chat_style("microsoft/DialoGPT-medium") == "dialogpt"
    assert format_chat(turns, "dialogpt") == ChatPrompt("Hello<|endoftext|>Hi<|endoftext|>How are you?<|endoftext|>", ())
