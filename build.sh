#!/usr/bin/env bash
# scorelab build and test entry point.
#
#   ./build.sh setup          install what the build and the tests need (idempotent)
#   ./build.sh build          release wasm into www/pkg, the native CLI into target/release
#   ./build.sh serve [port]   build, then serve www/ on http://127.0.0.1:<port> (default 8000)
#   ./build.sh test           native tests, browser tests (wasm-bindgen-test), page tests (Playwright)
#   ./build.sh docs           refresh docs/: the CLI reference from --help, the README's screenshots
#                             from the last full passing page-test run
#   ./build.sh bench          benchmarks side by side (native, PyTorch, browser, onnxruntime-web) -> docs/bench.md
#
# Each runs setup first when something it needs is missing: build and serve need the wasm
# toolchain only; test and bench also install Chromium, software Vulkan and the npm packages.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$PWD
export PATH="$HOME/.cargo/bin:$PATH"

APT_PACKAGES=(chromium chromium-driver mesa-vulkan-drivers libvulkan1)
BROWSER_ARGS="--enable-unsafe-webgpu --no-sandbox --disable-dev-shm-usage --no-first-run --disable-background-networking --disable-component-update --disable-sync --disable-quic"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# The wasm-bindgen version Cargo.lock pins; the CLI must match it exactly.
bindgen_version() {
    awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock
}

# What is missing for `build` (the wasm toolchain: enough to build and serve the page) or for
# `all` (the tests and benchmarks too: Chromium, software Vulkan, wasm-pack, the npm packages).
missing() {
    local scope=$1 m=()
    rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown || m+=(wasm32-target)
    [[ "$(wasm-bindgen --version 2>/dev/null)" == "wasm-bindgen $(bindgen_version)" ]] || m+=(wasm-bindgen-cli)
    if [[ $scope == all ]]; then
        for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || m+=("apt:$p"); done
        command -v wasm-pack >/dev/null || m+=(wasm-pack)
        [[ -d node_modules/playwright-core && -d node_modules/typescript ]] || m+=(node-packages)
    fi
    echo "${m[@]:-}"
}

setup() {
    local scope=${1:-all}
    command -v cargo >/dev/null || { echo "cargo not found: install Rust with rustup first" >&2; exit 1; }
    local sudo=""
    [[ $(id -u) -eq 0 ]] || sudo=sudo
    local need=()
    if [[ $scope == all ]]; then
        for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
    fi
    if ((${#need[@]})); then
        log "apt: ${need[*]}"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
    fi
    if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
        log "rust target wasm32-unknown-unknown"
        rustup target add wasm32-unknown-unknown
    fi
    local v
    v=$(bindgen_version)
    if [[ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $v" ]]; then
        log "wasm-bindgen-cli $v (a few minutes)"
        cargo install wasm-bindgen-cli --version "$v" --force
    fi
    [[ $scope == all ]] || return 0
    if ! command -v wasm-pack >/dev/null; then
        log "wasm-pack (a few minutes)"
        cargo install wasm-pack --version 0.15.1
    fi
    if [[ ! -d node_modules/playwright-core || ! -d node_modules/typescript ]]; then
        log "node packages"
        npm ci --no-audit --no-fund
    fi
}

ensure_setup() {
    local scope=$1 m
    m=$(missing "$scope")
    if [[ -n "$m" ]]; then
        log "setup needed: $m"
        setup "$scope"
    fi
}

build() {
    log "wasm (release)"
    cargo build --lib --release --target wasm32-unknown-unknown
    wasm-bindgen --target web --out-dir www/pkg target/wasm32-unknown-unknown/release/scorelab.wasm
    # www/pkg is also a package a web page can install: the module, its typings and the wasm.
    local version
    version=$(awk -F'"' '/^version = / { print $2; exit }' Cargo.toml)
    cat > www/pkg/package.json <<JSON
{
  "name": "scorelab",
  "version": "$version",
  "description": "Score-based diffusion models in the browser: WebGPU or wasm SIMD",
  "license": "MIT",
  "type": "module",
  "main": "scorelab.js",
  "types": "scorelab.d.ts",
  "files": ["scorelab.js", "scorelab.d.ts", "scorelab_bg.wasm", "scorelab_bg.wasm.d.ts"],
  "sideEffects": false
}
JSON
    mkdir -p www/models
    cp models/*.safetensors www/models/
    # The page lists the shipped models from this index; each file's SHA-256 keys the browser's
    # model cache, so replaced weights reach returning visitors and a corrupt download is caught.
    # Classifiers (for classifier guidance, *-classifier.safetensors) are listed apart.
    local names=() classifiers=() hashes=() f n
    for f in models/*.safetensors; do
        n=$(basename "$f" .safetensors)
        case "$n" in
            *-classifier) classifiers+=("\"$n\"") ;;
            *) names+=("\"$n\"") ;;
        esac
        hashes+=("\"$n\": \"$(sha256sum "$f" | cut -d' ' -f1)\"")
    done
    (IFS=,; printf '{"models": [%s], "classifiers": [%s], "sha256": {%s}}\n' "${names[*]}" "${classifiers[*]}" "${hashes[*]}") > www/models/index.json
    log "native CLI (release)"
    cargo build --release --bin scorelab
}

serve() {
    local port=${1:-8000}
    ensure_setup build
    build
    log "serving http://127.0.0.1:$port/ (Ctrl-C stops)"
    exec python3 -m http.server "$port" --bind 127.0.0.1 --directory www
}

run_tests() {
    ensure_setup all
    log "native tests (kernels on the software Vulkan adapter, networks, samplers)"
    cargo test --release
    log "crate docs (cargo doc, warnings are errors)"
    RUSTDOCFLAGS="-D warnings" cargo doc --no-deps
    log "loader fuzz slice with overflow checks (debug build)"
    SCORELAB_FUZZ_UNET_EVERY=1000000 cargo test --test fuzz_weights
    log "browser tests (wasm-bindgen-test in headless Chromium, WebGPU)"
    WASM_BINDGEN_TEST_TIMEOUT=${WASM_BINDGEN_TEST_TIMEOUT:-600} wasm-pack test --headless --chrome --release
    build
    log "type check of the embed example against the generated typings (tsc)"
    node_modules/.bin/tsc -p tsconfig.json
    log "page tests (Playwright, headless Chromium)"
    BROWSER_ARGS="$BROWSER_ARGS" node tests/e2e/run.mjs
}

# The README's pictures, from the page tests' screenshots of the same name on the left.
DOC_SHOTS=(first-visit.png:generate-digits.png compare.png:compare.png inpaint.png:inpaint.png
    restore-sdedit.png:restore.png interpolate-examples.png:interpolate.png
    playground-density-0.png:playground.png playground-train.png:playground-train.png)

docs() {
    log "docs/cli.md from the CLI's --help"
    SCORELAB_WRITE_DOCS=1 cargo test --release --test cli_docs
    local shots=tests/e2e/screenshots pair
    if [[ -f $shots/PASSED ]]; then
        log "docs/ screenshots from the page-test run of $(cat "$shots/PASSED")"
        for pair in "${DOC_SHOTS[@]}"; do cp "$shots/${pair%%:*}" "docs/${pair##*:}"; done
    else
        log "screenshots left as they are: no full passing page-test run in $shots (./build.sh test makes one)"
    fi
}

# Benchmarks side by side, written to docs/bench.md: scorelab natively (GPU, CPU reference, fast
# CPU), PyTorch and onnxruntime natively (when $PYTHON imports torch and onnxruntime), and in
# headless Chromium the page's backends and onnxruntime-web on the same network (downloaded here
# from npm, not part of the tests).
bench() {
    ensure_setup all
    build
    local out=docs/bench.md py=${PYTHON:-python3} onnx=target/bench/onnx ortweb=target/bench/ortweb
    {
        echo "# Benchmarks, $(date -u +%Y-%m-%d) ($(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
        echo
        echo '## Native: scorelab'
        echo
        echo '```'
        cargo bench --bench ops 2>/dev/null
        echo '```'
        echo
        # Chromium ships SwiftShader's Vulkan driver, the adapter its WebGPU has without a GPU:
        # natively through it, a digits evaluation's device time by kernel.
        local swiftshader=/usr/lib/chromium/vk_swiftshader_icd.json
        if [[ -f $swiftshader ]]; then
            echo '## Native: SwiftShader, device time by kernel'
            echo
            echo '```'
            VK_ICD_FILENAMES=$swiftshader cargo bench --bench ops -- "kernel times" 2>/dev/null
            echo '```'
            echo
        fi
        if "$py" -c 'import torch, onnxruntime, onnx' 2>/dev/null; then
            mkdir -p "$onnx"
            echo '## Native: PyTorch and onnxruntime'
            echo
            "$py" -m train.bench --onnx "$onnx" 2>/dev/null
            echo
        else
            echo "(PyTorch and onnxruntime skipped: $py cannot import torch, onnxruntime and onnx; set PYTHON)"
            echo
        fi
        if [[ -f "$onnx/digits.onnx" ]]; then
            mkdir -p "$ortweb"
            [[ -f "$ortweb/package.json" ]] || echo "{}" > "$ortweb/package.json"
            (cd "$ortweb" && npm install --no-save --no-audit --no-fund onnxruntime-web@1.30.0 >/dev/null 2>&1)
            export ORT_WEB=$ROOT/$ortweb/node_modules/onnxruntime-web/dist ONNX=$ROOT/$onnx
        fi
        echo '## In the browser'
        echo
        BROWSER_ARGS="$BROWSER_ARGS" node benches/browser.mjs
    } | tee "$out"
    log "wrote $out"
}

cmd=${1:-}
shift || true
case "$cmd" in
    setup) setup all ;;
    build) ensure_setup build; build ;;
    serve) serve "$@" ;;
    test) run_tests ;;
    docs) docs ;;
    bench) bench ;;
    *) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
