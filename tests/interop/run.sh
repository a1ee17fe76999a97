#!/usr/bin/env bash
# The interoperability suite (tests/interop): installs the real clients and
# the tracker from Debian's packages, prints their versions, and runs the
# whole matrix. Needs root (or sudo) for apt-get. Any client that cannot be
# installed fails the run, naming the package; nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/../.."

packages=(python3-libtorrent aria2 transmission-cli opentracker mktorrent procps)
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "interop: installing ${missing[*]}"
  $sudo apt-get update -qq
  for package in "${missing[@]}"; do
    if ! DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$package" >/dev/null; then
      echo "interop: cannot install the Debian package $package, which the suite needs" >&2
      exit 1
    fi
  done
fi

echo "interop: client versions"
echo "  libtorrent-rasterbar $(/usr/bin/python3 -c 'import libtorrent; print(libtorrent.__version__)')"
echo "  $(aria2c --version | head -n 1)"
echo "  $(transmission-cli --version 2>&1 | head -n 1)"
echo "  opentracker $(dpkg-query -W -f='${Version}' opentracker)"
echo "  mktorrent $(dpkg-query -W -f='${Version}' mktorrent)"

cargo test --features interop --test interop
