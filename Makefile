# Plugboard — the two commands that matter are `make demo` and `make test`.
# Both install what they need first (Debian packages, as root) and are safe to re-run.

SWIFT       ?= swift
CONFIG      ?= debug
BUILD_DIR   := .build/$(CONFIG)
PLUGIN_DIR  := build/plugins
APT_PACKAGES := pkg-config g++ libudev-dev libhiredis-dev libffi-dev libssl-dev openssl redis-server redis-tools \
                umockdev libumockdev-dev prometheus lintian python3-redis

SAMPLE_PLUGINS := usb-logger device-counter

.PHONY: all deps build plugins test demo demo-replay bench-udev bench fuzz fuzz-build fuzz-uevent tsan bench-manifests bench-signatures clean

all: build

## deps: install the Debian packages Plugboard needs, only those missing (apt-get update only then).
deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "==> installing:$$missing"; \
	  if [ "$$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "==> system packages present"; fi

## build: the daemon, the CLI and the plugins (SamplePlugins/ copied into build/plugins).
build: deps
	$(SWIFT) build -c $(CONFIG)
	@$(MAKE) --no-print-directory plugins

plugins:
	@# umask 022: the host refuses plugins in group- or world-writable places (plugins.trust).
	@umask 022 && mkdir -p $(PLUGIN_DIR) && chmod go-w $(PLUGIN_DIR)
	@umask 022 && for p in $(SAMPLE_PLUGINS); do cp -f $(BUILD_DIR)/lib$$p.so $(PLUGIN_DIR)/ && chmod go-w $(PLUGIN_DIR)/lib$$p.so; done
	@# Each .so gets its binary manifest next to it (docs/manifest.md); the host skips a .so without one.
	@for p in $(SAMPLE_PLUGINS); do \
	  $(BUILD_DIR)/plugboard pack SamplePlugins/$$p/plugin.toml --library $(PLUGIN_DIR)/lib$$p.so -o $(PLUGIN_DIR)/$$p.pbm || exit 1; \
	done

## test: every test, against real redis-server, real libudev under umockdev, real .so plugins, and
## the Debian package (make deb) run with the toolchain hidden.
test: build deb
	@# umockdev's uevent sender aborts when its datagram queue (default 10) fills: raise it.
	@sysctl -q -w net.unix.max_dgram_qlen=4096 2>/dev/null || echo "warning: could not raise net.unix.max_dgram_qlen (not root?); burst tests may fail"
	@# The umockdev suites run in a process of their own: umockdev's preload is process-wide and,
	@# under the I/O of the other suites, its uevent sender once failed to read a device and
	@# dropped the uevent ("No such device"). The other suites need no preload.
	@# Worker processes run as root here: the fixtures write into root-only temporary
	@# directories. IsolationTests sets plugins.worker_user itself to check the drop to nobody.
	@# umask 022: the host refuses plugins in group- or world-writable places (plugins.trust), and
	@# the fixtures' directories take their mode from the umask.
	umask 022 && PLUGBOARD_PLUGINS_WORKER_USER=root umockdev-wrapper $(SWIFT) test --filter PlugboardUdevTests
	umask 022 && PLUGBOARD_PLUGINS_WORKER_USER=root $(SWIFT) test --skip PlugboardUdevTests

## demo: a scripted hotplug session (hub, keyboard, flash drive, unplug/replug, a burst) played
## through a umockdev testbed into the real `plugboard run --source udev` with the sample plugins.
## Needs no USB hardware; the bed stops plugboard with SIGTERM at the end (summary printed).
## The events are published to a local redis-server (free loopback port) and shown arriving through
## `plugboard tail` at the end.
demo: build
	@sysctl -q -w net.unix.max_dgram_qlen=4096 2>/dev/null || echo "warning: could not raise net.unix.max_dgram_qlen (not root?); the burst may abort umockdev"
	umask 022 && scripts/demo-redis.sh $(BUILD_DIR) $(PLUGIN_DIR) udev

## demo-replay: the same plugins on the bundled recorded session (no umockdev needed).
demo-replay: build
	$(BUILD_DIR)/plugboard run --plugins $(PLUGIN_DIR) --source replay:demo/session.jsonl

## The CPU the pinned udev latency run uses (the last one, when CPUs are numbered from 0).
BENCH_CPU ?= $(shell nproc --ignore=1)

## bench-udev: udev latency figures (docs/benchmarks.md, "## udev"): release build, real plugboard
## under umockdev, a probe plugin noting callback-entry times.
bench-udev: deps
	$(SWIFT) build -c release
	@mkdir -p build/bench-plugins && cp -f .build/release/libpbtest-latency-probe.so build/bench-plugins/
	@sysctl -q -w net.unix.max_dgram_qlen=4096 2>/dev/null || true
	@echo "==> not pinned (default: the kernel places the source and the workers)"
	umockdev-wrapper .build/release/plugboard-demo-bed --measure 5000 --gap-us 2000 --plugboard .build/release/plugboard \
	  --plugins build/bench-plugins --latency-output build/latency-probe.txt
	@echo "==> pinned: performance.cpu_affinity = \"$(BENCH_CPU)\" (the source and the workers share one CPU)"
	umockdev-wrapper .build/release/plugboard-demo-bed --measure 5000 --gap-us 2000 --plugboard .build/release/plugboard \
	  --plugins build/bench-plugins --latency-output build/latency-probe.txt -- --cpu-affinity $(BENCH_CPU)
	@echo "==> process mode: the probe in a worker process (plugins.isolation = \"process\"), not pinned"
	umockdev-wrapper .build/release/plugboard-demo-bed --measure 5000 --gap-us 2000 --plugboard .build/release/plugboard \
	  --plugins build/bench-plugins --latency-output build/latency-probe.txt -- --set plugins.isolation=process --set plugins.worker_user=root

## bench-deps: what the benchmarks need beyond `deps` (the pyudev + redis-py baseline script).
BENCH_APT_PACKAGES := python3-pyudev python3-redis
.PHONY: bench-deps bench-udev-burst bench-udev-cpu
bench-deps: deps
	@$(MAKE) --no-print-directory deps APT_PACKAGES="$(BENCH_APT_PACKAGES)"

## bench-udev-burst: 20,000 add/remove uevents back to back from umockdev into a drain-only listener
## (the emitter alone), the release `plugboard run --source udev --redis` with the sample plugins
## (process and thread isolation) and a pyudev + redis-py script, same run, interleaved, medians of 3:
## events/s received, ratio to the emitter alone, overflows (docs/benchmarks.md, "udev intake").
bench-udev-burst: bench-deps
	Benchmarks/scripts/udev-burst.sh burst
## bench-udev-cpu: the same listeners on a paced burst (one uevent every 100 µs): CPU time per event of
## each listener's whole process tree, and the ratio to the script.
bench-udev-cpu: bench-deps
	Benchmarks/scripts/udev-burst.sh cpu

## bench: benchmarks (nested package in Benchmarks/), printed as tables with same-run baselines.
bench: build
	cd Benchmarks && $(SWIFT) package --allow-writing-to-package-directory benchmark --no-progress --format markdown
	@rm -rf build/bench && mkdir -p build/bench
	cd Benchmarks && $(SWIFT) package --allow-writing-to-package-directory benchmark --no-progress \
	  --target PluginLoadBenchmarks --format histogramPercentiles --path ../build/bench >/dev/null
	@echo "Plugin load against raw dlopen of the same .so (same run):"
	@Benchmarks/scripts/load-ratios.sh build/bench

## tsan: the ring's concurrency tests under ThreadSanitizer (separate build in .build-tsan).
## Only the lap-free tests: a reader lapped mid-read races with the producer by design (see docs/architecture.md).
tsan: deps
	$(SWIFT) test --scratch-path .build-tsan --sanitize=thread \
	  --filter 'millionEventsInOrder|flowControlWaits|stalledConsumerIsLapped|lappedDuringBatch'

## fuzz: libFuzzer on the .pbm reader (PlugboardManifestFuzz), FUZZ_RUNS executions (default 1,000,000).
## Built in its own build directory with --sanitize=fuzzer; -DPLUGBOARD_FUZZ drops the replay main so
## libFuzzer's main links. New inputs go to $(FUZZ_BUILD)/corpus; crashes to $(FUZZ_BUILD)/crash-*.
FUZZ_BUILD ?= .build-fuzz
FUZZ_RUNS  ?= 1000000
FUZZ_SEEDS := Tests/PlugboardManifestTests/FuzzCorpus
fuzz-build:
	$(SWIFT) build --build-path $(FUZZ_BUILD) --sanitize=fuzzer -Xswiftc -DPLUGBOARD_FUZZ --product plugboard-manifest-fuzz

## `make test` builds the libFuzzer binary too, so PBMFuzzTests' bounded libFuzzer pass (-runs=20000) runs.
test: fuzz-build

fuzz: fuzz-build
	@mkdir -p $(FUZZ_BUILD)/corpus
	@cd $(FUZZ_BUILD) && ./debug/plugboard-manifest-fuzz -runs=$(FUZZ_RUNS) -max_len=4096 -print_final_stats=1 \
	    corpus ../$(FUZZ_SEEDS) > fuzz.log 2>&1; rc=$$?; tail -n 25 fuzz.log; \
	  runs=$$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' fuzz.log); \
	  echo "fuzz: $${runs:-0} executions of LLVMFuzzerTestOneInput (exit $$rc)"; exit $$rc

## fuzz-uevent: libFuzzer with AddressSanitizer and UBSan on the udev source's uevent parser
## (Sources/CPlugboardSupport/uevent.c, harness Tests/Fuzz/uevent_fuzz.c), FUZZ_SECONDS seconds,
## built with the toolchain's clang. Crashes go to $(FUZZ_BUILD)/uevent/crash-*.
FUZZ_SECONDS ?= 120
CLANG ?= $(dir $(shell command -v $(SWIFT)))clang
.PHONY: fuzz-uevent
fuzz-uevent:
	@mkdir -p $(FUZZ_BUILD)/uevent/corpus
	$(CLANG) -g -O1 -fuse-ld=lld -fsanitize=fuzzer,address,undefined -I Sources/CPlugboardSupport/include \
	  Tests/Fuzz/uevent_fuzz.c Sources/CPlugboardSupport/uevent.c -o $(FUZZ_BUILD)/uevent/uevent-fuzz
	cd $(FUZZ_BUILD)/uevent && ./uevent-fuzz -max_total_time=$(FUZZ_SECONDS) -max_len=9000 -print_final_stats=1 \
	  corpus ../../Tests/Fuzz/uevent-seeds

## bench-manifests: figures for docs/benchmarks.md `## Manifests` (release build of a small tool).
bench-manifests:
	$(SWIFT) build -c release --product plugboard-bench-manifests
	$(SWIFT) build -c release --product usb-logger
	.build/release/plugboard-bench-manifests --so .build/release/libusb-logger.so

## bench-signatures: start-up with signature checks on against off, 100 plugins, warm registry cache,
## same run (docs/benchmarks.md, "Start-up with signatures"). Release build.
bench-signatures:
	$(SWIFT) build -c release --product plugboard-bench-manifests
	$(SWIFT) build -c release --product plugboard
	$(SWIFT) build -c release --product plugboard-worker
	umask 022 && .build/release/plugboard-bench-manifests --signatures

## bench-startup: the whole process start -> exit with 100 plugins, warm registry (thread, process,
## process without the fork server), against a C program dlopen-ing the same files, same run.
.PHONY: bench-startup
bench-startup:
	$(SWIFT) build -c release --product plugboard-bench-manifests
	$(SWIFT) build -c release --product plugboard
	$(SWIFT) build -c release --product plugboard-worker
	umask 022 && .build/release/plugboard-bench-manifests --startup

clean:
	rm -rf .build build Benchmarks/.build .build-fuzz

## demo-redis: the demo session published to a local redis-server (free loopback port) and shown
## arriving through `plugboard tail`. `make demo` can run it as its last step.
.PHONY: demo-redis bench-redis
demo-redis: build
	scripts/demo-redis.sh $(BUILD_DIR) $(PLUGIN_DIR)

## bench-redis: publish rate vs redis-benchmark -P 64 and latency at 10,000 events/s (release build);
## then rediss:// (the TLS bridge) against redis:// in the same run (TLS=0 skips it).
bench-redis: deps
	Benchmarks/scripts/redis.sh
## bench-redis-state: publish rate with the window and spill in files (state.dir) against in memory, same run.
.PHONY: bench-redis-state
bench-redis-state: deps
	Benchmarks/scripts/redis-state.sh
## bench-redis-plugins: the whole daemon (plugboard run --source synthetic:500000 --redis) with no plugins,
## the sample plugins in process and in thread mode, against redis-benchmark -P 64 XADD, same run (issue 16).
.PHONY: bench-redis-plugins
bench-redis-plugins: deps
	Benchmarks/scripts/redis-plugins.sh
## bench-isolation: process mode against thread mode, same run (docs/benchmarks.md, "## Isolation").
.PHONY: bench-isolation
bench-isolation: deps
	$(SWIFT) build -c release --product plugboard-worker
	$(SWIFT) build -c release --product plugboard-bench-isolation
	.build/release/plugboard-bench-isolation --runs 5 --events 500000 --plugins 16 --gap-us 200
## bench-scaling: time per event per plugin with 1, 4, 16 and 64 plugins, thread and process mode,
## against the 1-plugin figure of the same run, in the runtime and through the whole `plugboard run`
## (docs/benchmarks.md, "Cost per plugin from 1 to 64").
.PHONY: bench-scaling
bench-scaling: deps
	$(SWIFT) build -c release --product plugboard-worker
	$(SWIFT) build -c release --product plugboard-bench-isolation
	.build/release/plugboard-bench-isolation --only scaling --runs 3 --events 200000 --batch 20
	$(SWIFT) build -c release --product plugboard
	$(SWIFT) build -c release --product plugboard-bench-manifests
	umask 022 && .build/release/plugboard-bench-manifests --scaling
## bench-settle: the settle window's cost per event, and a plugin without one beside it, against a
## plugin without one in the same run (docs/benchmarks.md, "## Settle window").
.PHONY: bench-settle
bench-settle: deps
	$(SWIFT) build -c release --product plugboard-bench-settle
	.build/release/plugboard-bench-settle --runs 7 --events 1000000

## bench-batching: adaptive batching (a batch is what is waiting, up to the ceiling) against fixed
## sizes, thread and process workers, same run: idle latency and burst throughput
## (docs/benchmarks.md, "## Batching").
.PHONY: bench-batching
bench-batching: deps
	$(SWIFT) build -c release --product plugboard-worker
	$(SWIFT) build -c release --product plugboard-bench-batching
	umask 022 && .build/release/plugboard-bench-batching --runs 5 --events 500000 --idle 1000

## bench-fleet: a fleet of `plugboard run` hosts on a Redis Cluster of 3 masters + 3 replicas, read by
## 3 `plugboard tail` consumers in one group; a master and a consumer killed mid-run (release build;
## docs/benchmarks.md, "## Fleet"). FleetBedTests runs the same bed at 10 x 10,000 in `make test`.
FLEET_HOSTS  ?= 20
FLEET_EVENTS ?= 50000
.PHONY: bench-fleet
bench-fleet: deps
	$(SWIFT) build -c release --product plugboard
	$(SWIFT) build -c release --product plugboard-fleet-bed
	umask 022 && .build/release/plugboard-fleet-bed --plugboard .build/release/plugboard --hosts $(FLEET_HOSTS) --events $(FLEET_EVENTS) --timeout 900

## release: plugboard and plugboard-worker with the Swift runtime linked statically (they run on
## a Debian 12 machine without the toolchain), in .build-static/release.
STATIC_BUILD := .build-static/release
.PHONY: release man install deb
release: deps
	$(SWIFT) build -c release --static-swift-stdlib --scratch-path .build-static --product plugboard
	$(SWIFT) build -c release --static-swift-stdlib --scratch-path .build-static --product plugboard-worker

## man: man pages from the CLI's own help (swift-argument-parser's generate-manual plugin).
man: deps
	$(SWIFT) package plugin generate-manual --multi-page --configuration debug --date 2026-12-06 --authors "Plugboard maintainers"

## install: PREFIX (default /usr/local) under DESTDIR: the binaries, the SDK header and plugboard.pc,
## the templates, the unit, /etc/plugboard/plugboard.toml, completions, man pages, docs, monitoring.
PREFIX ?= /usr/local
install: release build man
	scripts/install.sh $(STATIC_BUILD) $(PREFIX) "$(DESTDIR)"

## deb: build/plugboard_VERSION_ARCH.deb (dpkg-deb), installed layout under /usr.
deb: release build man
	umask 022 && scripts/make-deb.sh $(STATIC_BUILD)

## bench-ops: operations figures (shutdown time with 10 plugins and a full ring, RSS over plugin
## load/unload cycles, hot reload of a renamed build), each against a same-run baseline; tables for docs/benchmarks.md.
.PHONY: bench-ops
bench-ops: deps
	$(SWIFT) build -c release --product plugboard
	$(SWIFT) build -c release --product plugboard-bench-ops
	$(SWIFT) build -c release --product plugboard-worker
	.build/release/plugboard-bench-ops --runs 40 --cycles 1000 --reloads 20
