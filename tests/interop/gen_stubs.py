"""Generates Python gRPC stubs from the repository's proto/ with grpcio-tools.

Run as a script (`python tests/interop/gen_stubs.py [OUT_DIR]`) or import `generate()`.
The default output is tests/interop/gen/python (gitignored). Nothing here is hand-written
from the API: the stubs come from our .proto files alone, as they would for any user.
"""

import pathlib
import sys
from importlib import resources

from grpc_tools import protoc

REPO = pathlib.Path(__file__).resolve().parents[2]
PROTO_DIR = REPO / "proto"
DEFAULT_OUT = REPO / "tests" / "interop" / "gen" / "python"


def generate(out_dir: pathlib.Path = DEFAULT_OUT) -> pathlib.Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    # grpcio-tools bundles google/protobuf/*.proto (timestamp, struct) that our protos import.
    well_known = resources.files("grpc_tools") / "_proto"
    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc failed: {' '.join(args)}")
    return out_dir


if __name__ == "__main__":
    print(generate(pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT))
