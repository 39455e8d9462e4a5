#!/usr/bin/env bash
# Debian's Chromium and its WebDriver for the viewer's browser test (tests/test_viewer_browser.py), when missing.
# Installs with apt-get (as root, or through sudo); prints what to do where it cannot.
set -euo pipefail
CHROMIUM=${HUMANFEAT_CHROMIUM:-/usr/bin/chromium}
CHROMEDRIVER=${HUMANFEAT_CHROMEDRIVER:-/usr/bin/chromedriver}
if [[ -x "$CHROMIUM" && -x "$CHROMEDRIVER" ]]; then
    echo "browser: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM"), $CHROMEDRIVER"
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "install_browser.sh: no apt-get here; install Chromium and its chromedriver, or point" \
        "\$HUMANFEAT_CHROMIUM and \$HUMANFEAT_CHROMEDRIVER at them" >&2
    exit 1
fi
SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "install_browser.sh: run as root: apt-get install -y chromium chromium-driver" >&2; exit 1; }
    SUDO=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get install -y -q chromium chromium-driver \
    || { "${SUDO[@]}" apt-get update -q && "${SUDO[@]}" apt-get install -y -q chromium chromium-driver; }
echo "browser: $("$CHROMIUM" --version)"
