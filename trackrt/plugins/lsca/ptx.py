"""PTX text fix-ups for kernels that TensorRT launches ahead of time (pure Python)."""

from __future__ import annotations

import re


def drop_unused_trailing_params(ptx: str, kernel: str, keep: int) -> str:
    """Remove entry parameters after the first `keep` that the body never reads.

    Triton >= 3.3 appends global/profile scratch pointers to every kernel; TensorRT's AOT launch passes
    exactly (inputs, extra scalars, outputs), so an unused tail must go from the PTX signature.
    """
    match = re.search(rf"\.entry\s+{re.escape(kernel)}\s*\(([^)]*)\)", ptx)
    if match is None:
        raise RuntimeError(f"kernel entry {kernel!r} not found in the PTX")
    params = [p.strip() for p in match.group(1).split(",") if p.strip()]
    if len(params) < keep:
        raise RuntimeError(f"kernel {kernel!r} declares {len(params)} parameters, expected at least {keep}")
    body = ptx[match.end():]
    for param in params[keep:]:
        name = param.split()[-1]
        if re.search(rf"\b{re.escape(name)}\b", body):
            raise RuntimeError(f"kernel {kernel!r} reads its extra parameter {name}; TensorRT's AOT launch "
                               "cannot provide it")
    declaration = ",\n".join(f"\t{p}" for p in params[:keep])
    return f"{ptx[:match.start(1)]}\n{declaration}\n{ptx[match.end(1):]}"
