#!/usr/bin/env bash
# Builds the flashable Cairn image: image-build/build.sh --arch arm64|amd64 --out FILE
#
# FILE is the compressed raw image (zstd); FILE.sha256 its checksum; FILE.log the build log.
# Inputs: appliance-os/ (release, packages, users, partitions, unit states, per-arch settings),
# rootfs-overlay/, systemd/, and the app built from this repository. Needs root on Debian
# bookworm (mmdebstrap in root mode; qemu-user-static + binfmt_misc for arm64). No loop
# devices: filesystems are made from directories (mkfs.ext4 -d, mkfs.vfat + mcopy) and laid
# into the partitioned image with dd.
#
# Options:
#   --arch arm64|amd64   target architecture (required)
#   --out FILE           compressed image to write (required), e.g. /tmp/cairn-amd64.img.zst
#   --raw FILE           also keep the uncompressed raw image there
#   --work DIR           scratch directory (default: a fresh dir under /tmp, removed at the end)
#   --cache DIR          download/build cache (default /tmp/cairn-image-cache)
#   --no-app-build       use the repository's existing dist/ instead of running `npm run build`
#   --addons-qemu        arm64 on amd64: compile native addons under qemu-user (~40 min) instead
#                        of with the aarch64 cross compiler
#   --no-addon-cache     neither use nor fill the native-addon cache ($CACHE/addons)
set -euo pipefail
# The whole script is one function, parsed before it runs: editing build.sh during a build
# cannot change the running build.
main() {

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OSDEF=$REPO/appliance-os
ARCH='' OUT='' RAW='' WORK='' CACHE=/tmp/cairn-image-cache APP_BUILD=1 KEEP_WORK=0 ADDONS_QEMU=0 ADDON_CACHE_USE=1

usage() { sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) ARCH=${2:-}; shift 2 ;;
    --out) OUT=${2:-}; shift 2 ;;
    --raw) RAW=${2:-}; shift 2 ;;
    --work) WORK=${2:-}; KEEP_WORK=1; shift 2 ;;
    --cache) CACHE=${2:-}; shift 2 ;;
    --no-app-build) APP_BUILD=0; shift ;;
    --addons-qemu) ADDONS_QEMU=1; shift ;;
    --no-addon-cache) ADDON_CACHE_USE=0; shift ;;
    -h|--help) usage ;;
    *) echo "build.sh: unknown argument $1" >&2; usage ;;
  esac
done
case "$ARCH" in arm64|amd64) ;; *) echo "build.sh: --arch must be arm64 or amd64" >&2; exit 2 ;; esac
[ -n "$OUT" ] || { echo "build.sh: --out FILE is required" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "build.sh: run as root (mmdebstrap root mode, file ownership in the image)" >&2; exit 2; }
OUT=$(realpath -m "$OUT")
mkdir -p "$(dirname "$OUT")" "$CACHE"
if [ -z "$WORK" ]; then WORK=$(mktemp -d /tmp/cairn-image-work.XXXXXX); fi
mkdir -p "$WORK"
LOG=$OUT.log
: > "$LOG"
# The log file is the build's own stdout and stderr; `tail` mirrors it to the caller. A caller
# that stops reading (a closed pipe, a killed terminal or test runner) kills only the mirror:
# the build itself never writes to a pipe, so it cannot die of SIGPIPE half way (as it did
# through `exec > >(tee ...)`, in mmdebstrap's rootfs stage).
exec 3>&1 >>"$LOG" 2>&1
tail -n +1 --pid=$$ -f "$LOG" >&3 2>/dev/null &
exec 3>&-

# ---- the OS definition, read as data ------------------------------------------------------
conf() { # conf FILE KEY -> value of KEY=value (first match), '' if absent
  sed -n "s/^$2=//p" "$1" | head -1
}
list() { # list FILE... -> entries, comments and blanks dropped
  sed -e 's/#.*//' -e 's/[[:space:]]*$//' "$@" | grep -v '^$' || true
}
RELEASE=$(conf "$OSDEF/os.conf" release)
MIRROR=$(conf "$OSDEF/os.conf" mirror)
SECMIRROR=$(conf "$OSDEF/os.conf" security_mirror)
COMPONENTS=$(conf "$OSDEF/os.conf" components)
VARIANT=$(conf "$OSDEF/os.conf" variant)
NODE_VERSION=$(conf "$OSDEF/os.conf" node_version)
NODE_DIR=$(conf "$OSDEF/os.conf" node_dir)
APP_DIR=$(conf "$OSDEF/os.conf" app_dir)
ARCHCONF=$OSDEF/arch/$ARCH.conf
NODE_PKG=$(conf "$ARCHCONF" node_package)
HW_PROFILE=$(conf "$ARCHCONF" hw_profile)
BOOT=$(conf "$ARCHCONF" boot)
CMDLINE=$(conf "$ARCHCONF" cmdline)
NPM_CPU=$([ "$ARCH" = arm64 ] && echo arm64 || echo x64)
QEMU_ARCH=$([ "$ARCH" = arm64 ] && echo aarch64 || echo x86_64)
PACKAGES=$(list "$OSDEF/packages.list" "$OSDEF/packages-$ARCH.list" | paste -sd, -)
BUILD_PACKAGES=$(list "$OSDEF/build-packages.list" | paste -sd, -)

# ---- stage logging --------------------------------------------------------------------------
BUILD_T0=$(date +%s.%N)
STAGE='' STAGE_T0=''
declare -a SUMMARY=()
stage() {
  end_stage
  STAGE=$1 STAGE_T0=$(date +%s.%N)
  echo "==> [$ARCH] stage $STAGE"
}
end_stage() {
  if [ -n "$STAGE" ]; then
    local d; d=$(echo "$(date +%s.%N) - $STAGE_T0" | bc)
    printf '<== [%s] stage %s done in %.1f s\n' "$ARCH" "$STAGE" "$d"
    SUMMARY+=("$(printf '%-12s %7.1f s' "$STAGE" "$d")")
    STAGE=''
  fi
}
cleanup() {
  local rc=$?
  for m in "$WORK"/builder/{proc,sys,dev/pts,dev} "$WORK"/rootfs/{proc,sys,dev/pts,dev}; do
    mountpoint -q "$m" 2>/dev/null && umount -l "$m" || true
  done
  if [ $rc -ne 0 ]; then echo "!!! [$ARCH] build failed in stage ${STAGE:-?} (exit $rc); log: $LOG"; fi
  # Never delete through a mount that is still there (a chroot's /dev is the host's).
  if grep -q " $WORK/" /proc/mounts; then
    echo "!!! [$ARCH] still mounted under $WORK; left in place"
  elif [ "$KEEP_WORK" = 0 ] && [ $rc -eq 0 ]; then
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
# A signal ends the build as a failure (the EXIT trap alone saw status 0 after a SIGTERM).
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

chroot_mounts() { # bind the API filesystems a chroot build needs
  local r=$1
  mount -t proc proc "$r/proc"
  mount -t sysfs sysfs "$r/sys"
  mount --bind /dev "$r/dev"
  mount --bind /dev/pts "$r/dev/pts"
}
chroot_umounts() {
  local r=$1
  for m in dev/pts dev sys proc; do umount -l "$r/$m" 2>/dev/null || true; done
}

echo "Cairn image build: arch=$ARCH release=$RELEASE node=$NODE_VERSION out=$OUT work=$WORK"

# ---- 1. host tools ------------------------------------------------------------------------------
stage host-tools
need=()
for t in mmdebstrap:mmdebstrap mkfs.vfat:dosfstools mcopy:mtools sfdisk:fdisk zstd:zstd bc:bc mkfs.ext4:e2fsprogs arch-test:arch-test; do
  command -v "${t%%:*}" >/dev/null || need+=("${t#*:}")
done
if [ "$ARCH" = arm64 ] && [ "$(uname -m)" != aarch64 ]; then
  command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
  command -v update-binfmts >/dev/null || need+=(binfmt-support)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "installing host tools: ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
fi
if [ "$ARCH" = arm64 ] && [ "$(uname -m)" != aarch64 ]; then
  mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64 || true
  arch-test arm64 >/dev/null || { echo "arm64 binaries do not run here (binfmt_misc + qemu-aarch64-static needed)"; exit 1; }
fi

# ---- 2. node for the target ----------------------------------------------------------------------
stage node
NODE_TGZ=$CACHE/node/$NODE_PKG-$NODE_VERSION.tgz
if [ ! -s "$NODE_TGZ" ]; then
  mkdir -p "$CACHE/node"
  (cd "$CACHE/node" && npm pack --silent "$NODE_PKG@$NODE_VERSION" >/dev/null)
fi
rm -rf "$WORK/node" && mkdir -p "$WORK/node"
tar -xzf "$NODE_TGZ" -C "$WORK/node" --strip-components=1 package/bin/node package/include package/LICENSE
echo "node: $(file -b "$WORK/node/bin/node" | cut -d, -f1-2)"

# ---- 3. the app: build, production dependencies for the target --------------------------------
stage app
if [ "$APP_BUILD" = 1 ]; then
  (cd "$REPO" && npm run build --silent)
fi
[ -f "$REPO/dist/src/appliance/main.js" ] || { echo "no dist/ in $REPO: run npm run build"; exit 1; }
rm -rf "$WORK/app" && mkdir -p "$WORK/app/dist"
cp "$REPO/package.json" "$REPO/package-lock.json" "$WORK/app/"
cp -a "$REPO/dist/src" "$WORK/app/dist/"
find "$WORK/app/dist" -name '*.map' -delete
mkdir -p "$WORK/app/docs" && cp "$REPO/docs/appliance-os.md" "$WORK/app/docs/"
# Dependencies resolved for the target platform (optional per-platform packages such as
# lz4-napi's), without running install scripts: native addons are built in the target chroot.
(cd "$WORK/app" && npm ci --silent --omit=dev --ignore-scripts --no-audit --no-fund --os=linux --cpu="$NPM_CPU" --libc=glibc)

# How native addons (better-sqlite3, rpio, zstd-napi; sodium-native, lz4-napi and @napi-rs/blake-hash come prebuilt) are built:
#   native  target = host architecture: in a builder chroot of that architecture.
#   cross   arm64 on an amd64 host (default there): in an amd64 builder chroot with Debian's
#           aarch64 cross compiler (gcc 12 against bookworm's arm64 glibc, the image's own),
#           node-gyp --arch=arm64 against the target node's headers; node-gyp and the build's
#           helper scripts run on the host's node. About 2 min instead of ~40 under qemu-user.
#   qemu    (--addons-qemu) in an arm64 builder chroot under qemu-user.
# The result (node_modules, trimmed) is cached under $CACHE/addons, keyed by the package-lock,
# node version, arch, mode and this recipe's version: a rebuild with the same lock skips both
# stages. Either way, every .node file's architecture is checked here, and the addons are
# loaded by the target's node inside the finished root filesystem (customize stage).
HOST_ARCH=$(dpkg --print-architecture)
if [ "$ARCH" = "$HOST_ARCH" ]; then ADDONS=native
elif [ "$ARCH" = arm64 ] && [ "$HOST_ARCH" = amd64 ] && [ "$ADDONS_QEMU" = 0 ]; then ADDONS=cross
else ADDONS=qemu; fi
ADDON_RECIPE=2
ADDON_KEY=$( { cat "$WORK/app/package-lock.json"; echo "node=$NODE_VERSION arch=$ARCH mode=$ADDONS release=$RELEASE recipe=$ADDON_RECIPE"; } | sha256sum | cut -c1-16)
ADDON_CACHE=$CACHE/addons/$ARCH-$ADDONS-$ADDON_KEY.tar
echo "addons: mode $ADDONS, cache key $ADDON_KEY"
if [ "$ADDON_CACHE_USE" = 1 ] && [ -s "$ADDON_CACHE" ]; then
  stage addons
  echo "addons: reusing $ADDON_CACHE (same package-lock.json, node $NODE_VERSION, $ARCH, $ADDONS)"
  rm -rf "$WORK/app/node_modules" && tar -xf "$ADDON_CACHE" -C "$WORK/app"
else
  stage builder
  # A throwaway Debian chroot with a compiler, cached per architecture and package set.
  BARCH=$ARCH BPKGS=$BUILD_PACKAGES
  if [ "$ADDONS" = cross ]; then BARCH=$HOST_ARCH BPKGS="$BPKGS,g++-aarch64-linux-gnu"; fi
  BUILDER_CACHE=$CACHE/builder-$RELEASE-$BARCH-$(echo "$BPKGS" | sha256sum | cut -c1-8)
  if [ ! -x "$BUILDER_CACHE/usr/bin/g++" ]; then
    rm -rf "$BUILDER_CACHE.tmp"
    mmdebstrap --mode=root --format=directory --arch="$BARCH" --variant=apt --include="$BPKGS" \
      "$RELEASE" "$BUILDER_CACHE.tmp" "deb $MIRROR $RELEASE main"
    rm -rf "$BUILDER_CACHE" && mv "$BUILDER_CACHE.tmp" "$BUILDER_CACHE"
  fi
  rm -rf "$WORK/builder" && cp -a "$BUILDER_CACHE" "$WORK/builder"

  stage addons
  B=$WORK/builder
  mkdir -p "$B/opt/cairn" "$B/build"
  # /opt/cairn/node: the target's node (its headers are what the addons compile against).
  cp -a "$WORK/node" "$B/opt/cairn/node"
  RUN_NODE=/opt/cairn/node
  CROSS_ENV=()
  if [ "$ADDONS" = cross ]; then
    # The host's node runs npm, node-gyp and the packages' gyp helpers (`node -e`, copy.js).
    HOST_NODE_PKG=node-linux-$([ "$HOST_ARCH" = amd64 ] && echo x64 || echo "$HOST_ARCH")
    HOST_NODE_TGZ=$CACHE/node/$HOST_NODE_PKG-$NODE_VERSION.tgz
    [ -s "$HOST_NODE_TGZ" ] || (cd "$CACHE/node" && npm pack --silent "$HOST_NODE_PKG@$NODE_VERSION" >/dev/null)
    mkdir -p "$B/opt/host-node"
    tar -xzf "$HOST_NODE_TGZ" -C "$B/opt/host-node" --strip-components=1 package/bin/node
    RUN_NODE=/opt/host-node
    CROSS_ENV=(npm_config_arch=arm64 npm_config_target_arch=arm64
      CC=aarch64-linux-gnu-gcc CXX=aarch64-linux-gnu-g++ LINK=aarch64-linux-gnu-g++ AR=aarch64-linux-gnu-ar
      CC_host=gcc CXX_host=g++ LINK_host=g++ AR_host=ar)
  fi
  # npm (and its node-gyp) is plain JavaScript: the host's copy runs on either node.
  rm -rf "$B/opt/npm" && cp -a "$(realpath "$(dirname "$(readlink -f "$(command -v npm)")")/..")" "$B/opt/npm"
  cp -a "$WORK/app" "$B/build/app"
  chroot_mounts "$B"
  # Offline on purpose: --build-from-source keeps prebuild-install from trying to download.
  # The whole npm output goes to the log (it used to be cut to its last lines).
  chroot "$B" /usr/bin/env -i PATH=$RUN_NODE/bin:/usr/bin:/bin HOME=/root JOBS=max \
    npm_config_nodedir=/opt/cairn/node npm_config_build_from_source=true npm_config_offline=true \
    "${CROSS_ENV[@]}" \
    sh -c 'cd /build/app && node /opt/npm/bin/npm-cli.js rebuild --foreground-scripts'
  chroot_umounts "$B"
  rm -rf "$WORK/app" && mv "$B/build/app" "$WORK/app"
  # What a running box does not need from the addon builds.
  rm -rf "$WORK/app/node_modules/better-sqlite3/deps" "$WORK/app/node_modules/better-sqlite3/src" \
    "$WORK/app/node_modules/better-sqlite3/build/Release/obj" "$WORK/app/node_modules/better-sqlite3/build/Release/obj.target" \
    "$WORK/app/node_modules/better-sqlite3/build/Release/.deps" "$WORK/app/node_modules/better-sqlite3/build/Release/test_extension.node" \
    "$WORK/app/node_modules/better-sqlite3/build/deps" "$WORK/app/node_modules/rpio/build/Release/obj.target" \
    "$WORK/app/node_modules/rpio/build/Release/.deps" "$WORK/app/node_modules/zstd-napi/deps" \
    "$WORK/app/node_modules/zstd-napi/build/Release/obj.target" "$WORK/app/node_modules/zstd-napi/build/Release/.deps"
  find "$WORK/app/node_modules/sodium-native/prebuilds" -mindepth 1 -maxdepth 1 ! -name "linux-$NPM_CPU" -exec rm -rf {} +
  rm -rf "$WORK/builder"
  if [ "$ADDON_CACHE_USE" = 1 ]; then
    mkdir -p "$CACHE/addons"
    tar -cf "$ADDON_CACHE.tmp" -C "$WORK/app" node_modules && mv -f "$ADDON_CACHE.tmp" "$ADDON_CACHE"
    echo "addons: cached as $ADDON_CACHE"
  fi
fi
# Every native addon must be a binary for the target (a host binary that slipped through
# would only fail on the box, at the first require).
WANT_ELF=$([ "$ARCH" = arm64 ] && echo 'ARM aarch64' || echo 'x86-64')
bad=0 n=0
while IFS= read -r -d '' f; do
  n=$((n + 1))
  desc=$(file -b "$f")
  echo "  addon ${f#"$WORK/app/node_modules/"}: ${desc%%, BuildID*}"
  case "$desc" in *"ELF 64-bit LSB"*"$WANT_ELF"*) ;; *) bad=1 ;; esac
done < <(find "$WORK/app/node_modules" -name '*.node' -type f -print0)
[ "$n" -ge 4 ] || { echo "expected at least 4 native addons, found $n"; exit 1; }
[ "$bad" = 0 ] || { echo "a native addon is not an $WANT_ELF binary"; exit 1; }

# ---- 4. the root filesystem --------------------------------------------------------------------------
stage rootfs
R=$WORK/rootfs
rm -rf "$R" && mkdir -p "$R" "$CACHE/apt-$ARCH"
# /etc/default/raspi-firmware is a conffile of raspi-firmware: it is written in the customize
# stage, not before the package is installed (a file already there makes dpkg prompt, and fail
# without a terminal, "end of file on stdin at conffile prompt").
# The initramfs is made once, in the customize stage, once fstab and mdadm.conf are in place.
# While packages install, update-initramfs is diverted to a no-op: the kernel, mdadm,
# busybox and initramfs-tools each ask for one (each run took minutes under qemu-user).
cat > "$WORK/defer-initramfs" <<'HOOK'
#!/bin/sh
set -e
chroot "$1" dpkg-divert --quiet --local --rename --divert /usr/sbin/update-initramfs.cairn-deferred --add /usr/sbin/update-initramfs
printf '#!/bin/sh\n# Cairn image build: the initramfs is made once, in the customize stage.\nexit 0\n' > "$1/usr/sbin/update-initramfs"
chmod 0755 "$1/usr/sbin/update-initramfs"
HOOK
chmod 0755 "$WORK/defer-initramfs"
mmdebstrap --mode=root --format=directory --arch="$ARCH" --variant="$VARIANT" \
  --components="$(echo "$COMPONENTS" | tr ' ' ',')" \
  --include="$PACKAGES" \
  --aptopt='APT::Install-Recommends "false"' \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
  --skip=essential/unlink \
  --essential-hook="$WORK/defer-initramfs" \
  --setup-hook="mkdir -p \"\$1\"/var/cache/apt/archives/ && cp -a $CACHE/apt-$ARCH/. \"\$1\"/var/cache/apt/archives/ 2>/dev/null || true" \
  --customize-hook="cp -a \"\$1\"/var/cache/apt/archives/*.deb $CACHE/apt-$ARCH/ 2>/dev/null || true" \
  "$RELEASE" "$R" \
  "deb $MIRROR $RELEASE $COMPONENTS" \
  "deb $MIRROR $RELEASE-updates $COMPONENTS" \
  "deb $SECMIRROR $RELEASE-security $COMPONENTS"

stage customize
# Overlay, verbatim; root owns it. The hardware profile is per architecture.
cp -a --no-preserve=ownership "$REPO/rootfs-overlay/." "$R/"
sed -i "s/^CAIRN_HW_PROFILE=.*/CAIRN_HW_PROFILE=$HW_PROFILE/" "$R/etc/cairn/cairnd.conf"
# Cairn's units.
for u in "$REPO"/systemd/*; do
  case "$(basename "$u")" in
    cairn-agent*) continue ;; # the agent's unit is for PCs, not the box
  esac
  install -m 0644 "$u" "$R/usr/lib/systemd/system/"
done
# Users (systemd-sysusers format), also shipped so a re-run on the box recreates them.
install -D -m 0644 "$OSDEF/users.conf" "$R/usr/lib/sysusers.d/cairn.conf"
systemd-sysusers --root="$R" "$OSDEF/users.conf"
chroot "$R" passwd -q -l root
# Node and the app.
mkdir -p "$R$NODE_DIR" "$R$APP_DIR"
install -D -m 0755 "$WORK/node/bin/node" "$R$NODE_DIR/bin/node"
install -m 0644 "$WORK/node/LICENSE" "$R$NODE_DIR/LICENSE"
cp -a "$WORK/app/." "$R$APP_DIR/"
chown -R root:root "$R/opt/cairn"
chmod -R go-w "$R/opt/cairn"
# Mount points on the read-only root.
mkdir -p "$R/srv/cairn/data" "$R/boot/firmware"
# Unit states.
while read -r verb unit; do
  case "$verb" in
    enable|disable|mask) systemctl --root="$R" --quiet "$verb" "$unit" ;;
    *) echo "units.conf: unknown verb $verb"; exit 1 ;;
  esac
done < <(list "$OSDEF/units.conf")
# No identity in the image: machine id made at first boot, SSH host keys only if SSH is on.
printf 'uninitialized\n' > "$R/etc/machine-id"
rm -f "$R/var/lib/dbus/machine-id" "$R"/etc/ssh/ssh_host_*
ln -sf ../run/systemd/resolve/stub-resolv.conf "$R/etc/resolv.conf"
ln -sf /usr/share/zoneinfo/Etc/UTC "$R/etc/localtime"
echo "Etc/UTC" > "$R/etc/timezone"
# The initramfs (the only one: it was deferred while packages installed), now that fstab,
# mdadm.conf and (arm64) raspi-firmware's settings are in place.
if [ "$BOOT" = raspi-firmware ]; then
  printf 'ROOTPART=LABEL=cairn-root\nCONSOLES="tty1"\n' > "$R/etc/default/raspi-firmware"
  echo "$CMDLINE" | sed -e 's/root=[^ ]*//' -e 's/console=[^ ]*//g' -e 's/ \{2,\}/ /g' -e 's/^ //' > "$R/etc/default/raspi-extra-cmdline"
fi
chroot_mounts "$R"
rm -f "$R/usr/sbin/update-initramfs"
chroot "$R" dpkg-divert --quiet --local --rename --remove /usr/sbin/update-initramfs
[ -x "$R/usr/sbin/update-initramfs" ] || { echo "update-initramfs did not come back from its diversion"; exit 1; }
KVER=$(ls "$R/lib/modules" | sort -V | tail -1)
rm -f "$R/boot/initrd.img-$KVER"
chroot "$R" update-initramfs -c -k "$KVER"
# The addons load in the image itself: the target's node, the image's glibc and libstdc++ (under
# qemu-user for arm64 on another host, through binfmt_misc).
chroot "$R" /usr/bin/env -i PATH="$NODE_DIR/bin:/usr/bin:/bin" sh -c "cd $APP_DIR && node -e '
  const Db = require(\"better-sqlite3\"); const db = new Db(\":memory:\"); db.exec(\"create table t(x)\");
  require(\"sodium-native\"); const lz4 = require(\"lz4-napi\"); lz4.compressSync(Buffer.from(\"cairn\"));
  const zstd = require(\"zstd-napi/binding\"); zstd.compressBound(1);
  require(\"@napi-rs/blake-hash\").Blake3Hasher.newKeyed(Buffer.alloc(32)).update(\"cairn\").digestBuffer();
  require(\"rpio\");
  console.log(\"addons load in the image on \" + process.arch + \" (node \" + process.version + \")\");'"
chroot_umounts "$R"
# Trim what a box never uses at run time.
rm -rf "$R"/var/cache/apt/archives/*.deb "$R"/var/lib/apt/lists/* "$R"/var/log/*.log "$R"/var/log/apt/* \
  "$R"/var/cache/debconf/*-old "$R"/var/lib/dpkg/*-old "$R"/tmp/* "$R"/root/.bash_history

stage boot-files
BOOTDIR=$WORK/boot
rm -rf "$BOOTDIR" && mkdir -p "$BOOTDIR"
KVER=$(ls "$R/lib/modules" | sort -V | tail -1)
case "$BOOT" in
  systemd-boot)
    install -D -m 0644 "$R$(conf "$ARCHCONF" efi_binary)" "$BOOTDIR/EFI/BOOT/$(conf "$ARCHCONF" efi_removable_name)"
    install -m 0644 "$R/boot/vmlinuz-$KVER" "$BOOTDIR/vmlinuz"
    install -m 0644 "$R/boot/initrd.img-$KVER" "$BOOTDIR/initrd.img"
    mkdir -p "$BOOTDIR/loader/entries"
    printf 'default cairn.conf\ntimeout 0\neditor no\n' > "$BOOTDIR/loader/loader.conf"
    printf 'title Cairn\nlinux /vmlinuz\ninitrd /initrd.img\noptions %s systemd.gpt_auto=0\n' "$CMDLINE" > "$BOOTDIR/loader/entries/cairn.conf"
    ;;
  raspi-firmware)
    cp -a "$R/boot/firmware/." "$BOOTDIR/"
    if [ ! -f "$BOOTDIR/config.txt" ] || { [ ! -f "$BOOTDIR/vmlinuz-$KVER" ] && [ ! -f "$BOOTDIR/vmlinuz" ]; }; then
      # raspi-firmware's hooks skip a /boot/firmware that is not a mount point: lay out what
      # they would (firmware blobs, the Pi 4/5 device trees, kernel, initramfs, config.txt).
      echo "populating the boot partition from raspi-firmware and linux-image-$KVER"
      cp -a "$R"/usr/lib/raspi-firmware/. "$BOOTDIR/"
      for dtb in "$R"/usr/lib/linux-image-"$KVER"/broadcom/bcm271[12]-rpi-*.dtb; do
        [ -e "$dtb" ] && install -m 0644 "$dtb" "$BOOTDIR/"
      done
      [ -d "$R/usr/lib/linux-image-$KVER/overlays" ] && cp -a "$R/usr/lib/linux-image-$KVER/overlays" "$BOOTDIR/"
      install -m 0644 "$R/boot/vmlinuz-$KVER" "$BOOTDIR/vmlinuz"
      install -m 0644 "$R/boot/initrd.img-$KVER" "$BOOTDIR/initrd.img"
      printf '%s\n' '# Cairn: Raspberry Pi 4/5 with Debian'"'"'s arm64 kernel' 'arm_64bit=1' 'upstream_kernel=1' \
        'kernel=vmlinuz' 'initramfs initrd.img followkernel' 'enable_uart=1' 'disable_overscan=1' > "$BOOTDIR/config.txt"
    fi
    echo "$CMDLINE" > "$BOOTDIR/cmdline.txt"
    ;;
esac
echo "kernel $KVER; boot partition files: $(find "$BOOTDIR" -type f | wc -l)"

# ---- 5. filesystems ---------------------------------------------------------------------------------
stage filesystems
# Partition sizes from appliance-os/partitions.conf (MiB).
declare -A SIZE LABEL FSTYPE PTYPE
TABLE=''
while read -r a table name label fs size type mount; do
  [ "$a" = "$ARCH" ] || continue
  TABLE=$table SIZE[$name]=${size%MiB} LABEL[$name]=$label FSTYPE[$name]=$fs PTYPE[$name]=$type
done < <(list "$OSDEF/partitions.conf")
# /var goes to the state partition, /boot/firmware to the boot partition; / keeps empty mount points.
mkdir -p "$WORK/state"
(cd "$R/var" && tar -cf - .) | (cd "$WORK/state" && tar -xpf -)
find "$R/var" -mindepth 1 -delete
find "$R/boot/firmware" -mindepth 1 -delete
root_used=$(du -sm --apparent-size "$R" | cut -f1)
state_used=$(du -sm --apparent-size "$WORK/state" | cut -f1)
echo "root tree ${root_used} MiB (partition ${SIZE[root]} MiB), state tree ${state_used} MiB (partition ${SIZE[state]} MiB)"
[ $((root_used * 115 / 100)) -lt "${SIZE[root]}" ] || { echo "root partition too small for ${root_used} MiB; raise it in partitions.conf"; exit 1; }
[ $((state_used * 130 / 100)) -lt "${SIZE[state]}" ] || { echo "state partition too small for ${state_used} MiB; raise it in partitions.conf"; exit 1; }
rm -f "$WORK"/{root,state,boot}.fs
mkfs.ext4 -q -L "${LABEL[root]}" -d "$R" -E root_owner=0:0 -m 0 "$WORK/root.fs" "${SIZE[root]}M"
mkfs.ext4 -q -L "${LABEL[state]}" -d "$WORK/state" -E root_owner=0:0 -m 1 "$WORK/state.fs" "${SIZE[state]}M"
mkfs.vfat -F 32 -n "${LABEL[boot]}" -C "$WORK/boot.fs" $((SIZE[boot] * 1024)) >/dev/null
mcopy -s -p -m -i "$WORK/boot.fs" "$BOOTDIR"/* ::/

stage image
IMG=$WORK/cairn-$ARCH.img
total=$((1 + SIZE[boot] + SIZE[root] + SIZE[state] + 1))
rm -f "$IMG" && truncate -s "${total}M" "$IMG"
guid() { # sfdisk partition type for a partitions.conf type name
  case "$1" in
    esp) echo C12A7328-F81F-11D2-BA4B-00A0C93EC93B ;;
    linux-root-x86-64) echo 4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709 ;;
    linux-var) echo 4D21B016-B534-45C2-A9FB-5C16E091FD2D ;;
    fat32-lba) echo c ;;
    linux) [ "$TABLE" = gpt ] && echo 0FC63DAF-8483-4772-8E79-3D69D8477DE4 || echo 83 ;;
    *) echo "unknown partition type $1" >&2; exit 1 ;;
  esac
}
{
  echo "label: $TABLE"
  echo "unit: sectors"
  off=2048
  for p in boot root state; do
    n=$((SIZE[$p] * 2048))
    line="start=$off, size=$n, type=$(guid "${PTYPE[$p]}")"
    [ "$TABLE" = gpt ] && line="$line, name=\"${LABEL[$p]}\""
    echo "$line"
    off=$((off + n))
  done
} | sfdisk --quiet "$IMG"
off=1
for p in boot root state; do
  dd if="$WORK/$p.fs" of="$IMG" bs=1M seek=$off conv=notrunc,sparse status=none
  off=$((off + SIZE[$p]))
done
sfdisk -l "$IMG" | sed 's/^/  /'
rm -f "$WORK"/{root,state,boot}.fs

stage compress
zstd -q -T0 -10 -f "$IMG" -o "$OUT"
(cd "$(dirname "$OUT")" && sha256sum "$(basename "$OUT")" > "$OUT.sha256")
if [ -n "$RAW" ]; then mv -f "$IMG" "$RAW"; else rm -f "$IMG"; fi
end_stage

total_s=$(echo "$(date +%s.%N) - $BUILD_T0" | bc)
echo "==> [$ARCH] stage durations:"
printf '    %s\n' "${SUMMARY[@]}"
printf '==> [%s] built %s (%s MiB compressed, %s MiB raw) in %.0f s\n' "$ARCH" "$OUT" \
  "$(( $(stat -c %s "$OUT") / 1048576 ))" "$total" "$total_s"
echo "==> sha256 $(cut -d' ' -f1 "$OUT.sha256")"
}
main "$@"; exit $?
