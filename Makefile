# vlmc build. `make` builds build/vlmc; `make test` runs every test.
# Variants: BUILD=release (default, -O2) or BUILD=asan (AddressSanitizer + UBSan), each in its own folder.

BUILD ?= release
CC ?= cc
ifeq ($(CC),cc)
CC := gcc
endif

OUT := build
ifeq ($(BUILD),asan)
OUT := build/asan
endif

DEPS_PKGS := libcjson-dev libpcre2-dev libutf8proc-dev libjpeg62-turbo-dev libpng-dev libwebp-dev libgif-dev \
             libopenblas-openmp-dev libmicrohttpd-dev pkg-config clang libclang-rt-14-dev libomp-14-dev python3 jq

WARN := -Wall -Wextra -Werror -Wno-unused-parameter
CFLAGS_COMMON := -std=c11 -D_DEFAULT_SOURCE -D_GNU_SOURCE $(WARN) -g -fopenmp -Iinclude -Isrc -I/usr/include/x86_64-linux-gnu/openblas-openmp
ifeq ($(BUILD),asan)
CFLAGS_OPT := -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
LDFLAGS_SAN := -fsanitize=address,undefined
else
CFLAGS_OPT := -O2
LDFLAGS_SAN :=
endif
CFLAGS ?=
CFLAGS += $(CFLAGS_COMMON) $(CFLAGS_OPT)
LIBS := -lcjson -lpcre2-8 -lutf8proc -ljpeg -lpng -lwebp -lwebpdemux -lgif -lmicrohttpd -lopenblas -lm -lpthread
LDFLAGS += -fopenmp $(LDFLAGS_SAN)

LIB_SRC := $(shell find src -name '*.c' -not -path 'src/cli/*' | sort)
CLI_SRC := $(shell find src/cli -name '*.c' | sort)
TEST_SRC := $(wildcard tests/test_*.c)
# Every other C file in tests/ (testlib.c, fixture readers) is linked into every test program.
TEST_SUPPORT_OBJ := $(patsubst tests/%.c,$(OUT)/tests/support/%.o,$(filter-out tests/test_%.c,$(wildcard tests/*.c)))
LIB_OBJ := $(LIB_SRC:%.c=$(OUT)/obj/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(OUT)/obj/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(OUT)/tests/%)
FUZZ_SRC := $(wildcard fuzz/fuzz_*.c)

.PHONY: all deps deps-web test test-asan check fuzz fuzz-build clean lib tests bench examples load-serve model
all: $(OUT)/vlmc examples

# Installs the Debian packages vlmc needs when any is missing. Idempotent.
deps: build/.deps-ok
build/.deps-ok: Makefile
	@./scripts/install-deps.sh $(DEPS_PKGS)
	@mkdir -p build && touch $@

# The test clients of `vlmc serve` (tests/cli_serve*.sh): the official openai npm package and
# playwright-core, pinned by tests/node/package-lock.json, and Debian's chromium for the chat page.
# Needs node + npm. Without it those cases skip with a message; CI runs it.
deps-web: build/.deps-web-ok
build/.deps-web-ok: tests/node/package-lock.json tests/node/package.json
	@./scripts/install-deps.sh chromium curl
	@command -v npm > /dev/null || ./scripts/install-deps.sh nodejs npm
	@command -v npm > /dev/null || { echo "vlmc: deps-web needs node and npm (Node.js >= 18)" >&2; exit 1; }
	@npm ci --prefix tests/node --no-audit --no-fund --loglevel=error
	@mkdir -p build && touch $@

# Trains vlmc's default model models/vlmc-tiny from nothing with vlmc alone (synthetic data, tokenizer,
# LLaVA's two stages, evaluation on the held-out split): about an hour on 2 cores. See models/vlmc-tiny/README.md.
model: $(OUT)/vlmc
	@VLMC=$(OUT)/vlmc ./scripts/train_default_model.sh models/vlmc-tiny

# Load test of `vlmc serve -m echo` (bench/load_serve.sh): 8 clients, LOAD_SECONDS (default 20).
LOAD_SECONDS ?= 20
load-serve: $(OUT)/vlmc
	@VLMC_BIN=$(OUT)/vlmc ./bench/load_serve.sh $(LOAD_SECONDS)

$(OUT)/obj/%.o: %.c | build/.deps-ok
	@mkdir -p $(dir $@)
	@echo "CC $<"
	@$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

# fast_expf's clamps are float compares: without -fno-trapping-math gcc will not if-convert (vectorize) the loops.
# It changes no result, only the (unused) floating-point exception flags.
$(OUT)/obj/src/kernels/gelu.o $(OUT)/obj/src/models/vit.o: CFLAGS += -fno-trapping-math

$(OUT)/libvlmc.a: $(LIB_OBJ)
	@rm -f $@
	@echo "AR $@"
	@ar rcs $@ $^

lib: $(OUT)/libvlmc.a

$(OUT)/vlmc: $(CLI_OBJ) $(OUT)/libvlmc.a
	@echo "LD $@"
	@$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(OUT)/libvlmc.a $(LIBS)

$(OUT)/tests/support/%.o: tests/%.c | build/.deps-ok
	@mkdir -p $(dir $@)
	@echo "CC $<"
	@$(CC) $(CFLAGS) -Itests -MMD -MP -c $< -o $@

$(OUT)/tests/%: tests/%.c $(TEST_SUPPORT_OBJ) $(OUT)/libvlmc.a
	@mkdir -p $(dir $@)
	@echo "CC $<"
	@$(CC) $(CFLAGS) -Itests $(LDFLAGS) -o $@ $< $(TEST_SUPPORT_OBJ) $(OUT)/libvlmc.a $(LIBS)

tests: $(TEST_BIN) $(OUT)/vlmc examples

# Example programs (examples/*.c): each uses only include/vlmc.h.
EXAMPLE_BIN := $(patsubst examples/%.c,$(OUT)/examples/%,$(wildcard examples/*.c))
examples: $(EXAMPLE_BIN)
$(OUT)/examples/%: examples/%.c $(OUT)/libvlmc.a
	@mkdir -p $(dir $@)
	@echo "CC $<"
	@$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(OUT)/libvlmc.a $(LIBS)

# Runs every test program; the runner prints "N passed, N failed" last.
test: tests deps-web
	@VLMC_BIN=$(OUT)/vlmc ./tests/run.sh $(OUT)/tests

test-asan:
	@$(MAKE) --no-print-directory BUILD=asan test

# Benchmarks (not tests): each bench/bench_<name>.c is a program; `make bench` builds them all,
# `make bench-<name> BENCH_ARGS=...` runs one.
BENCH_ARGS ?=
BENCH_BIN := $(patsubst bench/%.c,$(OUT)/bench/%,$(wildcard bench/bench_*.c))
bench: $(BENCH_BIN)
$(OUT)/bench/%: bench/%.c $(OUT)/libvlmc.a
	@mkdir -p $(dir $@)
	@echo "CC $<"
	@$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(OUT)/libvlmc.a $(LIBS)
.PRECIOUS: $(OUT)/bench/bench_%
bench-%: $(OUT)/bench/bench_%
	$< $(BENCH_ARGS)

# libFuzzer targets (clang): the library is compiled once with fuzzer instrumentation,
# then each fuzz/fuzz_<name>.c is linked against it.
FUZZ_OUT := build/fuzz
FUZZ_CFLAGS := -std=c11 -D_DEFAULT_SOURCE -D_GNU_SOURCE -g -O1 -fopenmp=libgomp -Iinclude -Isrc \
  -I/usr/include/x86_64-linux-gnu/openblas-openmp -fno-sanitize-recover=all
FUZZ_LIB_OBJ := $(LIB_SRC:%.c=$(FUZZ_OUT)/obj/%.o)
FUZZ_BIN := $(FUZZ_SRC:fuzz/%.c=$(FUZZ_OUT)/%)

$(FUZZ_OUT)/obj/%.o: %.c | build/.deps-ok
	@mkdir -p $(dir $@)
	@echo "CC (fuzz) $<"
	@clang $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link,address,undefined -MMD -MP -c $< -o $@

$(FUZZ_OUT)/libvlmc-fuzz.a: $(FUZZ_LIB_OBJ)
	@rm -f $@
	@ar rcs $@ $^

$(FUZZ_OUT)/fuzz_%: fuzz/fuzz_%.c $(FUZZ_OUT)/libvlmc-fuzz.a
	@echo "LD (fuzz) $@"
	@clang $(FUZZ_CFLAGS) -fsanitize=fuzzer,address,undefined -o $@ $< $(FUZZ_OUT)/libvlmc-fuzz.a $(LIBS) -lgomp

fuzz-build: $(FUZZ_BIN)

FUZZ_SECONDS ?= 20
fuzz: fuzz-build
	@./scripts/run-fuzz.sh $(FUZZ_OUT) $(FUZZ_SECONDS)

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
