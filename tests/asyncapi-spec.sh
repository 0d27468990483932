#!/usr/bin/env bash
# Prints the path of AsyncAPI's own JSON Schema of AsyncAPI 3.0.0 (schemas/3.0.0.json of the npm package
# @asyncapi/specs, at a pinned version and checksum). The package is installed with npm into a cache outside the
# repository the first time; later runs only check the file. Any failure is loud: a message on stderr, exit status 1.
set -euo pipefail

version="6.11.1"
sha256="d4571a420e6ffb7fcc7066c95a6db1202f299a3c51daa103d0706bf30f95e626"
cache="${CAIRN_ASYNCAPI_SPECS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cairn/asyncapi-specs}/$version"
schema="$cache/node_modules/@asyncapi/specs/schemas/3.0.0.json"

fail() { echo "asyncapi-spec.sh: $*" >&2; exit 1; }

if [ ! -s "$schema" ]; then
  command -v npm >/dev/null 2>&1 || fail "npm is needed to install @asyncapi/specs@$version (the AsyncAPI 3.0.0 JSON Schema the tests validate against)"
  mkdir -p "$(dirname "$cache")"
  # Installed beside the cache and moved in at once, so a concurrent run never sees half a package.
  staging="$(mktemp -d "$cache.XXXXXX")"
  trap 'rm -rf "$staging"' EXIT
  npm install --prefix "$staging" --no-save --no-audit --no-fund --ignore-scripts --loglevel=error "@asyncapi/specs@$version" >&2 \
    || fail "npm could not install @asyncapi/specs@$version"
  [ -s "$staging/node_modules/@asyncapi/specs/schemas/3.0.0.json" ] || fail "@asyncapi/specs@$version has no schemas/3.0.0.json"
  mv -T "$staging" "$cache" 2>/dev/null || [ -s "$schema" ] || fail "could not move the package into $cache"
fi

actual="$(sha256sum "$schema" | cut -d ' ' -f 1)"
[ "$actual" = "$sha256" ] || fail "$schema has checksum $actual, not the pinned $sha256; delete $cache to install it again"
echo "$schema"
