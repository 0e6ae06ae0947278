#!/usr/bin/env bash
# SimpleDet's MXNet: MXNet 1.6 from source with SimpleDet's operators compiled in, installed into the row's
# environment, plus mxnext (SimpleDet's symbol helpers, not on the package index) at its 2019-08-19 commit.
# SimpleDet 9187a1's doc/INSTALL.md:88-108 describes the same; the nightly wheel it used
# (mxnet-cu101==1.6.0b20190820, https://1dv.alarge.space/...) is no longer available.
#
#   bash jobs/simpledet/build_mxnet.sh ENV_PREFIX SRC_DIR        (python -m launcher.env create impl=simpledet)
#
# Needs: internet (git clone), the conda environment ENV_PREFIX made from environment.yml, CUDA 10.1's nvcc and
# headers (CUDA_HOME, default /usr/local/cuda-10.1), gcc <= 8, NCCL for CUDA 10.1 (NCCL_HOME, optional if in
# CUDA_HOME), and SimpleDet's prepared work tree in $LAUNCHER_TREE (its operator_cxx/; the launcher sets it).
# NOT RUN IN THE LAUNCHER'S CI (no CUDA 10 toolkit, no GPU, no network there): a recipe, kept as data.
set -euo pipefail
ENV_PREFIX=${1:?usage: build_mxnet.sh ENV_PREFIX SRC_DIR}
SRC=${2:?usage: build_mxnet.sh ENV_PREFIX SRC_DIR}
TREE=${LAUNCHER_TREE:?set LAUNCHER_TREE to SimpleDet's prepared checkout (python -m launcher.env create does)}
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda-10.1}
# apache/mxnet master on 2019-08-20 (the nightly's date; its exact commit is not recorded): the last commit
# before 02:00 UTC that day; python/mxnet/libinfo.py says 1.6.0 there
MXNET_COMMIT=3dfb19a9804c589a6089453f01c7b491d6bda014
MXNEXT_COMMIT=d9af618988053f5fdd52bb1016901e2239479827
"$CUDA_HOME/bin/nvcc" --version | grep -q 'release 10\.1,' || { echo "need CUDA 10.1 in CUDA_HOME=$CUDA_HOME" >&2; exit 2; }
mkdir -p "$SRC"
if [ ! -d "$SRC/mxnet-simpledet/.git" ]; then
  git clone --recursive https://github.com/apache/mxnet "$SRC/mxnet-simpledet"
fi
cd "$SRC/mxnet-simpledet"
git checkout --quiet "$MXNET_COMMIT" && git submodule update --init --recursive
test "$(git rev-parse HEAD)" = "$MXNET_COMMIT"
cp -r "$TREE"/operator_cxx/* src/operator/        # overwrites contrib/proposal* and sync_batch_norm*: intended
rm -f src/operator/nn/group_norm*                  # clashes with SimpleDet's _contrib_GroupNorm
# proposal_mask_target.cc includes ../coco_api/common/maskApi.h and calls rleFrPoly/rleDecode/... The pycocotools
# sdist ships common/maskApi.{c,h}, but MXNet's Makefile compiles only src/**/*.cc, so a maskApi.c copied there is
# never built and those symbols stay undefined (`import mxnet` then fails). SimpleDet's own install uses a cocoapi
# fork with common/maskApi.cc; here the sdist's maskApi.c is compiled as C++ explicitly (-x c++: maskApi.h has no
# extern "C", so the C++ callers want C++ symbols; -fpermissive: it assigns malloc's void* without casts) into an
# object that the link of libmxnet.so takes through ADD_LDFLAGS. It is left as .c in src/ so the Makefile's *.cc
# wildcard does not compile it a second time (without -fpermissive).
mkdir -p src/coco_api && "$ENV_PREFIX/bin/python" -m pip download --no-deps --no-binary :all: --no-build-isolation -d "$SRC/pycocotools-src" "pycocotools==2.0.2"
tar -xzf "$SRC"/pycocotools-src/pycocotools-2.0.2.tar.gz -C "$SRC/pycocotools-src" && cp -r "$SRC"/pycocotools-src/pycocotools-2.0.2/common src/coco_api/
MASKAPI_O="$PWD/src/coco_api/common/maskApi-cxx.o"
${CXX:-g++} -x c++ -fpermissive -w -O3 -fPIC -c src/coco_api/common/maskApi.c -o "$MASKAPI_O"
nm -C "$MASKAPI_O" | grep -q ' T rleFrPoly(' || { echo "maskApi compiled without rleFrPoly" >&2; exit 2; }
# NCCL: the config's kvstore="nccl" needs USE_NCCL=1, and MXNet looks for it in USE_NCCL_PATH (NONE: only the
# compiler's default paths); NCCL_HOME, when set, is passed there
NCCL_PATH=${NCCL_HOME:-NONE}
# ENABLE_CUDA_RTC=1 (make/config.mk's default) links -lcuda, the driver's library, which a login node without a
# driver lacks: CUDA's stubs (lib64/stubs/libcuda.so, SONAME libcuda.so.1) satisfy the link; at run time the
# node's driver provides libcuda.so.1
CUDA_STUBS="$CUDA_HOME/lib64/stubs"
test -e "$CUDA_STUBS/libcuda.so" || { echo "no $CUDA_STUBS/libcuda.so (CUDA 10.1's driver stubs) to link -lcuda against" >&2; exit 2; }
cat > config.mk.simpledet <<MK
USE_CUDA=1
USE_CUDA_PATH=$CUDA_HOME
USE_CUDNN=1
USE_NCCL=1
USE_NCCL_PATH=$NCCL_PATH
USE_OPENCV=0
USE_MKLDNN=0
USE_BLAS=openblas
USE_SIGNAL_HANDLER=1
USE_DIST_KVSTORE=0
CUDA_ARCH=-gencode arch=compute_70,code=sm_70
MK
cat make/config.mk config.mk.simpledet > config.mk
make -j"$(nproc)" ADD_CFLAGS="-I$ENV_PREFIX/include" ADD_LDFLAGS="-L$ENV_PREFIX/lib -L$CUDA_STUBS $MASKAPI_O"
nm -D lib/libmxnet.so | grep -q ' U .*rleFrPoly' && { echo "libmxnet.so still has rleFrPoly undefined" >&2; exit 2; }
"$ENV_PREFIX/bin/python" -m pip install --no-deps -e python
"$ENV_PREFIX/bin/python" -m pip install --no-deps "git+https://github.com/RogerChern/mxnext@$MXNEXT_COMMIT"
# On a host without a driver, `import mxnet` (a CUDA build) needs a libcuda.so.1 to load: the stub, for this check only
CHECK_LD=${LD_LIBRARY_PATH:-}
if ! ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\.1 '; then
  STUBDIR=$(mktemp -d) && ln -s "$CUDA_STUBS/libcuda.so" "$STUBDIR/libcuda.so.1" && CHECK_LD="$STUBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
LD_LIBRARY_PATH=$CHECK_LD "$ENV_PREFIX/bin/python" -c 'import mxnet as mx; [getattr(mx.sym.contrib, n) for n in ("Proposal_v3", "SigmoidCrossEntropy", "ROIAlign_v2")]; mx.sym.ProposalMaskTarget; print("mxnet", mx.__version__, "with SimpleDet operators")'
