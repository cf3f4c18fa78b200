"""CPU-ONLY SHIM: stands in for flash-attn's CUDA extension so `import flash_attn` works on CPU.

OpenRLHF only uses flash-attn's pure-torch `bert_padding` and `utils.distributed`; any use of a
CUDA kernel fails loudly here instead of silently.
"""


def __getattr__(name):
    # AttributeError (not RuntimeError) so hasattr() probes and importlib's dunder lookups work.
    raise AttributeError(
        f"flash_attn_2_cuda.{name}: flash-attn CUDA kernels are not available in the CPU "
        "environment (this is the CPU-only shim from cpu_env/cpu_only_shims)"
    )
