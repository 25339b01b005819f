#!/usr/bin/env bash
# Regenerates Sources/ONNX/Generated/onnx.pb.swift from onnx.proto3 of a pinned ONNX release.
# Run once when the pinned release changes; the output is committed so builds never need protoc.
#
# Needs: protoc (Debian protobuf-compiler), protoc-gen-swift built from apple/swift-protobuf 1.39.0
# (`swift build -c release --product protoc-gen-swift` in a checkout of it), and pip.
#
#   PROTOC_GEN_SWIFT=/path/to/protoc-gen-swift scripts/generate-onnx-swift.sh
set -euo pipefail
ONNX_VERSION=1.23.2
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

python3 -m pip install -q "onnx==$ONNX_VERSION"
onnx_dir=$(python3 -c 'import onnx, os; print(os.path.dirname(onnx.__file__))')
# onnx.in.proto is the release's single source; gen_proto turns it into onnx.proto3 (package "onnx").
cp "$onnx_dir/onnx.in.proto" "$work/"
(cd "$work" && python3 "$onnx_dir/gen_proto.py" -p onnx -o "$work" onnx >/dev/null)
test -f "$work/onnx.proto3"
protoc --plugin=protoc-gen-swift="${PROTOC_GEN_SWIFT:?set PROTOC_GEN_SWIFT}" \
  --swift_opt=Visibility=Public --swift_out="$work" -I "$work" "$work/onnx.proto3"
mv "$work/onnx.pb.swift" "$here/Sources/ONNX/Generated/onnx.pb.swift"
echo "wrote Sources/ONNX/Generated/onnx.pb.swift from onnx $ONNX_VERSION onnx.proto3"
