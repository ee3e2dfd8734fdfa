"""The Tasks tab (`view`: pick a prompt template, fill its fields, run it; choice templates show a bar chart) and
the editor of a template's TOML with a live preview of the prompt and its token count (`template_editor`)."""
