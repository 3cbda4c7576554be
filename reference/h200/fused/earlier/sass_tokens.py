"""SASS instructions of the token-wise kernel, dense against kept-form input, compiled for sm90 on any machine
(no GPU needed; Triton's bundled ptxas and nvdisasm). Counts are static (the rarely taken dense-feature branch
included), per element a thread handles. Made sass_tokens_*.txt:
    PYTHONPATH=src python3 reference/h200/fused/earlier/sass_tokens.py"""
import collections
import os
import re
import subprocess
import tempfile

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from act24.kernels import fused

SIGNATURE = {"a_ptr": "*bf16", "codes_ptr": "*u8", "perm_ptr": "*i32", "dest_ptr": "*i32", "inv_scale_ptr": "*fp32",
             "vals_ptr": "*fp8e4nv", "meta_ptr": "*u8", "dense_ptr": "*fp8e4nv", "T": "i32", "F": "i32",
             "M_SPARSE": "i32", "stride_a": "i32", "FP8": "constexpr", "META16": "constexpr", "SPARSE": "constexpr",
             "KEPT": "constexpr", "BF": "constexpr", "BT": "constexpr"}
NVDISASM = os.path.join(os.path.dirname(triton.__file__), "backends/nvidia/bin/nvdisasm")
for kept, cfg in ((False, fused.TOKENS_CONFIG), (True, fused.KEPT_TOKENS_CONFIG)):
    consts = {"FP8": True, "META16": False, "SPARSE": True, "KEPT": kept, "BF": cfg.block_m, "BT": cfg.block_k}
    attrs = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(SIGNATURE)
             if n.endswith("_ptr") or n in ("T", "F", "stride_a", "M_SPARSE")}
    k = triton.compile(ASTSource(fn=fused._tokens_kernel, signature=SIGNATURE, attrs=attrs,
                                 constexprs={(list(SIGNATURE).index(n),): v for n, v in consts.items()}),
                       target=GPUTarget("cuda", 90, 32), options={"num_warps": cfg.num_warps})
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(k.asm["cubin"])
        f.flush()
        sass = subprocess.run([NVDISASM, "-c", f.name], capture_output=True, text=True, check=True).stdout
    lines = [x for x in sass.splitlines() if re.match(r"\s+/\*[0-9a-f]+\*/\s+\S", x)]
    per_thread = cfg.block_m * cfg.block_k / (32 * cfg.num_warps)
    ops = collections.Counter(re.match(r"\s+/\*[0-9a-f]+\*/\s+(?:@!?U?P\w+\s+)?([A-Z0-9_.]+)", x).group(1).split(".")[0]
                              for x in lines)
    print(f"{'kept' if kept else 'dense'} input, {cfg}: {len(lines)} SASS instructions, "
          f"{len(lines) / per_thread:.1f} per element; {dict(ops.most_common(8))}")
