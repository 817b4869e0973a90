# Threshold.  `make` builds every binary into $(BUILD)/bin; `make test` installs
# the Debian packages it needs, then runs the unit and integration tests;
# `make asan` runs the same tests under AddressSanitizer/UBSan; `make fuzz`
# runs the parsers of outside input under libFuzzer (fuzz/README.md); `make
# demo` runs the end-to-end story.  Nothing else is needed on a fresh Debian machine.

BUILD	?= build
CC	?= cc
SAN	?=

PKGS_COMMON	= openssl json-c sqlite3
PKGS_HW		= tss2-esys tss2-mu tss2-rc tss2-tctildr libp11 p11-kit-1

CFLAGS_BASE = -std=c11 -D_GNU_SOURCE -g -O2 -Wall -Wextra -Werror \
	-Wformat=2 -Wshadow -Wpointer-arith -Wmissing-prototypes \
	-fstack-protector-strong -D_FORTIFY_SOURCE=2 -Ilib
ifneq ($(SAN),)
CFLAGS_BASE := $(filter-out -O2 -D_FORTIFY_SOURCE=2,$(CFLAGS_BASE)) -O1 \
	-fsanitize=address,undefined -fno-omit-frame-pointer \
	-fno-sanitize-recover=undefined
LDFLAGS_SAN = -fsanitize=address,undefined
endif
# TSAN=1: ThreadSanitizer instead (the broker's request threads share it).
ifneq ($(TSAN),)
CFLAGS_BASE := $(filter-out -O2 -D_FORTIFY_SOURCE=2,$(CFLAGS_BASE)) -O1 \
	-fsanitize=thread -fno-omit-frame-pointer
LDFLAGS_SAN = -fsanitize=thread
endif
# FUZZ=1 (with CC=clang SAN=1): every object gets libFuzzer's coverage.
ifneq ($(FUZZ),)
CFLAGS_BASE += -fsanitize=fuzzer-no-link
endif

CFLAGS_COMMON	= $(CFLAGS_BASE) $(shell pkg-config --cflags $(PKGS_COMMON) 2>/dev/null)
LIBS_COMMON	= $(shell pkg-config --libs $(PKGS_COMMON) 2>/dev/null) -lpthread
CFLAGS_HW	= $(CFLAGS_COMMON) -Itpm -Ipkcs11 $(shell pkg-config --cflags $(PKGS_HW) 2>/dev/null)
LIBS_HW		= $(shell pkg-config --libs $(PKGS_HW) 2>/dev/null)
LDFLAGS		= $(LDFLAGS_SAN)

LIB_SRC		= $(wildcard lib/*.c)
HW_SRC		= $(wildcard tpm/*.c pkcs11/*.c)
SIGNER_SRC	= $(filter-out signer/main.c,$(wildcard signer/*.c))
CLI_SRC		= $(filter-out cli/main.c,$(wildcard cli/*.c))
TOKENS_SRC	= $(wildcard tokens/*.c)
BROKER_SRC	= $(filter-out broker/main.c,$(wildcard broker/*.c))
AUDIT_SRC	= $(wildcard audit/*.c)
UNIT_SRC	= $(wildcard tests/unit/test_*.c)
HWTEST_SRC	= $(wildcard tests/hw/test_*.c)
BENCH_SRC	= $(wildcard bench/*.c)
FUZZ_SRC	= $(wildcard fuzz/fuzz_*.c)

LIB_OBJ		= $(LIB_SRC:%.c=$(BUILD)/%.o)
HW_OBJ		= $(HW_SRC:%.c=$(BUILD)/%.o)
SIGNER_OBJ	= $(SIGNER_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ		= $(CLI_SRC:%.c=$(BUILD)/%.o)
TOKENS_OBJ	= $(TOKENS_SRC:%.c=$(BUILD)/%.o)
BROKER_OBJ	= $(BROKER_SRC:%.c=$(BUILD)/%.o)
AUDIT_OBJ	= $(AUDIT_SRC:%.c=$(BUILD)/%.o)

LIBCOMMON	= $(BUILD)/libthcommon.a
LIBHW		= $(BUILD)/libthhw.a
LIBSIGNER	= $(BUILD)/libthsigner.a
LIBCLI		= $(BUILD)/libthcli.a
LIBTOKENS	= $(BUILD)/libthtokens.a
LIBBROKER	= $(BUILD)/libthbroker.a
LIBAUDIT	= $(BUILD)/libthaudit.a
LIBS_BROKER	= $(shell pkg-config --libs libcurl libmicrohttpd zlib 2>/dev/null)

BINS		= $(BUILD)/bin/threshold-signer $(BUILD)/bin/threshold \
		  $(BUILD)/bin/thresholdd \
		  $(BUILD)/bin/threshold-pkcs11-helper \
		  $(BUILD)/bin/git-credential-threshold
UNIT_BINS	= $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
HWTEST_BINS	= $(HWTEST_SRC:tests/hw/%.c=$(BUILD)/tests/%)
BENCH_BINS	= $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
FUZZ_BINS	= $(FUZZ_SRC:fuzz/%.c=$(BUILD)/fuzz/%)

.PHONY: all deps test unit integration asan tsan fuzz fuzz-bins demo bench clean \
	check-privsep
all: $(BINS) $(UNIT_BINS) $(HWTEST_BINS) $(BENCH_BINS)

deps:
	@./scripts/deps

# Objects.  Hardware backends and the signer see tpm2-tss/libp11 headers; the
# rest of the tree does not.
$(BUILD)/lib/%.o: lib/%.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_COMMON) -MMD -MP -c $< -o $@
$(BUILD)/cli/%.o: cli/%.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_COMMON) -Itokens -Iaudit -MMD -MP -c $< -o $@
$(BUILD)/tokens/%.o: tokens/%.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_COMMON) -Itokens -MMD -MP -c $< -o $@
$(BUILD)/broker/%.o: broker/%.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_COMMON) -Itokens -Ibroker -Iaudit -MMD -MP -c $< -o $@
$(BUILD)/audit/%.o: audit/%.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_COMMON) -Itokens -Iaudit -MMD -MP -c $< -o $@
$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_HW) -Isigner -MMD -MP -c $< -o $@

$(LIBCOMMON): $(LIB_OBJ)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^
$(LIBHW): $(HW_OBJ)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^
$(LIBSIGNER): $(SIGNER_OBJ)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^
$(LIBCLI): $(CLI_OBJ)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^
$(LIBTOKENS): $(TOKENS_OBJ)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^
$(LIBBROKER): $(BROKER_OBJ)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^
$(LIBAUDIT): $(AUDIT_OBJ)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^
$(BUILD)/bin/thresholdd: $(BUILD)/broker/main.o $(LIBBROKER) $(LIBAUDIT) $(LIBTOKENS) $(LIBCOMMON)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS_BROKER) $(LIBS_COMMON)

$(BUILD)/bin/threshold-signer: $(BUILD)/signer/main.o $(LIBSIGNER) $(LIBHW) $(LIBCOMMON)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS_HW) $(LIBS_COMMON)
$(BUILD)/bin/threshold: $(BUILD)/cli/main.o $(LIBCLI) $(LIBAUDIT) $(LIBTOKENS) $(LIBCOMMON)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(shell pkg-config --libs libcurl) $(LIBS_COMMON)
# git runs "git-credential-threshold" for credential.helper threshold.
$(BUILD)/bin/git-credential-threshold: $(BUILD)/bin/threshold
	ln -sf threshold $@

# The human's PKCS#11 token is used only in this helper, which the CLI spawns
# (lib/p11client.c), as ssh-pkcs11-helper is for ssh.
$(BUILD)/bin/threshold-pkcs11-helper: $(BUILD)/p11helper/main.o $(LIBHW) $(LIBCOMMON)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS_HW) $(LIBS_COMMON)

# Unit tests link everything but the hardware libraries' users need them too.
$(BUILD)/tests/%: tests/unit/%.c $(LIBSIGNER) $(LIBCLI) $(LIBBROKER) $(LIBAUDIT) $(LIBTOKENS) $(LIBHW) $(LIBCOMMON)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_HW) -Isigner -Icli -Itokens -Ibroker -Iaudit -o $@ $^ $(LDFLAGS) -lcmocka $(LIBS_BROKER) $(LIBS_HW) $(LIBS_COMMON)
$(BUILD)/tests/%: tests/hw/%.c $(LIBAUDIT) $(LIBTOKENS) $(LIBHW) $(LIBCOMMON)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_HW) -Itokens -Iaudit -o $@ $^ $(LDFLAGS) -lcmocka $(LIBS_HW) $(LIBS_COMMON)
$(BUILD)/bench/%: bench/%.c $(LIBSIGNER) $(LIBAUDIT) $(LIBTOKENS) $(LIBHW) $(LIBCOMMON)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_HW) -Isigner -Itokens -Iaudit -o $@ $^ $(LDFLAGS) -lpthread $(LIBS_BROKER) $(LIBS_HW) $(LIBS_COMMON)

$(BUILD)/fuzz/%: fuzz/%.c fuzz/fuzz.h $(LIBSIGNER) $(LIBBROKER) $(LIBAUDIT) $(LIBTOKENS) $(LIBHW) $(LIBCOMMON)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_HW) -Isigner -Itokens -Ibroker -Iaudit -Ifuzz -fsanitize=fuzzer -o $@ $(filter-out %.h,$^) $(LDFLAGS) $(LIBS_BROKER) $(LIBS_HW) $(LIBS_COMMON)

# Only the signer may hold key material: keep tpm2-tss and libp11 out of
# every other binary.
check-privsep: $(BINS)
	@for b in threshold thresholdd; do \
		if nm -D --undefined-only $(BUILD)/bin/$$b | grep -E 'Esys_|PKCS11_|C_GetFunctionList|p11_kit' ; then \
			echo "check-privsep: $$b links a key backend" >&2; exit 1; fi; done
	@echo "check-privsep: ok (threshold and thresholdd hold no key code)"

unit: $(UNIT_BINS)
	@./tests/run-unit $(UNIT_BINS)

integration: all
	@BUILD=$(BUILD) ./tests/run-integration

test: deps
	$(MAKE) all check-privsep
	$(MAKE) unit integration
	$(MAKE) asan
	$(MAKE) tsan
	$(MAKE) fuzz

asan:
	$(MAKE) BUILD=build-asan SAN=1 all
	$(MAKE) BUILD=build-asan SAN=1 unit integration

# Every test again under TSan, whose threads are the broker's connections,
# revoker and GitHub sessions, the signer's TPM lane and the verifier's
# line and signature workers: a data race aborts the process, and so fails
# the test.
tsan:
	$(MAKE) BUILD=build-tsan TSAN=1 all
	TSAN_OPTIONS="halt_on_error=1 abort_on_error=1" \
	    $(MAKE) BUILD=build-tsan TSAN=1 unit
	@BUILD=build-tsan TSAN_OPTIONS="halt_on_error=1 abort_on_error=1" \
	    ./tests/run-integration

fuzz-bins: $(FUZZ_BINS)

fuzz: deps
	$(MAKE) BUILD=build-fuzz CC=clang SAN=1 FUZZ=1 fuzz-bins
	@BUILD=build-fuzz ./fuzz/run

demo: deps
	$(MAKE) all
	@BUILD=$(BUILD) ./scripts/demo

bench: deps
	$(MAKE) all
	@BUILD=$(BUILD) ./bench/run

clean:
	rm -rf build build-asan build-tsan build-fuzz

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
