#!/usr/bin/env bash
# Install the Debian packages orchestrion uses: FluidSynth + a General MIDI soundfont (audio), abcmidi
# (abc2midi, midi2abc, abc2abc), ffmpeg (compressed audio) and chromium (the browser test).
# As root it installs what is missing with apt-get; otherwise it names what to install and goes on.
set -u
PACKAGES="fluidsynth fluid-soundfont-gm abcmidi ffmpeg chromium"
missing=""
for pkg in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
done
if [ -z "$missing" ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing Debian packages:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || true
  # shellcheck disable=SC2086
  if ! apt-get install -y -qq --no-install-recommends $missing >/dev/null; then
    echo "warning: apt-get could not install:$missing (the features that need them will say so)" >&2
  fi
else
  echo "note: these Debian packages are missing:$missing" >&2
  echo "      install them with: sudo apt-get install$missing" >&2
  echo "      (rendering, ABC compiling and the browser test need them; the rest works without)" >&2
fi
exit 0
