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
             libopenblas-openmp-dev libmicrohttpd-dev pkg-config clang libclang-rt-14-dev

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
TEST_SRC := $(filter-out tests/testlib.c,$(wildcard tests/test_*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(OUT)/obj/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(OUT)/obj/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(OUT)/tests/%)
FUZZ_SRC := $(wildcard fuzz/fuzz_*.c)

.PHONY: all deps test test-asan check fuzz fuzz-build clean lib tests bench-tokenizer
all: $(OUT)/vlmc

# Installs the Debian packages vlmc needs when any is missing. Idempotent.
deps: build/.deps-ok
build/.deps-ok: Makefile
	@./scripts/install-deps.sh $(DEPS_PKGS)
	@mkdir -p build && touch $@

$(OUT)/obj/%.o: %.c | build/.deps-ok
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(OUT)/libvlmc.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

lib: $(OUT)/libvlmc.a

$(OUT)/vlmc: $(CLI_OBJ) $(OUT)/libvlmc.a
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(OUT)/libvlmc.a $(LIBS)

$(OUT)/tests/testlib.o: tests/testlib.c tests/testlib.h | build/.deps-ok
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -c $< -o $@

$(OUT)/tests/%: tests/%.c $(OUT)/tests/testlib.o $(OUT)/libvlmc.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests $(LDFLAGS) -o $@ $< $(OUT)/tests/testlib.o $(OUT)/libvlmc.a $(LIBS)

tests: $(TEST_BIN) $(OUT)/vlmc

# Runs every test program; the runner prints "N passed, N failed" last.
test: tests
	@VLMC_BIN=$(OUT)/vlmc ./tests/run.sh $(OUT)/tests

test-asan:
	@$(MAKE) --no-print-directory BUILD=asan test

# libFuzzer targets, built with clang against the library sources.
FUZZ_OUT := build/fuzz
FUZZ_FLAGS := -std=c11 -D_DEFAULT_SOURCE -D_GNU_SOURCE -g -O1 -fopenmp=libgomp -Iinclude -Isrc -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
fuzz-build: build/.deps-ok
	@mkdir -p $(FUZZ_OUT)
	@for f in $(FUZZ_SRC); do n=$$(basename $$f .c); \
	  echo "clang $$n"; \
	  clang $(FUZZ_FLAGS) -o $(FUZZ_OUT)/$$n $$f $(LIB_SRC) $(LIBS) -lgomp || exit 1; done

FUZZ_SECONDS ?= 20
fuzz: fuzz-build
	@./scripts/run-fuzz.sh $(FUZZ_OUT) $(FUZZ_SECONDS)

# Benchmarks (not tests): build/bench/bench_<name>, run by `make bench-<name>`.
$(OUT)/bench/%: bench/%.c $(OUT)/libvlmc.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(OUT)/libvlmc.a $(LIBS)

bench-tokenizer: $(OUT)/bench/bench_tokenizer
	@$(OUT)/bench/bench_tokenizer

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
