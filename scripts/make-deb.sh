#!/bin/sh
# Builds the Debian package: build/plugboard_VERSION_ARCH.deb (make deb).
# Usage: scripts/make-deb.sh BUILD_DIR   (BUILD_DIR from `make release`: the Swift runtime linked
# statically, so the package needs no toolchain; see docs/operations.md, "Installing").
set -eu
build=$1
here=$(cd "$(dirname "$0")/.." && pwd)
version=$("$build/plugboard" --version | awk '{print $2}')
arch=$(dpkg --print-architecture)
stage="$here/build/deb/plugboard_${version}_$arch"
rm -rf "$stage"
"$here/scripts/install.sh" "$build" /usr "$stage" >/dev/null
install -d -m 0755 "$stage/DEBIAN"
sed -e "s|@VERSION@|$version|" -e "s|@ARCH@|$arch|" "$here/packaging/debian/control.in" > "$stage/DEBIAN/control"
echo "Installed-Size: $(du -sk --exclude=DEBIAN "$stage" | cut -f1)" >> "$stage/DEBIAN/control"
install -m 0644 "$here/packaging/debian/conffiles" "$stage/DEBIAN/conffiles"
install -m 0755 "$here/packaging/debian/postinst" "$here/packaging/debian/prerm" "$here/packaging/debian/postrm" "$stage/DEBIAN/"
install -d "$stage/usr/share/doc/plugboard"
printf 'Plugboard\n\nCopyright (C) 2026 The Plugboard maintainers\nLicense: MIT\n' > "$stage/usr/share/doc/plugboard/copyright"
# A native package's changelog: this version, from the last commit.
when=${SOURCE_DATE_EPOCH:-$(git -C "$here" log -1 --format=%ct 2>/dev/null || date +%s)}
{
    printf 'plugboard (%s) unstable; urgency=medium\n\n' "$version"
    printf '  * Built from %s.\n\n' "$(git -C "$here" log -1 --format=%h 2>/dev/null || echo 'a source tree')"
    printf ' -- Plugboard maintainers <plugboard@example.org>  %s\n' "$(date -R -u -d "@$when")"
} | gzip -9n > "$stage/usr/share/doc/plugboard/changelog.gz"
# Reproducible file times (the last commit's), root-owned files.
find "$stage" -exec touch -h -d "@$when" {} +
dpkg-deb --root-owner-group -Zxz --build "$stage" "$here/build/plugboard_${version}_$arch.deb" >/dev/null
echo "$here/build/plugboard_${version}_$arch.deb"
