# The whole set-up is `make run` and `make test`: both fetch libtorch on first use.
#
# libtorch comes from the torch wheel on the Python package registry, installed with pip into a
# versioned cache outside the checkout that every clone shares. A LIBTORCH or LIBTORCH_USE_PYTORCH
# of your own takes precedence.

TORCH_VERSION := 2.11.0
CACHE_ROOT    := $(if $(XDG_CACHE_HOME),$(XDG_CACHE_HOME),$(HOME)/.cache)/ohem-studio
TORCH_DIR     := $(CACHE_ROOT)/torch-$(TORCH_VERSION)
TORCH_STAMP   := $(TORCH_DIR)/.complete
PYTHON        ?= python3
CARGO         ?= cargo
DATA          ?= sample_data

ifneq ($(LIBTORCH)$(LIBTORCH_USE_PYTORCH),)
LIBTORCH_DEP :=
else
export LIBTORCH := $(TORCH_DIR)/torch
LIBTORCH_DEP := $(TORCH_STAMP)
endif

.PHONY: build run test bench sample-data libtorch clean-libtorch

build: $(LIBTORCH_DEP)
	$(CARGO) build --release --bin ohem-studio

run: build
	./target/release/ohem-studio --data $(DATA)

test: $(LIBTORCH_DEP)
	$(CARGO) test --release

# Also times the same step in plain PyTorch (examples/torch_reference.py) with the torch that was
# fetched, so the two use the same libtorch kernels in the same sitting.
bench: $(LIBTORCH_DEP)
	PYTHONPATH="$(TORCH_DIR)$(if $(PYTHONPATH),:$(PYTHONPATH))" PYTHON=$(PYTHON) \
		$(CARGO) run --release --bin ohem-studio -- bench --data $(DATA) --reference examples/torch_reference.py
	$(CARGO) test --release --test ui_frame_bench -- --ignored --nocapture --test-threads 1

sample-data:
	$(CARGO) run --release --example make_sample_data -- --seed 7 --out sample_data

libtorch: $(LIBTORCH_DEP)

# Installed into a scratch folder first and renamed when complete, so an interrupted download
# never leaves a half-installed libtorch behind.
$(TORCH_STAMP):
	@echo "Fetching libtorch $(TORCH_VERSION) (the torch wheel, once) into $(TORCH_DIR)"
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) is needed to fetch libtorch" >&2; exit 1; }
	rm -rf "$(TORCH_DIR).partial"
	$(PYTHON) -m pip install --no-input --disable-pip-version-check \
		--target "$(TORCH_DIR).partial" torch==$(TORCH_VERSION)
	rm -rf "$(TORCH_DIR)"
	mv "$(TORCH_DIR).partial" "$(TORCH_DIR)"
	touch "$@"

clean-libtorch:
	rm -rf "$(TORCH_DIR)" "$(TORCH_DIR).partial"
