#!/usr/bin/env bash
# SimpleDet 9187a10's own C++ operators (Proposal_v3, SigmoidCrossEntropy, ProposalMaskTarget) built against the
# package index's mxnet 1.9.1 wheel as a library its launcher_simpledet_ops.py loads (stack=today; the row's build
# step, run in the row's venv from the work tree):
#
#   bash build_ops_today.sh MXNET_REPO        (a git URL or path holding apache/mxnet's tag 1.9.1)
#
# The wheel ships include/{mxnet,dmlc,nnvm,mshadow,dlpack} but not src/operator's internal headers the operators
# include (operator_common.h, mshadow_op.h, ...): those come from MXNet's own source at the wheel's tag. The wheel
# was built with GCC 4.8 (old C++ ABI) with oneDNN (MKLDNN) and without CUDA; the flags below match it.
# ROIAlign_v2 is not built (its NNVM attribute registration crashes against the wheel at load time): the loader
# substitutes MXNet's contrib ROIAlign for it.
set -euo pipefail
MXNET_REPO=${1:?usage: build_ops_today.sh MXNET_REPO}
OUT=build/launcher
SRC=$OUT/mxnet-src
mkdir -p "$OUT"
MX=$(python -c 'import os, mxnet; print(os.path.dirname(mxnet.__file__))')
python -c 'import mxnet; assert mxnet.__version__ == "1.9.1", mxnet.__version__'
if [ ! -d "$SRC/src/operator" ]; then
  rm -rf "$SRC" && git clone --quiet --depth 1 --branch 1.9.1 --no-checkout "$MXNET_REPO" "$SRC"
  git -C "$SRC" checkout --quiet 1.9.1 -- src include 3rdparty/mshadow
fi
# SimpleDet's operators where its own build puts them (src/operator/), as the seed's build_mxnet.sh does
cp operator_cxx/contrib/proposal_v3* operator_cxx/contrib/sigmoid_cross_entropy* "$SRC/src/operator/contrib/"
cp operator_cxx/proposal_mask_target* "$SRC/src/operator/"
# cocoapi's maskApi (proposal_mask_target.cc includes ../coco_api/common/maskApi.h), compiled as C++: maskApi.h has
# no extern "C", so its C++ callers want C++ symbols
if [ ! -f "$SRC/src/coco_api/common/maskApi.c" ]; then
  python -m pip download --quiet --no-deps --no-binary :all: --no-build-isolation -d "$OUT/pycocotools-src" "pycocotools==2.0.2"
  tar -xzf "$OUT"/pycocotools-src/pycocotools-2.0.2.tar.gz -C "$OUT/pycocotools-src"
  mkdir -p "$SRC/src/coco_api" && cp -r "$OUT"/pycocotools-src/pycocotools-2.0.2/common "$SRC/src/coco_api/"
fi
cat > "$OUT/register.cc" <<'CC'
// After the operators' static registrars ran (dlopen), give the legacy OperatorProperty ones their NNVM entries,
// as libmxnet does for its own at start-up (mxnet::op::RegisterLegacyOpProp is exported by libmxnet.so).
namespace mxnet { namespace op { void RegisterLegacyOpProp(); } }
extern "C" int simpledet_ops_register() { mxnet::op::RegisterLegacyOpProp(); return 0; }
CC
FLAGS=(-std=c++17 -O2 -fPIC -w -fopenmp -mf16c -D_GLIBCXX_USE_CXX11_ABI=0 -DMSHADOW_USE_CUDA=0 -DMSHADOW_USE_CBLAS=0
       -DMSHADOW_USE_MKL=0 -DMSHADOW_USE_SSE=1 -DMXNET_USE_MKLDNN=1 -DMXNET_USE_LAPACK=1 -DMXNET_USE_OPENMP=1
       -DMXNET_USE_CUDA=0 -DDMLC_USE_CXX11=1 -DMSHADOW_IN_CXX11 -DMXNET_USE_SIGNAL_HANDLER=1
       -I"$MX/include" -I"$SRC/include" -I"$SRC/src" -I"$SRC/3rdparty/mshadow" -I"$MX/include/mkldnn")
OBJS=()
for f in src/operator/contrib/proposal_v3.cc src/operator/contrib/sigmoid_cross_entropy.cc src/operator/proposal_mask_target.cc; do
  o="$OUT/$(basename "$f" .cc).o"
  echo "compiling $f"
  ${CXX:-g++} "${FLAGS[@]}" -c "$SRC/$f" -o "$o"
  OBJS+=("$o")
done
${CXX:-g++} -x c++ -fpermissive -w -O2 -fPIC -D_GLIBCXX_USE_CXX11_ABI=0 -c "$SRC/src/coco_api/common/maskApi.c" -o "$OUT/maskApi.o"
${CXX:-g++} -std=c++17 -fPIC -D_GLIBCXX_USE_CXX11_ABI=0 -c "$OUT/register.cc" -o "$OUT/register.o"
${CXX:-g++} -shared -fPIC -fopenmp -o "$OUT/libsimpledet_ops.so" "${OBJS[@]}" "$OUT/maskApi.o" "$OUT/register.o" \
  -L"$MX" -l:libmxnet.so -Wl,-rpath,"$MX" -Wl,--no-undefined
python -c 'import launcher_simpledet_ops, mxnet as mx; [getattr(mx.sym.contrib, n) for n in ("Proposal_v3", "SigmoidCrossEntropy", "ROIAlign_v2")]; mx.sym.ProposalMaskTarget; print("mxnet", mx.__version__, "with SimpleDet operators (ROIAlign_v2: contrib ROIAlign)")'
