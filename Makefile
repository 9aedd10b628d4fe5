# weft — plain Makefile. `make help` lists the targets.
#
# Layout: runtime/*.c + runtime/switch_$(ARCH).S -> build/libweft.{a,so}, build/weft.pc
#         tests/test_*.c -> one Criterion binary build/tests/weft_tests
#         tests/lto_*.c  -> one binary each, built with -O2 -flto together with the runtime
#         examples/*.c   -> build/examples/NAME, bench/*.c -> build/bench/NAME
#         common/*.h     -> header-only code shared by examples, bench and tests

CC      ?= cc
ifeq ($(origin CC),default)
CC      := cc
endif
PREFIX  ?= /usr/local
BUILD   ?= build
ARCH    := $(shell $(CC) -dumpmachine | cut -d- -f1)

WARN    := -Wall -Wextra -Werror
CSTD    := -std=gnu11
OPT     ?= -O2 -g
SANFLAGS ?=
# The debug lanes (test-asan, test-tsan, valgrind) compile runtime/weft_assert.h's
# WEFT__ASSERT checks in; the release build (plain make) leaves them out.
ASSERTS ?=
# Sanitizer and valgrind builds replace the allocator with the tool's own.
ALLOC_LIB ?= -ljemalloc
# -MMD -MP: every object and program also depends on the headers it includes.
DEPFLAGS   = -MMD -MP -MF $@.d
# Task dumps walk suspended stacks with libunwind (runtime/dump.c), loaded
# with dlopen at the first dump: only its header is needed here, and a
# build without it dumps without backtraces (make test installs it).
HAVE_LIBUNWIND := $(if $(wildcard /usr/include/libunwind.h /usr/include/*/libunwind.h),1)
UNWIND_CFLAGS  := $(if $(HAVE_LIBUNWIND),-DWEFT_HAVE_LIBUNWIND)
# The io_uring poller backend (runtime/poller_uring.c) needs liburing; a
# build without it has epoll alone (make test installs it).
HAVE_LIBURING  := $(if $(wildcard /usr/include/liburing.h),1)
URING_CFLAGS   := $(if $(HAVE_LIBURING),-DWEFT_HAVE_URING)
URING_LIBS     := $(if $(HAVE_LIBURING),-luring)
CFLAGS_LIB := $(CSTD) $(WARN) $(OPT) $(SANFLAGS) $(ASSERTS) $(UNWIND_CFLAGS) $(URING_CFLAGS) -fPIC -fvisibility=hidden -pthread \
              -D_GNU_SOURCE -Iinclude
# common/: header-only code that examples, benchmarks and tests share (the HTTP
# request parser); not part of libweft.
CFLAGS_APP := $(CSTD) $(WARN) $(OPT) $(SANFLAGS) $(ASSERTS) -pthread -D_GNU_SOURCE -Iinclude -Iruntime -Icommon
LDLIBS_APP := $(ALLOC_LIB) $(URING_LIBS) -pthread -lm
# The test framework: Criterion unless overridden (test-tsan swaps in tests/tsan).
# CRITERION_INC goes first on the tests' include path, CRITERION_LIB on their
# link line (its .o files are built by the rules below), CRITERION_DEPS are
# extra prerequisites of the test objects.
CRITERION_INC  ?=
CRITERION_LIB  ?= -lcriterion
CRITERION_DEPS ?=
CRITERION_OBJ  := $(filter %.o,$(CRITERION_LIB))

# The version is written once, in include/weft.h (WEFT_VERSION_MAJOR, _MINOR,
# _PATCH); the pkg-config file and the soname (libweft.so.MAJOR) come from it.
weft_version = $(shell sed -n 's/^.define WEFT_VERSION_$(1)  *\([0-9][0-9]*\).*/\1/p' include/weft.h)
WEFT_VERSION_PARTS := $(foreach p,MAJOR MINOR PATCH,$(call weft_version,$(p)))
ifneq ($(words $(WEFT_VERSION_PARTS)),3)
$(error include/weft.h: WEFT_VERSION_MAJOR, _MINOR and _PATCH not all found)
endif
WEFT_VERSION := $(word 1,$(WEFT_VERSION_PARTS)).$(word 2,$(WEFT_VERSION_PARTS)).$(word 3,$(WEFT_VERSION_PARTS))
WEFT_MAJOR   := $(word 1,$(WEFT_VERSION_PARTS))
WEFT_SONAME  := libweft.so.$(WEFT_MAJOR)
TLS_SONAME   := libweft_tls.so.$(WEFT_MAJOR)
# Installed: libweft.so.MAJOR.MINOR.PATCH (the file), libweft.so.MAJOR (the
# soname, what programs record), libweft.so (the link-time name).

LIB_SRC := $(wildcard runtime/*.c)
LIB_ASM := $(wildcard runtime/switch_$(ARCH).S)
LIB_OBJ := $(patsubst runtime/%.c,$(BUILD)/obj/%.o,$(LIB_SRC)) \
           $(patsubst runtime/%.S,$(BUILD)/obj/%.o,$(LIB_ASM))
# tests/test_faults.c needs a runtime built with -DWEFT_FAULT_INJECT: make test-faults.
TEST_SRC := $(filter-out tests/test_faults.c,$(wildcard tests/test_*.c))
TEST_OBJ := $(patsubst tests/%.c,$(BUILD)/tests/%.o,$(TEST_SRC))
LTO_TESTS := $(patsubst tests/%.c,$(BUILD)/tests/%,$(wildcard tests/lto_*.c))
# Programs that drive a real library (libpq, libcurl) are built only where its
# headers are; `make test` installs them first.
# (HAVE_LIBPQ and HAVE_LIBCURL must be set before SKIPPED_SRC is expanded.)
HAVE_LIBPQ   := $(if $(wildcard /usr/include/postgresql/libpq-fe.h),1)
HAVE_LIBCURL := $(if $(wildcard /usr/include/*/curl/curl.h),1)
HAVE_LIBSSL  := $(if $(wildcard /usr/include/openssl/ssl.h),1)
NEEDS_LIBPQ   := examples/pg_query.c
NEEDS_LIBCURL := examples/http_get.c bench/http_get.c
NEEDS_LIBSSL  := bench/tls_echo.c
SKIPPED_SRC := $(if $(HAVE_LIBPQ),,$(NEEDS_LIBPQ)) $(if $(HAVE_LIBCURL),,$(NEEDS_LIBCURL)) \
               $(if $(HAVE_LIBSSL),,$(NEEDS_LIBSSL))
EXAMPLES := $(patsubst examples/%.c,$(BUILD)/examples/%,$(filter-out $(SKIPPED_SRC),$(wildcard examples/*.c)))
BENCHES  := $(patsubst bench/%.c,$(BUILD)/bench/%,$(filter-out $(SKIPPED_SRC),$(wildcard bench/*.c)))

.PHONY: all lib deps build-deps demo-deps run-tests run-demo test test-asan test-tsan valgrind demo examples benches bench bench-quick \
        install uninstall check-install clean help check-aarch64 soak test-faults soak-net model
.DEFAULT_GOAL := all

all: build-deps lib examples

lib: $(BUILD)/libweft.a $(BUILD)/libweft.so $(BUILD)/weft.pc \
     $(if $(HAVE_LIBSSL),$(BUILD)/libweft_tls.a $(BUILD)/libweft_tls.so $(BUILD)/weft_tls.pc)

# ---------------------------------------------------------------- dependencies
# Header (or program) we need -> Debian package that provides it. Building
# the library needs jemalloc alone; the tests also need Criterion, valgrind's
# client header, and the real libraries and servers the integration tests
# drive (libpq and a PostgreSQL server, libcurl). Plain `make` installs
# nothing: it names what is missing. `make test` and `make demo` install
# what they need when run as root, else print the apt-get line.
BUILD_PKGS := /usr/include/jemalloc/jemalloc.h:libjemalloc-dev
TEST_PKGS  := /usr/include/criterion/criterion.h:libcriterion-dev \
              /usr/include/valgrind/valgrind.h:valgrind \
              /usr/include/postgresql/libpq-fe.h:libpq-dev \
              /usr/lib/postgresql/*/bin/initdb:postgresql \
              /usr/include/*/curl/curl.h:libcurl4-openssl-dev \
              /usr/include/openssl/ssl.h:libssl-dev \
              /usr/bin/openssl:openssl \
              /usr/bin/curl:curl \
              /usr/bin/spin:spin \
              /usr/include/*/libunwind.h:libunwind-dev \
              /usr/bin/gdb:gdb \
              /usr/include/liburing.h:liburing-dev
missing_pkgs = $(strip $(foreach d,$(1),$(if $(wildcard $(word 1,$(subst :, ,$(d)))),,$(word 2,$(subst :, ,$(d))))))
MISSING_BUILD := $(call missing_pkgs,$(BUILD_PKGS))
MISSING_TEST  := $(call missing_pkgs,$(BUILD_PKGS) $(TEST_PKGS))

# Optional real libraries: the programs and tests that use them are built
# when their headers are there (make test installs them first).
PQ_CFLAGS    := $(if $(HAVE_LIBPQ),-DWEFT_HAVE_LIBPQ -I/usr/include/postgresql)
PQ_LIBS      := $(if $(HAVE_LIBPQ),-lpq)
CURL_CFLAGS  := $(if $(HAVE_LIBCURL),-DWEFT_HAVE_LIBCURL)
CURL_LIBS    := $(if $(HAVE_LIBCURL),-lcurl)
# TLS (include/weft_tls.h, runtime/tls/): its own library, libweft_tls, so
# libweft never links OpenSSL. Programs using it put TLS_LIBS before
# libweft.a (APP_LIBS).
TLS_CFLAGS   := $(if $(HAVE_LIBSSL),-DWEFT_HAVE_LIBSSL)
TLS_LIBS     := $(if $(HAVE_LIBSSL),$(BUILD)/libweft_tls.a)
TLS_SYSLIBS  := $(if $(HAVE_LIBSSL),-lssl -lcrypto)
APP_LIBS     :=

# Checks only: the build needs these, and plain make never installs.
build-deps:
ifneq ($(MISSING_BUILD),)
	@echo "weft: missing Debian packages: $(MISSING_BUILD)"
	@echo "weft: install them with:  sudo apt-get update && sudo apt-get install -y $(MISSING_BUILD)"
	@echo "weft: (make test and make demo install them themselves when run as root)"
	@exit 1
else
	@true
endif

# Installs (as root) or names (otherwise) the packages in $(1).
define install_or_name
	@if [ -z "$(1)" ]; then true; \
	elif [ "$$(id -u)" = 0 ]; then \
	  echo "weft: installing missing Debian packages: $(1)"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(1); \
	else \
	  echo "weft: missing Debian packages: $(1)"; \
	  echo "weft: install them with:  sudo apt-get update && sudo apt-get install -y $(1)"; \
	  exit 1; \
	fi
endef

# What the tests need (make test), and what the demo needs (make demo).
deps:
	$(call install_or_name,$(MISSING_TEST))
demo-deps:
	$(call install_or_name,$(MISSING_BUILD))

# ---------------------------------------------------------------- library
$(BUILD)/obj/%.o: runtime/%.c | build-deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_LIB) $(DEPFLAGS) -c $< -o $@

$(BUILD)/obj/%.o: runtime/%.S | build-deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_LIB) $(DEPFLAGS) -c $< -o $@

$(BUILD)/libweft.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libweft.so: $(LIB_OBJ)
	$(CC) -shared $(SANFLAGS) -Wl,-soname,$(WEFT_SONAME) -o $@ $^ $(ALLOC_LIB) $(URING_LIBS) -pthread

# libweft_tls: runtime/tls/*.c, objects apart from libweft's (obj_tls/, not
# part of tests/arch/check_layers.sh's runtime layers).
TLS_SRC := $(wildcard runtime/tls/*.c)
TLS_OBJ := $(patsubst runtime/tls/%.c,$(BUILD)/obj_tls/%.o,$(TLS_SRC))
$(BUILD)/obj_tls/%.o: runtime/tls/%.c | build-deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_LIB) $(DEPFLAGS) -c $< -o $@

$(BUILD)/libweft_tls.a: $(TLS_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libweft_tls.so: $(TLS_OBJ) $(BUILD)/libweft.so
	$(CC) -shared $(SANFLAGS) -Wl,-soname,$(TLS_SONAME) -o $@ $(TLS_OBJ) \
	  -L$(BUILD) -l:libweft.so -lssl -lcrypto -pthread -Wl,-rpath,'$$ORIGIN'
# (RUNPATH $ORIGIN: libweft_tls finds the libweft.so.MAJOR installed beside
# it, also when a program's own rpath, which is not passed on to the
# libraries it loads, is what found libweft_tls.)

# The pkg-config files. jemalloc is in Libs, not Libs.private: weft makes it
# the process's allocator (README, "Memory: jemalloc"), and only a program
# that links it itself (before libc) gets that for certain. Libs.private has
# what a static link adds: libjemalloc.a needs -lm.
$(BUILD)/weft_tls.pc: Makefile include/weft.h
	@mkdir -p $(BUILD)
	@printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$${prefix}/lib' 'includedir=$${prefix}/include' '' \
	  'Name: weft_tls' 'Description: TLS over weft sockets (OpenSSL)' \
	  'Version: $(WEFT_VERSION)' 'Requires: weft' 'Requires.private: libssl libcrypto' \
	  'Cflags: -I$${includedir}' 'Libs: -L$${libdir} -lweft_tls' > $@

$(BUILD)/weft.pc: Makefile include/weft.h
	@mkdir -p $(BUILD)
	@printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$${prefix}/lib' 'includedir=$${prefix}/include' '' \
	  'Name: weft' 'Description: multithreaded work-stealing runtime of stackful tasks' \
	  'Version: $(WEFT_VERSION)' 'Cflags: -I$${includedir} -pthread' \
	  'Libs: -L$${libdir} -lweft -ljemalloc -pthread' 'Libs.private: -lm $(URING_LIBS)' > $@

# ---------------------------------------------------------------- programs
$(BUILD)/examples/%: examples/%.c $(BUILD)/libweft.a | build-deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_APP) $(DEPFLAGS) $< -o $@ $(APP_LIBS) $(BUILD)/libweft.a $(LDLIBS_APP)

$(BUILD)/bench/%: bench/%.c $(BUILD)/libweft.a | build-deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_APP) $(DEPFLAGS) $< -o $@ $(APP_LIBS) $(BUILD)/libweft.a $(LDLIBS_APP)

$(BUILD)/examples/pg_query: CFLAGS_APP += $(PQ_CFLAGS)
$(BUILD)/examples/pg_query: LDLIBS_APP += $(PQ_LIBS)
$(BUILD)/examples/http_get $(BUILD)/bench/http_get: CFLAGS_APP += $(CURL_CFLAGS)
$(BUILD)/examples/http_get $(BUILD)/bench/http_get: LDLIBS_APP += $(CURL_LIBS)
# The example servers serve TLS when given a certificate (where libssl is).
TLS_PROGS := $(BUILD)/examples/echo_server $(BUILD)/examples/http_server $(BUILD)/bench/tls_echo
$(TLS_PROGS): CFLAGS_APP += $(TLS_CFLAGS)
$(TLS_PROGS): APP_LIBS += $(TLS_LIBS)
$(TLS_PROGS): LDLIBS_APP += $(TLS_SYSLIBS)
$(TLS_PROGS): $(TLS_LIBS)

examples: $(EXAMPLES)
benches: $(BENCHES)

# The tests that drive libpq and libcurl compile to a skip where the library
# is missing, so the one binary always links.
$(BUILD)/tests/%.o: tests/%.c $(CRITERION_DEPS) | build-deps
	@mkdir -p $(dir $@)
	$(CC) $(CRITERION_INC) $(CFLAGS_APP) $(PQ_CFLAGS) $(CURL_CFLAGS) $(TLS_CFLAGS) $(DEPFLAGS) -c $< -o $@

$(BUILD)/tests/weft_tests: $(TEST_OBJ) $(TLS_LIBS) $(BUILD)/libweft.a $(CRITERION_OBJ)
	$(CC) $(SANFLAGS) -rdynamic -o $@ $(TEST_OBJ) $(TLS_LIBS) $(BUILD)/libweft.a $(CRITERION_LIB) $(PQ_LIBS) $(CURL_LIBS) \
	  $(TLS_SYSLIBS) $(LDLIBS_APP)

# The migration test compiles the runtime into itself under LTO, so the
# compiler sees across the switch and could hoist thread-locals if the
# runtime let it.
$(BUILD)/tests/lto_%: tests/lto_%.c $(LIB_SRC) $(LIB_ASM) $(CRITERION_DEPS) $(CRITERION_OBJ) | build-deps
	@mkdir -p $(dir $@)
	$(CC) $(CRITERION_INC) $(CSTD) $(WARN) -O2 -flto -g $(SANFLAGS) $(ASSERTS) -pthread -D_GNU_SOURCE $(DEPFLAGS) \
	  -Iinclude -Iruntime $< $(LIB_SRC) $(LIB_ASM) -o $@ $(CRITERION_LIB) $(LDLIBS_APP)

$(BUILD)/tests/gdb_target: tests/gdb_target.c $(BUILD)/libweft.a | build-deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_APP) $(DEPFLAGS) $< -o $@ $(BUILD)/libweft.a $(LDLIBS_APP)

# The register-level switch check (tests/arch/switch_check.c) for this machine.
$(BUILD)/tests/switch_check: tests/arch/switch_check.c runtime/context.c $(LIB_ASM) runtime/context.h | build-deps
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) -O2 -g -D_GNU_SOURCE -Iinclude -Iruntime $< runtime/context.c $(LIB_ASM) -o $@

TEST_ENV ?=
CRITERION_FLAGS ?= --jobs 2
# The example servers are built too: the signal tests run them (graceful stop).
TEST_EXAMPLES := $(BUILD)/examples/echo_server $(BUILD)/examples/http_server
# ... tests/test_dump.c makes a core file of tests/gdb_target for the gdb extension ...
TEST_EXAMPLES += $(BUILD)/tests/gdb_target
# ... and tests/test_pg.c runs examples/pg_query.
TEST_EXAMPLES += $(if $(HAVE_LIBPQ),$(BUILD)/examples/pg_query) $(if $(HAVE_LIBCURL),$(BUILD)/examples/http_get)
# Two steps: deps may install packages, and which tests and programs link
# libpq and libcurl is decided when make reads this file.
test: deps
	@$(MAKE) --no-print-directory run-tests
run-tests: $(BUILD)/tests/weft_tests $(LTO_TESTS) $(BUILD)/tests/switch_check $(TEST_EXAMPLES)
	@sh tests/arch/check_layers.sh $(BUILD)/obj
	@if [ "$(BUILD)" = build ]; then $(MAKE) --no-print-directory model; fi
	@$(MAKE) --no-print-directory check-man
	@if [ "$(BUILD)" = build ]; then $(MAKE) --no-print-directory check-install; fi
	@if [ "$(BUILD)" = build ]; then $(MAKE) --no-print-directory test-faults; fi
	@for t in $(LTO_TESTS); do echo "== $$t"; $(TEST_ENV) $$t $(CRITERION_FLAGS) || exit 1; done
	@if [ "$(BUILD)" = build ] && [ "$(ARCH)" != aarch64 ]; then $(MAKE) --no-print-directory check-aarch64; fi
	@echo "== $(BUILD)/tests/weft_tests"
	@WEFT_EXAMPLES_DIR=$(BUILD)/examples $(TEST_ENV) $(BUILD)/tests/weft_tests $(CRITERION_FLAGS)
	@echo "== $(BUILD)/tests/weft_tests (WEFT_BACKEND=uring: the io_uring poller, where the kernel allows it)"
	@WEFT_BACKEND=uring WEFT_EXAMPLES_DIR=$(BUILD)/examples $(TEST_ENV) $(BUILD)/tests/weft_tests $(CRITERION_FLAGS)

# Exhaustive checks of the park protocol and the local ring (spin models in
# tests/model/, README "Testing"): the models must pass and every mutant,
# with a needed fence or step removed, must fail. MODEL_FULL=1: larger ones.
model:
	@sh tests/model/run.sh $(BUILD)/model

# Instrumented runs of the same suite. Fiber annotations live in runtime/context.h.
# --jobs 1: Criterion's parallel runner leaks a few bytes in its own parent
# process (libcriterion 2.4.1), which LeakSanitizer would rightly report.
test-asan:
	$(MAKE) test CRITERION_FLAGS="--jobs 1" BUILD=build/asan CC=$(CC) OPT="-O1 -g -fno-omit-frame-pointer" \
	  SANFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=all" ALLOC_LIB= ASSERTS=-DWEFT_DEBUG_ASSERTS \
	  TEST_ENV="ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1"

# Allocation-failure injection (runtime/fault.c, tests/test_faults.c): the
# runtime built with -DWEFT_FAULT_INJECT under ASan/UBSan, and a test binary
# of its own that fails the 1st, 2nd, ... allocation of each path; LSan
# checks at exit that no failure leaked. `make test` runs it.
FAULTS_BUILD := build/faults
test-faults:
	@$(MAKE) --no-print-directory $(FAULTS_BUILD)/tests/weft_faults BUILD=$(FAULTS_BUILD) CC=$(CC) \
	  OPT="-O1 -g -fno-omit-frame-pointer" SANFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=all" \
	  ALLOC_LIB= ASSERTS="-DWEFT_DEBUG_ASSERTS -DWEFT_FAULT_INJECT"
	@echo "== $(FAULTS_BUILD)/tests/weft_faults"
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  $(FAULTS_BUILD)/tests/weft_faults --jobs 1
$(BUILD)/tests/weft_faults: $(BUILD)/tests/test_faults.o $(BUILD)/libweft.a
	$(CC) $(SANFLAGS) -o $@ $< $(BUILD)/libweft.a $(CRITERION_LIB) $(LDLIBS_APP)

# Criterion cannot start under TSan (its BoxFort arena sits at fixed addresses
# in TSan's shadow range, Snaipe/Criterion#274), so this lane builds the same
# test sources against tests/tsan: a Criterion-compatible header and a small
# runner that forks one test at a time (see tests/tsan/runner.c).
# The signal tests start the example servers from the plain build: a server
# built with TSan never sees SIGINT, which TSan defers while the main thread
# sleeps in block_on's futex wait (the reason three signal tests skip here).
TSAN_BUILD := build/tsan
test-tsan: $(TEST_EXAMPLES)
	$(MAKE) test BUILD=$(TSAN_BUILD) CC=$(CC) OPT="-O1 -g" SANFLAGS="-fsanitize=thread" ALLOC_LIB= ASSERTS=-DWEFT_DEBUG_ASSERTS \
	  CRITERION_INC=-Itests/tsan CRITERION_LIB=$(TSAN_BUILD)/tests/tsan/runner.o \
	  CRITERION_DEPS="$(wildcard tests/tsan/criterion/*.h)" CRITERION_FLAGS="--verbose" \
	  TEST_ENV="TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 WEFT_EXAMPLES_DIR=$(BUILD)/examples"

# --fair-sched: valgrind runs one thread at a time, and its default lock
# lets a spinning thread starve the others (tests where a worker is stuck on
# purpose, or where work must spread to both workers).
VALGRIND := valgrind --fair-sched=try --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect \
            --errors-for-leak-kinds=definite,indirect --trace-children=yes --quiet \
            --suppressions=/dev/null --trace-children-skip='*/postgresql/*,*/rm' --vgdb=no
# (tests/test_pg.c runs PostgreSQL's initdb and postgres, and rm: not traced; --vgdb=no:
# its children change user before exec, and could not remove vgdb's FIFOs.)
valgrind:
	$(MAKE) $(BUILD)/valgrind/tests/weft_tests $(BUILD)/valgrind/tests/gdb_target $(BUILD)/valgrind/examples/echo_server \
	  $(BUILD)/valgrind/examples/http_server $(if $(HAVE_LIBPQ),$(BUILD)/valgrind/examples/pg_query) \
	  BUILD=$(BUILD)/valgrind ALLOC_LIB= OPT="-O1 -g" ASSERTS=-DWEFT_DEBUG_ASSERTS
	WEFT_VALGRIND=1 WEFT_EXAMPLES_DIR=$(BUILD)/valgrind/examples \
	  $(VALGRIND) $(BUILD)/valgrind/tests/weft_tests --jobs 1

# Long soaks, kept out of `make test`.
$(BUILD)/soak/%: tests/soak/%.c $(BUILD)/libweft.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_APP) $< -o $@ $(BUILD)/libweft.a $(LDLIBS_APP)

soak: deps $(patsubst tests/soak/%.c,$(BUILD)/soak/%,$(wildcard tests/soak/*.c))
	@for s in $(BUILD)/soak/*; do echo "== $$s"; $$s || exit 1; done

# ---------------------------------------------------------------- fuzzing
# make fuzz [FUZZ_S=60]: each libFuzzer harness of tests/fuzz/fuzz_NAME.c
# for FUZZ_S seconds, from its seed corpus tests/fuzz/corpus/NAME (left as
# it is: new inputs go to $(FUZZ_BUILD)/work/NAME, a crash's input to
# $(FUZZ_BUILD)/artifacts/, and the run fails). Debian's clang and its
# fuzzer runtime, installed here when run as root. The runtime is built
# into $(FUZZ_BUILD) with coverage, ASan and UBSan; tests/test_fuzz_corpus.c
# replays every corpus file through the same checks in `make test`.
FUZZ_S       ?= 60
FUZZ_CC      ?= clang-14
FUZZ_BUILD   := build/fuzz
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_PKGS    := /usr/bin/$(FUZZ_CC):$(FUZZ_CC) \
                /usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer-$(ARCH).a:libclang-rt-14-dev
FUZZ_NAMES   := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_MAX_LEN ?= 10000
.PHONY: fuzz fuzz-deps fuzz-build
fuzz-deps:
	$(call install_or_name,$(call missing_pkgs,$(FUZZ_PKGS)))
fuzz: fuzz-deps
	@$(MAKE) --no-print-directory fuzz-build
	@mkdir -p $(FUZZ_BUILD)/artifacts
	@for f in $(FUZZ_NAMES); do \
	  echo "== fuzz $$f for $(FUZZ_S) s"; mkdir -p $(FUZZ_BUILD)/work/$$f; \
	  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  $(FUZZ_BUILD)/fuzz_$$f -max_total_time=$(FUZZ_S) -timeout=20 -print_final_stats=1 \
	    -max_len=$(FUZZ_MAX_LEN) -artifact_prefix=$(FUZZ_BUILD)/artifacts/$$f- \
	    $(FUZZ_BUILD)/work/$$f tests/fuzz/corpus/$$f || \
	  { echo "fuzz: $$f failed; the input is in $(FUZZ_BUILD)/artifacts/"; exit 1; }; \
	done
fuzz-build:
	$(MAKE) --no-print-directory $(FUZZ_BUILD)/libweft.a BUILD=$(FUZZ_BUILD) CC=$(FUZZ_CC) ALLOC_LIB= \
	  OPT="-O1 -g -fno-omit-frame-pointer" SANFLAGS="-fsanitize=fuzzer-no-link $(FUZZ_SAN)" \
	  ASSERTS=-DWEFT_DEBUG_ASSERTS
	$(MAKE) --no-print-directory $(patsubst %,$(FUZZ_BUILD)/fuzz_%,$(FUZZ_NAMES))
$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/*.h common/http_parser.h examples/http_server.c examples/serve.h $(FUZZ_BUILD)/libweft.a
	$(FUZZ_CC) $(CSTD) $(WARN) -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer $(FUZZ_SAN) -pthread \
	  -D_GNU_SOURCE -Iinclude -Iruntime -Icommon $< -o $@ $(FUZZ_BUILD)/libweft.a -pthread -lm
# The corpus replay test finds the corpus here (WEFT_FUZZ_CORPUS overrides).
$(BUILD)/tests/test_fuzz_corpus.o: CFLAGS_APP += -DWEFT_FUZZ_CORPUS='"$(CURDIR)/tests/fuzz/corpus"'
$(BUILD)/tests/test_fuzz_corpus.o: $(wildcard tests/fuzz/*.h) examples/http_server.c examples/serve.h examples/serve_tls.h

# The example servers under load for SOAK_S seconds (default 60), their
# memory, descriptors and live tasks sampled every second and checked to come
# back to their start (tests/soak_net/run.sh says how close, and why).
SOAK_NET_PKGS := /usr/bin/wrk:wrk
$(BUILD)/soak_net/%: tests/soak_net/%.c $(BUILD)/libweft.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_APP) $< -o $@ $(BUILD)/libweft.a $(LDLIBS_APP)

soak-net: $(BUILD)/examples/echo_server $(BUILD)/examples/http_server $(BUILD)/soak_net/echo_clients
	$(call install_or_name,$(call missing_pkgs,$(SOAK_NET_PKGS)))
	@sh tests/soak_net/run.sh $(BUILD)

# ---------------------------------------------------------------- demo, bench
# The async-vs-threads comparison (bench/avt.h, shared with its smoke test)
# adds its weft_spawn_blocking model when the runtime's header declares it.
AVT_CFLAGS := $(if $(shell grep -s -l weft_spawn_blocking include/weft.h),-DAVT_HAVE_SPAWN_BLOCKING)
$(BUILD)/bench/async_vs_threads $(BUILD)/bench/scaling $(BUILD)/tests/test_bench_smoke.o: \
  CFLAGS_APP += $(AVT_CFLAGS)
$(BUILD)/tests/test_bench_smoke.o: bench/avt.h bench/bench.h
$(BUILD)/tests/test_chan_bench_smoke.o: bench/chan_bench.h bench/bench.h
$(BUILD)/tests/test_timers_smoke.o: bench/timers_bench.h bench/bench.h

# The tour (examples/tour.c): tasks, gather, the HTTP server under loadgen and
# a reduced async-vs-threads comparison, in under a minute.
demo: demo-deps
	@$(MAKE) --no-print-directory run-demo
run-demo: all $(BUILD)/bench/loadgen $(BUILD)/bench/async_vs_threads
	$(BUILD)/examples/tour

BENCH_ARGS ?=
bench: lib benches
	@mkdir -p bench/results
	@for b in $(BENCHES); do echo "== $$b"; $$b $(BENCH_ARGS) | tee bench/results/$$(basename $$b).txt || exit 1; done
	@{ echo name,value,unit; cat bench/results/*.txt | awk '/^bench: /{print $$2","$$3","$$4}'; } \
	  > bench/results/all.csv
	@echo "results: bench/results/all.csv"

bench-quick:
	$(MAKE) bench BENCH_ARGS=--quick

# weft beside Tokio, Go and libuv on the same workloads, interleaved (bench/peers/,
# issue 19): builds the peers from Debian's packages, offline (installing them as
# root), then runs the rounds. Not part of `make bench`: it needs the packages and minutes.
PEERS_ARGS ?=
.PHONY: bench-peers bench-peers-quick bench-peers-smoke
bench-peers: all benches
	sh bench/peers/build.sh $(BUILD)
	python3 bench/peers/run.py --build $(BUILD) $(PEERS_ARGS)
bench-peers-quick:
	$(MAKE) bench-peers PEERS_ARGS=--quick
# Every peer at tiny sizes, checked for correct answers and no early timer (no figures).
bench-peers-smoke:
	$(MAKE) bench-peers PEERS_ARGS=--smoke

# PNG charts of bench/results/all.csv (bench/charts.sh) with gnuplot
# (Debian: gnuplot-nox, installed here when run as root).
.PHONY: charts
charts:
	@if ! command -v gnuplot >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "weft: installing gnuplot-nox"; \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q gnuplot-nox; \
	  else \
	    echo "weft: charts need gnuplot: sudo apt-get update && sudo apt-get install -y gnuplot-nox"; \
	    exit 1; \
	  fi; \
	fi
	@test -f bench/results/all.csv || { echo "charts: no bench/results/all.csv; run make bench first"; exit 1; }
	sh bench/charts.sh bench/results/all.csv bench/results

# ---------------------------------------------------------------- aarch64
# Cross-builds the switch test for aarch64 and runs it under qemu-user when
# Debian's gcc-aarch64-linux-gnu and qemu-user are installed. Debian's aarch64
# crt files and libc.a carry no BTI note, so the linked binary never has one;
# the BTI/PAC property is checked on a relocatable link of our own objects,
# which is what decides whether weft keeps it in a BTI-built program.
AARCH64_CC ?= aarch64-linux-gnu-gcc
AARCH64_CHECK_FLAGS := $(CSTD) $(WARN) -O2 -mbranch-protection=standard -D_GNU_SOURCE \
                       -Iinclude -Iruntime
AARCH64_CHECK_SRC := tests/arch/switch_check.c runtime/context.c runtime/switch_aarch64.S
check-aarch64:
	@if ! command -v $(AARCH64_CC) >/dev/null; then \
	  echo "check-aarch64: $(AARCH64_CC) not installed (apt-get install gcc-aarch64-linux-gnu); skipped"; exit 0; fi; \
	mkdir -p $(BUILD)/aarch64 && \
	$(AARCH64_CC) $(AARCH64_CHECK_FLAGS) -r -nostdlib $(AARCH64_CHECK_SRC) -o $(BUILD)/aarch64/switch_check.o && \
	if readelf -n $(BUILD)/aarch64/switch_check.o | grep -q 'AArch64 feature: BTI, PAC'; then \
	  echo "check-aarch64: objects keep the BTI and PAC properties"; \
	else echo "check-aarch64: BTI/PAC property lost:"; readelf -n $(BUILD)/aarch64/switch_check.o; exit 1; fi && \
	$(AARCH64_CC) $(AARCH64_CHECK_FLAGS) $(AARCH64_CHECK_SRC) -static -o $(BUILD)/aarch64/switch_check && \
	if command -v qemu-aarch64 >/dev/null; then qemu-aarch64 $(BUILD)/aarch64/switch_check; \
	else echo "check-aarch64: built; qemu-user not installed, not run"; fi

# ---------------------------------------------------------------- install
# make install [PREFIX=/usr/local] [DESTDIR=staging]; make uninstall with the
# same PREFIX/DESTDIR removes exactly the files install put there (and the
# directories it made, when they are left empty). INSTALLED lists them.
LIBDIR  := $(PREFIX)/lib
INCDIR  := $(PREFIX)/include
PCDIR   := $(LIBDIR)/pkgconfig
MANDIR  := $(PREFIX)/share/man
MAN_PAGES = $(wildcard $(BUILD)/man/man3/*.3) $(wildcard $(BUILD)/man/man7/*.7)
INSTALLED_WEFT := $(INCDIR)/weft.h $(LIBDIR)/libweft.a $(LIBDIR)/libweft.so.$(WEFT_VERSION) \
                  $(LIBDIR)/$(WEFT_SONAME) $(LIBDIR)/libweft.so $(PCDIR)/weft.pc
INSTALLED_TLS  := $(INCDIR)/weft_tls.h $(LIBDIR)/libweft_tls.a $(LIBDIR)/libweft_tls.so.$(WEFT_VERSION) \
                  $(LIBDIR)/$(TLS_SONAME) $(LIBDIR)/libweft_tls.so $(PCDIR)/weft_tls.pc

install: lib man
	install -d $(DESTDIR)$(INCDIR) $(DESTDIR)$(PCDIR) $(DESTDIR)$(MANDIR)/man3 $(DESTDIR)$(MANDIR)/man7
	install -m 644 include/weft.h $(DESTDIR)$(INCDIR)/
	install -m 644 $(BUILD)/libweft.a $(DESTDIR)$(LIBDIR)/
	install -m 755 $(BUILD)/libweft.so $(DESTDIR)$(LIBDIR)/libweft.so.$(WEFT_VERSION)
	ln -sf libweft.so.$(WEFT_VERSION) $(DESTDIR)$(LIBDIR)/$(WEFT_SONAME)
	ln -sf $(WEFT_SONAME) $(DESTDIR)$(LIBDIR)/libweft.so
	sed 's|^prefix=.*|prefix=$(PREFIX)|' $(BUILD)/weft.pc > $(DESTDIR)$(PCDIR)/weft.pc
ifneq ($(HAVE_LIBSSL),)
	install -m 644 include/weft_tls.h $(DESTDIR)$(INCDIR)/
	install -m 644 $(BUILD)/libweft_tls.a $(DESTDIR)$(LIBDIR)/
	install -m 755 $(BUILD)/libweft_tls.so $(DESTDIR)$(LIBDIR)/libweft_tls.so.$(WEFT_VERSION)
	ln -sf libweft_tls.so.$(WEFT_VERSION) $(DESTDIR)$(LIBDIR)/$(TLS_SONAME)
	ln -sf $(TLS_SONAME) $(DESTDIR)$(LIBDIR)/libweft_tls.so
	sed 's|^prefix=.*|prefix=$(PREFIX)|' $(BUILD)/weft_tls.pc > $(DESTDIR)$(PCDIR)/weft_tls.pc
endif
	cd $(BUILD)/man && for f in man3/*.3 man7/*.7; do install -m 644 $$f $(DESTDIR)$(MANDIR)/$$f; done
	@echo "weft: installed in $(DESTDIR)$(PREFIX); see README (Installing) for PKG_CONFIG_PATH and ldconfig"

# Removes what install put there: the files above, the man pages the
# generator makes (it lists them, so a page removed from the build is still
# removed from an older install), then the directories if empty.
uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED_WEFT) $(INSTALLED_TLS))
	@python3 tools/mkman.py --list include/weft.h include/weft_tls.h | \
	  while read f; do rm -f "$(DESTDIR)$(MANDIR)/$$f"; done
	-@for d in $(PCDIR) $(MANDIR)/man3 $(MANDIR)/man7 $(MANDIR) $(PREFIX)/share $(LIBDIR) $(INCDIR); do \
	  rmdir "$(DESTDIR)$$d" 2>/dev/null; done; true

# ---------------------------------------------------------------- man pages
# Section-3 pages for every WEFT_API function and weft(7), generated from the
# header comments by tools/mkman.py (so they cannot drift from the header).
.PHONY: man check-man
man: $(BUILD)/man/.stamp
$(BUILD)/man/.stamp: tools/mkman.py include/weft.h include/weft_tls.h docs/weft.7.in
	@rm -rf $(BUILD)/man
	python3 tools/mkman.py --out $(BUILD)/man include/weft.h include/weft_tls.h
	@touch $@

# Fails when a WEFT_API function of include/*.h has no page.
check-man: man
	@sh tests/arch/check_man.sh $(BUILD)/man include/*.h

# Installs into a staging directory and builds programs against it, dynamic
# and static, with pkg-config; then uninstalls and checks nothing is left.
check-install: lib man
	@sh tests/arch/install_check.sh $(BUILD)

clean:
	rm -rf build

help:
	@echo "make          build/libweft.a, build/libweft.so, build/weft.pc, examples"
	@echo "make demo     build everything and run the main demo"
	@echo "make test     build and run every test (Criterion)"
	@echo "make test-asan / test-tsan / valgrind   the same suite instrumented"
	@echo "make test-faults  every allocation of each path failed in turn (ASan; part of make test)"
	@echo "make bench / bench-quick   benchmarks (results in bench/results/)"
	@echo "make bench-peers / bench-peers-quick / bench-peers-smoke   weft beside Tokio, Go, libuv (bench/peers/)"
	@echo "make install PREFIX=DIR [DESTDIR=STAGE]   headers, libraries, pkg-config files, man pages"
	@echo "make uninstall PREFIX=DIR  removes what install put there"
	@echo "make man      man pages in build/man (tools/mkman.py)"
	@echo "make check-aarch64         cross-build and run the aarch64 switch check under qemu"
	@echo "make charts   PNG charts of bench/results/all.csv (gnuplot)"
	@echo "make soak     long soaks (a million sleeping tasks)"
	@echo "make fuzz [FUZZ_S=60]      libFuzzer harnesses of tests/fuzz, FUZZ_S seconds each"
	@echo "make soak-net the example servers under 10,000 connections and wrk (SOAK_S=60)"

# Header dependencies written by -MMD -MP.
-include $(shell find $(BUILD) -maxdepth 2 -name '*.d' 2>/dev/null)
