# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
# `make package` and `make package-test` build and check the Linux installer.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Installed before the project so that pip keeps this build instead of resolving torch itself
# (on Linux a plain `torch` from PyPI is a multi-gigabyte CUDA build).
TORCH_SPEC ?= torch==2.13.0

# The compiled decoding step (engine/core/csrc): plain C, built in seconds with the system's C compiler.
# Without one the app still runs, decoding in PyTorch only (slower); `python -m engine.core.native build`
# says so instead of failing.
NATIVE := engine/core/_gpt2_step.so

.PHONY: run test bench bench-llama screenshots package package-test clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

$(NATIVE): engine/core/csrc/gpt2_step.c $(VENV)/.installed
	$(PY) -m engine.core.native build

run: $(VENV)/.installed $(NATIVE)
	$(VENV)/bin/gpt2-desktop

# The README's screenshots, taken from the real window on a virtual display (needs Debian's xvfb).
screenshots: $(VENV)/.installed $(NATIVE)
	xvfb-run -a -s "-screen 0 1280x800x24" $(PY) scripts/screenshots.py

# The Linux installer: a PyInstaller one-folder bundle wrapped in a .deb, dist/gpt2-desktop_<version>_<arch>.deb.
# Installs the pinned freezer (pyproject's `package` extra) into .venv first. See packaging/README.md.
$(VENV)/.package: $(VENV)/.installed
	$(PY) -m pip install --quiet -e ".[package]"
	touch $@

package: $(VENV)/.package $(NATIVE)
	$(VENV)/bin/pyinstaller --noconfirm --log-level WARN --distpath dist --workpath build/pyinstaller \
		packaging/gpt2-desktop.spec
	$(PY) packaging/linux/build_deb.py

# Checks the built .deb, unpacked in a temporary prefix: metadata, menu entry, --version, generate, --self-test.
package-test:
	$(PYTHON) packaging/smoke_test.py

test: $(VENV)/.installed $(NATIVE)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q

# Every CPU precision against transformers on a 124M-shaped model; quality of each reduced precision
# on the embedded model's validation text (the held-out books of ../shared/corpus, when it is there).
# Then gpt2-medium's shape (355M) in full but without transformers (its ratio to transformers is the
# 124M run's story; llama.cpp is the comparison that matters) and without the quality rows (they are
# measured on the embedded model whatever the shape); and gpt2-xl's (1.5B, 6.2 GB in float32) --brief:
# load time, peak memory and decode speed per precision. llama.cpp beside ours wherever it is built.
CORPUS ?= ../shared/corpus/gutenberg-children
LLAMA_CPP = $$([ -x .bench/llama.cpp/build/bin/llama-bench ] && echo --llama-cpp .bench/llama.cpp)
bench: $(VENV)/.installed $(NATIVE)
	$(PY) -m bench.make_models 124M 355M 1.5B
	if [ -d "$(CORPUS)" ]; then $(PY) scripts/validation_text.py "$(CORPUS)" .bench/validation.txt; fi
	$(VENV)/bin/gpt2-desktop bench --model .bench/gpt2-124M --against transformers \
		$$([ -f .bench/validation.txt ] && echo --quality-text .bench/validation.txt) $(LLAMA_CPP)
	$(VENV)/bin/gpt2-desktop bench --model .bench/gpt2-355M --against none $(LLAMA_CPP)
	$(VENV)/bin/gpt2-desktop bench --model .bench/gpt2-1.5B --brief $(LLAMA_CPP)

# llama.cpp as `make bench` measures it beside ours: the copy vendored by llama-cpp-python's source package,
# built for this CPU into .bench/llama.cpp (a few minutes; needs cmake and a C++ compiler).
bench-llama: $(VENV)/.installed
	$(PY) -m engine.tooling.llama_cpp build

clean:
	rm -rf $(VENV) .bench .pytest_cache build dist $(NATIVE)
