"""The framework probe of provenance (launcher/node/provenance.py), run with the row's own Python.

`python -c <this file's text> FRAMEWORK` prints one JSON object: the Python, and the framework's,
CUDA's, cuDNN's and NCCL's versions as that Python imports them, whatever is importable. Standard
library only besides the framework; no syntax newer than Python 3.6.
"""

import json
import platform
import sys


#: the frameworks this probe imports; for any other it says only which Python it ran on
IMPORTS = ("pytorch", "caffe2", "torch", "tensorflow", "tf", "mxnet")


def probe(fw):
    out = {"python_version": platform.python_version(), "python_executable": sys.executable}
    try:
        if fw in ("pytorch", "caffe2", "torch"):
            import torch

            out["framework_version"] = torch.__version__
            out["cuda_version"] = torch.version.cuda
            try:
                out["cudnn_version"] = (
                    str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else None
                )
            except Exception:
                pass
            try:
                v = torch.cuda.nccl.version()
                out["nccl_version"] = ".".join(map(str, v)) if isinstance(v, tuple) else str(v)
            except Exception:
                pass
        elif fw in ("tensorflow", "tf"):
            import tensorflow as tf

            out["framework_version"] = tf.__version__
            try:
                info = tf.sysconfig.get_build_info()
                out["cuda_version"] = info.get("cuda_version")
                out["cudnn_version"] = info.get("cudnn_version")
            except Exception:
                pass
        elif fw == "mxnet":
            import mxnet

            out["framework_version"] = mxnet.__version__
    except Exception as e:
        out["framework_error"] = ("%s: %s" % (type(e).__name__, e))[:200]
    return out


if __name__ == "__main__":
    print(json.dumps(probe(sys.argv[1].lower() if len(sys.argv) > 1 else "")))
